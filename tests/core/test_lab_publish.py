"""A forced lab rebuild publishes by renames only: whatever moment it is killed at, `out` holds a whole lab."""

from __future__ import annotations

import json
import shutil

import pytest

from unlearn_core.lab import build
from unlearn_core.lab.config import get_config


def _fake_build(version):
    def run(tmp, cfg, progress, verbose, jobs=1):
        meta = {"config_hash": cfg.hash, "version": version}
        (tmp / "weights.bin").write_text(version)
        (tmp / "lab.json").write_text(json.dumps(meta))
        return meta
    return run


def _built_v1(tmp_path, monkeypatch):
    """A fake lab built as v1, with the next build set to produce v2."""
    cfg = get_config("tiny")
    out = tmp_path / "lab"
    monkeypatch.setattr(build, "build_extras", lambda lab: None)  # the fake lab has no models to train from
    monkeypatch.setattr(build, "_build", _fake_build("v1"))
    build.build_lab(out, cfg, verbose=False)
    monkeypatch.setattr(build, "_build", _fake_build("v2"))
    return cfg, out


def test_forced_rebuild_replaces_the_lab_whole(tmp_path, monkeypatch):
    cfg, out = _built_v1(tmp_path, monkeypatch)
    meta = build.build_lab(out, cfg, force=True, verbose=False)
    assert meta["version"] == "v2" and (out / "weights.bin").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["lab"]


def test_a_kill_while_removing_the_old_lab_leaves_the_new_one(tmp_path, monkeypatch):
    """The old lab is deleted only after the new one is in place: a crash in that delete costs nothing."""
    cfg, out = _built_v1(tmp_path, monkeypatch)
    real_rmtree = shutil.rmtree

    def killed(path, *a, **k):
        if str(path).endswith(".old") and (tmp_path / "lab.old").exists():
            (tmp_path / "lab.old" / "weights.bin").unlink()  # half-deleted, then the process dies
            raise KeyboardInterrupt
        return real_rmtree(path, *a, **k)

    monkeypatch.setattr(build.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        build.build_lab(out, cfg, force=True, verbose=False)
    assert build.is_built(out, cfg) and (out / "weights.bin").read_text() == "v2"
