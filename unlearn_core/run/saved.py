"""A workspace as a small JSON file (checkpoints, data files, prompt format, placement, results store), so a
researcher can save it, load it on another day or machine, and the dashboard can come back to it after a reload;
and the colour book: each checkpoint name's colour, kept across workspaces so a figure of {ga, npo} and one of the
whole lab draw npo alike."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from unlearn_core.data.items import PromptFormat
from unlearn_core.run.workspace import WorkspaceSpec
from unlearn_core.viz.theme import assign_colors

FORMAT = "unlearn-audit workspace"
VERSION = 1


class WorkspaceFileError(ValueError):
    """A file that is not a saved workspace, or one whose checkpoints or data are no longer where it says."""


def _prompt_record(fmt: PromptFormat) -> dict:
    return {"template": fmt.template, "answer_prefix": fmt.answer_prefix, "chat": fmt.chat,
            "system_prompt": fmt.system_prompt, "chat_template": fmt.chat_template,
            "template_vars": {k: list(v) if isinstance(v, tuple) else v for k, v in fmt.template_vars}}


def _prompt_format(rec: dict) -> PromptFormat:
    tv = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in (rec.get("template_vars") or {}).items())
    return PromptFormat(rec.get("template", PromptFormat.template), rec.get("answer_prefix", " "),
                        bool(rec.get("chat", False)), rec.get("system_prompt"), rec.get("chat_template"), tv)


def workspace_record(spec: WorkspaceSpec, store_path: str | None = None,
                     sources: dict[str, str] | None = None, accept_partial: bool = False) -> dict:
    """Everything that makes the workspace, as JSON (paths as given: a saved workspace names files, never copies
    models). accept_partial: a data file was kept with its valid rows only (the user's choice on the page), so it is
    read back the same way, not refused for the rows it rejected."""
    record = {"format": FORMAT, "version": VERSION, "original": spec.original,
              "unlearned": [[n, p] for n, p in spec.unlearned], "retain_only": spec.retain_only,
              "forget": spec.forget, "retain": spec.retain, "holdout": spec.holdout, "device": spec.device,
              "allow_pickle": spec.allow_pickle, "trust_remote_code": spec.trust_remote_code,
              "max_memory": spec.max_memory, "resident": spec.resident,
              "prompt_format": _prompt_record(spec.prompt_format), "store_path": store_path,
              "sources": dict(sources or {})}
    if accept_partial:  # only then: a workspace saved before the field keeps its id (and its URL)
        record["accept_partial"] = True
    return record


def record_id(record: dict) -> str:
    """A short content id: the same workspace saved twice is one file, and one URL."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]


def spec_from_record(record: dict) -> WorkspaceSpec:
    """The WorkspaceSpec a record describes; a clear error naming what is missing or gone."""
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise WorkspaceFileError(f"not a saved workspace (expected \"format\": \"{FORMAT}\")")
    if record.get("version", 0) > VERSION:
        raise WorkspaceFileError(f"saved by a newer version (workspace file version {record['version']}, this "
                                 f"reads {VERSION})")
    gone = [f"{what} {p}" for what, p in (("original", record.get("original")), *(
        (f"unlearned {n}", p) for n, p in record.get("unlearned") or []), ("retain-only", record.get("retain_only")),
        ("forget set", record.get("forget")), ("retain set", record.get("retain")),
        ("holdout set", record.get("holdout"))) if p and _local(p) and not Path(p).exists()]
    if gone:
        raise WorkspaceFileError("the saved workspace names files that are not there any more: " + "; ".join(gone))
    try:
        return WorkspaceSpec(
            original=record["original"], unlearned=tuple((n, p) for n, p in record["unlearned"]),
            forget=record["forget"], retain_only=record.get("retain_only"), retain=record.get("retain"),
            holdout=record.get("holdout"), device=record.get("device", "auto"),
            allow_pickle=bool(record.get("allow_pickle", False)),
            trust_remote_code=bool(record.get("trust_remote_code", False)),
            prompt_format=_prompt_format(record.get("prompt_format") or {}),
            max_memory=record.get("max_memory"), resident=record.get("resident"))
    except (KeyError, TypeError) as exc:
        raise WorkspaceFileError(f"a saved workspace without a usable {exc} field") from exc


def _local(p: str) -> bool:
    """Checked for existence: absolute or ./-relative paths (a bare org/name may be a hub id in the local cache)."""
    return os.path.isabs(p) or p.startswith(".")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def save_record(record: dict, folder: Path) -> str:
    """Saved as FOLDER/<id>.json; returns the id."""
    rid = record_id(record)
    path = Path(folder) / f"{rid}.json"
    if not path.exists():
        _write_atomic(path, json.dumps(record, indent=2))
    return rid


def read_record(source: str | Path | bytes) -> dict:
    try:
        text = source.decode() if isinstance(source, bytes) else Path(source).read_text()
        return json.loads(text)
    except FileNotFoundError as exc:
        raise WorkspaceFileError(f"no saved workspace {Path(str(source)).name}") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise WorkspaceFileError(f"cannot read the workspace file as JSON ({exc})") from exc


def load_saved(folder: Path, rid: str) -> dict:
    if not rid.isalnum() or len(rid) != 12:  # an id from a URL names a file in the folder, nothing else
        raise WorkspaceFileError(f"{rid!r} is not a saved workspace id")
    return read_record(Path(folder) / f"{rid}.json")


COLOUR_BOOK = "checkpoint_colours.json"


def colour_book(folder: Path, names: list[str], original: str = "original",
                retain_only: str = "retain_only") -> dict[str, str]:
    """The folder's colour book with these names added (each new name the next colour the book has not given out,
    persisted), so a name keeps its colour in every workspace of this folder."""
    path = Path(folder) / COLOUR_BOOK
    try:
        book = json.loads(path.read_text()) if path.exists() else {}
        book = {str(k): str(v) for k, v in book.items()} if isinstance(book, dict) else {}
    except (OSError, ValueError):
        book = {}
    new = assign_colors(book, names, original, retain_only)
    if new != book:
        try:
            _write_atomic(path, json.dumps(new, indent=1, sort_keys=True))
        except OSError:  # a read-only folder: the colours hold for this process
            pass
    return new
