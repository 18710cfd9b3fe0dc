"""Workspace root: typed paths (symlinks, '..', '~', relative) stay inside it; the store only under root or app data;
network serving needs a root."""

from __future__ import annotations

import pytest

from unlearn_core.checkpoints.guard import (
    PathOutsideRoot,
    check_serving,
    checkpoint_source,
    is_loopback,
    resolve_inside,
    store_location,
    workspace_root,
)


@pytest.fixture()
def root(tmp_path):
    r = tmp_path / "root"
    (r / "models" / "orig").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key.txt").write_text("hidden")
    return r.resolve()


def test_paths_inside_the_root_resolve_to_absolute_paths(root):
    assert resolve_inside(str(root / "models" / "orig"), root) == root / "models" / "orig"
    assert resolve_inside("models/orig", root) == root / "models" / "orig"  # relative = relative to the root
    assert resolve_inside("models/new.sqlite", root) == root / "models" / "new.sqlite"  # not created yet


def test_a_symlink_inside_the_root_that_points_outside_is_refused(root, tmp_path):
    (root / "escape").symlink_to(tmp_path / "secret")
    with pytest.raises(PathOutsideRoot, match=r"outside the workspace root.*resolves to .*secret"):
        resolve_inside(str(root / "escape" / "key.txt"), root)
    with pytest.raises(PathOutsideRoot, match="outside the workspace root"):
        resolve_inside("escape", root, "original checkpoint")


def test_dotdot_absolute_and_home_paths_outside_are_refused(root, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "secret"))
    for typed in ("../secret/key.txt", str(tmp_path / "secret"), "~/key.txt", "/etc/passwd", "models/../../secret"):
        with pytest.raises(PathOutsideRoot, match=r"data file: .* is outside the workspace root"):
            resolve_inside(typed, root, "data file")
    with pytest.raises(PathOutsideRoot, match="NUL"):
        resolve_inside("models\x00/x", root)
    with pytest.raises(PathOutsideRoot, match="empty path"):
        resolve_inside("  ", root)


def test_a_root_prefix_is_not_the_root(root, tmp_path):
    sibling = tmp_path / "root2"
    sibling.mkdir()
    with pytest.raises(PathOutsideRoot):
        resolve_inside(str(sibling), root)


def test_without_a_root_every_path_is_allowed(tmp_path):
    assert resolve_inside(str(tmp_path / "secret"), None) == (tmp_path / "secret").resolve()
    assert checkpoint_source("/anywhere/model", None) == "/anywhere/model"


def test_workspace_root_from_env_or_argument(root, monkeypatch, tmp_path):
    monkeypatch.delenv("UNLEARN_AUDIT_ROOT", raising=False)
    assert workspace_root() is None
    monkeypatch.setenv("UNLEARN_AUDIT_ROOT", str(root))
    assert workspace_root() == root
    assert workspace_root(str(tmp_path)) == tmp_path.resolve()  # --root wins over the environment
    with pytest.raises(PathOutsideRoot, match="not an existing folder"):
        workspace_root(str(tmp_path / "typo"))


def _fake_hub_cache(cache, repo: str) -> str:
    """A snapshot in the Hugging Face cache layout, as `huggingface-cli download` leaves it."""
    commit = "0" * 40
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    return str(snap)


