"""A stored result read for fewer checkpoints: what `AnalysisSpec.restrict` functions are built from.

An analysis whose numbers for one checkpoint do not depend on which other checkpoints are in the set (each is scored,
attacked or probed on its own, against the same original and data) can serve any subset of a stored set: the
subset's rows are the stored ones, and only what is read across checkpoints (the retain-only reference's role in
another checkpoint's number) is derived again. tests/core/test_subset_reuse.py holds each such restrict equal to a
fresh computation on the subset.

The same independence lets a set grow: a stored result over {original, reference, A} and one computed over
{original, reference, B} merge (`merge_parts`) into the result over {original, reference, A, B}: what is keyed or
rowed by checkpoint is joined, what is shared (config, data, items split, the reference's name) must agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import fields, replace

import numpy as np

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


class CannotMerge(ValueError):
    """Two parts whose shared fields differ, or a field of a shape merge_parts does not know: compute whole."""


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
                and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f")))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _model_of(x) -> str | None:
    if isinstance(x, Mapping):
        return x.get("model") if isinstance(x.get("model"), str) else None
    m = getattr(x, "model", None)
    return m if isinstance(m, str) else None


def _merge_value(values: list, order: list[str]):
    if all(_same(values[0], v) for v in values[1:]):
        return values[0]
    names = set(order)
    if all(isinstance(v, Mapping) for v in values):
        keys = [k for v in values for k in v]
        if set(keys) <= names:  # keyed by checkpoint: each from the first part that has it
            return {n: next(v[n] for v in values if n in v) for n in order if any(n in v for v in values)}
        first = list(dict.fromkeys(keys))
        return {k: _merge_value([v[k] for v in values if k in v], order) for k in first}
    if all(isinstance(v, tuple) for v in values):
        rows = [r for v in values for r in v]
        if rows and all(_model_of(r) in names for r in rows):  # rows of checkpoints: each one's from its first part
            owner = {}
            for i, v in enumerate(values):
                for r in v:
                    owner.setdefault(_model_of(r), i)
            kept = [r for i, v in enumerate(values) for r in v if owner[_model_of(r)] == i]
            return tuple(sorted(kept, key=lambda r: order.index(_model_of(r))))  # stable: a model's rows keep order
        if all(isinstance(r, str) for r in rows):  # notes
            return tuple(dict.fromkeys(rows))
    raise CannotMerge(f"parts differ in a field that is not keyed by checkpoint: {str(values[0])[:80]}")


def merge_parts(parts: list, order: list[str]):
    """One result over the union of the parts' checkpoints, in `order` (original, unlearned..., reference)."""
    if len({type(p) for p in parts}) != 1:
        raise CannotMerge("parts of different result types")
    first = parts[0]
    return replace(first, **{f.name: _merge_value([getattr(p, f.name) for p in parts], order)
                             for f in fields(first) if f.init})
