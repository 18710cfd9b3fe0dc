"""Shared checks for frozen config dataclasses: one wording for the same mistake everywhere."""

from __future__ import annotations


def positive_ints(cfg, *names: str) -> None:
    for name in names:
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


def optional_positive_int(cfg, name: str) -> None:
    v = getattr(cfg, name)
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
        raise ValueError(f"{name} must be None or a positive int, got {v!r}")
