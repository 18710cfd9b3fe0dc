"""Session fixtures: the tiny demo lab is built once (cached on disk by config hash, file-locked)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# the CLI's --jobs default is one process per core: under pytest-xdist the cores are the test workers', so an audit
# runs in its own process unless a test asks for workers (--jobs N) or for the default (it unsets this)
os.environ.setdefault("UNLEARN_AUDIT_JOBS", "1")

CACHE = Path(os.environ.get("UNLEARN_AUDIT_TEST_CACHE", Path(__file__).resolve().parents[1] / ".lab" / "test"))


def lab_path(config: str) -> Path:
    from unlearn_core.lab.build import build_lab
    from unlearn_core.lab.config import get_config

    cfg = get_config(config)
    out = CACHE / f"lab-{cfg.name}-{cfg.hash}"
    build_lab(out, cfg, verbose=False)
    return out


@pytest.fixture(scope="session")
def tiny_lab() -> Path:
    # UNLEARN_AUDIT_TINY_LAB: a lab folder built elsewhere (development against a frozen lab while lab/ changes)
    pinned = os.environ.get("UNLEARN_AUDIT_TINY_LAB")
    return Path(pinned) if pinned else lab_path("tiny")


@pytest.fixture(scope="session")
def tiny_llama_lab() -> Path:
    return lab_path("tiny-llama")


@pytest.fixture(autouse=True)
def _no_pinned_colours():
    """The dashboard pins checkpoint colours for the whole process (the app folder's colour book): an app test
    that ran earlier in this worker must not colour a later test's charts."""
    yield
    import sys

    theme = sys.modules.get("unlearn_core.viz.theme")
    if theme is not None:
        theme.pin_colors({})
