"""A stored result read for fewer checkpoints: what `AnalysisSpec.restrict` functions are built from.

An analysis whose numbers for one checkpoint do not depend on which other checkpoints are in the set (each is scored,
attacked or probed on its own, against the same original and data) can serve any subset of a stored set: the
subset's rows are the stored ones, and only what is read across checkpoints (the retain-only reference's role in
another checkpoint's number) is derived again. tests/core/test_subset_reuse.py holds each such restrict equal to a
fresh computation on the subset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from unlearn_core.analyses.common.probes import ItemTable


def check_keeps(names: Iterable[str], original: str) -> frozenset[str]:
    keep = frozenset(names)
    if original not in keep:
        raise ValueError(f"a subset must keep the original ({original!r}); got {sorted(keep)}")
    return keep


def keep_keys(d: Mapping, keep: frozenset[str]) -> dict:
    return {k: v for k, v in d.items() if k in keep}


def keep_rows(rows: Iterable[dict], keep: frozenset[str], column: str = "model") -> tuple[dict, ...]:
    return tuple(r for r in rows if r[column] in keep)


def keep_items(table: ItemTable, keep: frozenset[str]) -> ItemTable:
    return {split: keep_keys(models, keep) for split, models in table.items()}


def reference_of(rows: Iterable[dict]) -> str | None:
    """The retain-only model's name in rows with a `role` column."""
    return next((r["model"] for r in rows if r.get("role") == "retain_only"), None)