def test_hub_ids_resolve_from_the_local_cache_only_never_from_the_working_directory(root, tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snap = _fake_hub_cache(cache, "gpt2-org/tiny-model")
    assert checkpoint_source("gpt2-org/tiny-model", root) == snap  # the cached snapshot, not a relative path
    assert checkpoint_source("models/orig", root) == str(root / "models" / "orig")  # a folder of that form wins
    (tmp_path / "cwd" / "secret" / "model").mkdir(parents=True)  # same form as a hub id, next to the server
    monkeypatch.chdir(tmp_path / "cwd")
    with pytest.raises(PathOutsideRoot, match="neither a folder under the workspace root .* nor a hub id"):
        checkpoint_source("secret/model", root)
    with pytest.raises(PathOutsideRoot):
        checkpoint_source("../x", root)
    with pytest.raises(PathOutsideRoot):
        checkpoint_source("/x/y", root)


def test_store_only_under_root_app_data_or_the_configured_file(root, tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARN_AUDIT_CACHE", str(tmp_path / "cache"))
    assert store_location("r.sqlite", root) == root / "r.sqlite"
    assert store_location(str(tmp_path / "cache" / "lab" / "r.sqlite"), root) == tmp_path / "cache" / "lab" / "r.sqlite"
    configured = tmp_path / "srv" / "store.sqlite"
    assert store_location(str(configured), root, allowed=(str(configured),)) == configured
    with pytest.raises(PathOutsideRoot, match="a results store can only be created there"):
        store_location(str(tmp_path / "srv" / "other.sqlite"), root, allowed=(str(configured),))
    with pytest.raises(PathOutsideRoot, match="outside the workspace root"):
        store_location(str(tmp_path / "secret" / "key.txt"), root)
    assert (tmp_path / "secret" / "key.txt").read_text() == "hidden"


def test_store_never_overwrites_a_file_that_is_not_sqlite(root, tmp_path):
    (root / "notes.txt").write_text("my notes")
    for r in (root, None):
        with pytest.raises(PathOutsideRoot, match="not a SQLite file"):
            store_location(str(root / "notes.txt"), r)
        with pytest.raises(PathOutsideRoot, match="is a folder"):
            store_location(str(root / "models"), r)
    assert (root / "notes.txt").read_text() == "my notes"


def test_network_serving_needs_a_root(root):
    for addr in ("127.0.0.1", "localhost", "::1", "127.0.0.5"):
        assert is_loopback(addr)
        check_serving(addr, None)
    for addr in ("0.0.0.0", "", None, "192.168.1.4", "::"):
        assert not is_loopback(addr)
        with pytest.raises(PathOutsideRoot, match="without a workspace root"):
            check_serving(addr, None)
        check_serving(addr, root)


def test_cli_refuses_path_arguments_outside_the_root(root, tmp_path, capsys):
    from unlearn_core.cli import main

    (root / "lab").symlink_to(tmp_path / "secret")
    cases = [
        (["--lab", str(root / "lab")], "--lab: .* is outside the workspace root"),
        (["--lab", str(tmp_path / "secret")], "--lab: .* is outside the workspace root"),
        (["--original", "models/orig", "--unlearned", f"ga={tmp_path / 'secret'}", "--forget", "f.jsonl"],
         "--unlearned ga: .* is outside the workspace root"),
        (["--original", "models/orig", "--unlearned", "ga=models/orig", "--forget", "../secret/key.txt"],
         "--forget: .* is outside the workspace root"),
        (["--original", "models/orig", "--unlearned", "ga=models/orig", "--forget", "f.jsonl",
          "--store", str(tmp_path / "secret" / "key.txt")], "--store: .* outside the workspace root"),
    ]
    for extra, message in cases:
        out = root / "out"
        rc = main(["audit", "--root", str(root), "--out", str(out), *extra])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert __import__("re").search(message, err), err
        assert not out.exists()  # refused before anything was created
    assert main(["audit", "--root", str(root), "--out", str(tmp_path / "out"), "--lab", "x"]) == 2
    assert "--out" in capsys.readouterr().err
    assert (tmp_path / "secret" / "key.txt").read_text() == "hidden"


def test_the_app_binds_to_localhost_and_run_app_refuses_the_network_without_a_root(tmp_path):
    import os
    import subprocess
    from pathlib import Path

    import tomllib

    repo = Path(__file__).resolve().parents[2]
    cfg = tomllib.loads((repo / ".streamlit" / "config.toml").read_text())
    assert is_loopback(cfg["server"]["address"])
    env = {k: v for k, v in os.environ.items() if k not in ("UNLEARN_AUDIT_ROOT", "UNLEARN_AUDIT_SERVE_NETWORK")}
    for args, extra in ((["--network"], {}), ([], {"UNLEARN_AUDIT_SERVE_NETWORK": "1"}),
                        (["--network"], {"UNLEARN_AUDIT_ROOT": str(tmp_path / "missing")})):
        r = subprocess.run(["bash", str(repo / "scripts" / "run_app.sh"), *args], env={**env, **extra},
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, r.stderr
        assert "refusing to serve on the network without a workspace root" in r.stderr


def test_a_model_folder_inside_the_root_whose_files_link_outside_is_refused(root, tmp_path):
    from unlearn_core.checkpoints.guard import folder_inside

    model = root / "models" / "orig"
    (model / "config.json").write_text("{}")
    assert checkpoint_source("models/orig", root) == str(model)
    (model / "model.safetensors").symlink_to(tmp_path / "secret" / "key.txt")
    with pytest.raises(PathOutsideRoot, match=r"model.safetensors links to .*key.txt, outside the workspace root"):
        checkpoint_source("models/orig", root)
    (model / "model.safetensors").unlink()
    (model / "tok").mkdir()
    (model / "tok" / "vocab.json").symlink_to(tmp_path / "secret" / "key.txt")  # one level down too
    with pytest.raises(PathOutsideRoot, match="vocab.json links to"):
        folder_inside(str(model), root, "sae path")
    assert folder_inside(str(model), None) == model  # no root: nothing checked
