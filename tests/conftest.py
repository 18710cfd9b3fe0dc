"""Session fixtures: the tiny demo lab is built once (cached on disk by config hash, file-locked)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
