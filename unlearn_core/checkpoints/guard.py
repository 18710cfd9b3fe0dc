"""Where typed paths may point: a workspace root for shared machines, and the loopback-only default.

On a lab server anyone who reaches the dashboard can type a path into it, so with a workspace root set
(UNLEARN_AUDIT_ROOT, CLI --root) every typed path is resolved (~, '..' and symlinks) and refused unless it stays
inside the root; the results store, the one thing the app creates, may also live in the app's data folder. Hub ids
are not paths: they resolve from the local Hugging Face cache only (workspace.resolve_source never downloads).
Without a root, on a loopback address, nothing changes: a local single user may read their whole disk.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

ENV_ROOT = "UNLEARN_AUDIT_ROOT"
ENV_SERVE_NETWORK = "UNLEARN_AUDIT_SERVE_NETWORK"
ENV_CACHE = "UNLEARN_AUDIT_CACHE"
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_SQLITE_MAGIC = b"SQLite format 3\x00"


class PathOutsideRoot(ValueError):
    """A typed path that leaves the workspace root (or cannot be a path at all); the message says which and why."""


def workspace_root(value: str | os.PathLike | None = None) -> Path | None:
    """The resolved workspace root: `value` (CLI --root) or $UNLEARN_AUDIT_ROOT; None when neither is set.

    A root that is not an existing folder is an error, not "no root": a typo must not silently open the whole disk.
    """
    raw = value if value not in (None, "") else os.environ.get(ENV_ROOT, "").strip()
    if not raw:
        return None
    root = Path(raw).expanduser().resolve()
    if not root.is_dir():
        raise PathOutsideRoot(f"workspace root {raw!r} is not an existing folder ({ENV_ROOT} / --root)")
    return root


def app_data_dir() -> Path:
    """The app's own folder (demo labs, default results stores): $UNLEARN_AUDIT_CACHE or ~/.cache/unlearn-audit."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "unlearn-audit").expanduser().resolve()


def resolve_inside(typed: str | os.PathLike, root: Path | None, what: str = "path") -> Path:
    """`typed` as an absolute path with symlinks resolved; PathOutsideRoot if it leaves `root` (None: any path).

    A relative path is taken relative to the root (the server's working directory means nothing to a browser user).
    """
    text = str(typed).strip()
    if not text:
        raise PathOutsideRoot(f"{what}: empty path")
    if "\x00" in text:
        raise PathOutsideRoot(f"{what}: the path contains a NUL character")
    path = Path(text).expanduser()
    if root is not None and not path.is_absolute():
        path = root / path
    try:
        resolved = path.resolve()  # strict=False: a file still to be created resolves through its existing parents
    except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable component
        raise PathOutsideRoot(f"{what}: cannot resolve {text!r} ({exc})") from exc
    if root is not None and not resolved.is_relative_to(root):
        via = f" (it resolves to {resolved})" if str(resolved) != text else ""
        raise PathOutsideRoot(f"{what}: {text!r} is outside the workspace root {root}{via}; only paths under the "
                              f"root can be used on this server ({ENV_ROOT})")
    return resolved


def is_hub_id(text: str) -> bool:
    """'org/name' as the hub spells it (no '..', no leading '.', '/' or '~'): looked up in the local cache only."""
    return bool(_HUB_ID.fullmatch(text.strip())) and ".." not in text


def checkpoint_source(typed: str, root: Path | None, what: str = "checkpoint") -> str:
    """A checkpoint field: a folder inside the root, or a hub id that is not such a folder, resolved here to its
    snapshot folder in the local HF cache (never downloaded). Returning the bare id would let the loader read a
    folder of that name relative to the server's working directory, outside the root."""
    text = str(typed).strip()
    if root is None:
        return text
    if is_hub_id(text) and not (root / text).exists():
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(text, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - the hub client raises several types for "not cached"
            raise PathOutsideRoot(f"{what}: {text!r} is neither a folder under the workspace root {root} nor a hub "
                                  f"id in the local Hugging Face cache ({type(exc).__name__})") from exc
    return str(folder_inside(text, root, what))


def folder_inside(typed: str | os.PathLike, root: Path | None, what: str = "folder") -> Path:
    """resolve_inside, plus every file the folder holds (two levels down): a model folder inside the root whose
    config.json or weights are symlinks to files elsewhere would otherwise be read through the links."""
    path = resolve_inside(typed, root, what)
    if root is None or not path.is_dir():
        return path
    for entry in [*path.iterdir(), *(e for d in path.iterdir() if d.is_dir() and not d.is_symlink()
                                     for e in d.iterdir())][:10_000]:
        target = entry.resolve()
        if not target.is_relative_to(root):
            raise PathOutsideRoot(f"{what}: {entry} links to {target}, outside the workspace root {root}; only "
                                  "files under the root can be read on this server")
    return path


def store_location(typed: str | os.PathLike, root: Path | None, allowed: tuple[str | os.PathLike, ...] = (),
                   what: str = "results store") -> Path:
    """Where the results store may be created: under the root or the app's data folder, or exactly at one of the
    `allowed` files (set by whoever started the server, e.g. $UNLEARN_AUDIT_STORE). An existing file that is not
    SQLite is never accepted, with or without a root, since opening it as a store would overwrite it."""
    path = resolve_inside(typed, root, what) if root is None else None
    if root is not None:
        try:
            path = resolve_inside(typed, root, what)
        except PathOutsideRoot:
            path = resolve_inside(typed, None, what)
            exact = {Path(a).expanduser().resolve() for a in allowed if str(a).strip()}
            if not (path.is_relative_to(app_data_dir()) or path in exact):
                raise PathOutsideRoot(
                    f"{what}: {str(typed).strip()!r} is outside the workspace root {root} and the app's data folder "
                    f"{app_data_dir()}; a results store can only be created there") from None
    if path.is_dir():
        raise PathOutsideRoot(f"{what}: {path} is a folder; give a file name such as {path / 'results.sqlite'}")
    if path.is_file():
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
        if head and head != _SQLITE_MAGIC:
            raise PathOutsideRoot(f"{what}: {path} exists and is not a SQLite file; refusing to overwrite it")
    return path


def is_loopback(address: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'; an empty address means every interface (not loopback)."""
    text = (address or "").strip().strip("[]")
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def check_serving(address: str | None, root: Path | None) -> None:
    """Serving beyond this machine needs a workspace root: otherwise any browser could read any file."""
    if not is_loopback(address) and root is None:
        shown = address or "every network interface"
        raise PathOutsideRoot(f"refusing to serve on {shown} without a workspace root: set {ENV_ROOT}=/some/folder "
                              "(every path typed in the browser must stay inside it), or bind to 127.0.0.1")
