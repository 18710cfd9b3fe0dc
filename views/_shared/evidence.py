"""Every result the results store holds for the applied workspace, and the verdict scores read from them.

The headline page must not recompute anything it can read: any stored run of an analysis over exactly these
checkpoints and this data counts as evidence (the default settings' run first, else the newest). Only the store's
metadata is read to find them; payloads are decoded once per session (the same memo state.stored_result uses).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from unlearn_core.analyses.registry import default_evidence_set, more_evidence
from views._shared import state

# The headline page runs the default evidence set first (the CLI's default too); the other evidence on request.
FAST = default_evidence_set()
MORE = more_evidence()


@dataclass(frozen=True)
class Stored:
    analysis: str
    result: object
    key: str
    created: str
    default_config: bool


def _hashes(ws: state.Workspace) -> dict[str, str]:
    hashes = state.checkpoint_hashes(ws)
    if hashes is None:
        hashes = {n: m.hash for n, m in state.models(ws).all().items()}
    return hashes


def stored_evidence(ws: state.Workspace | None = None) -> dict[str, Stored]:
    """analysis name -> its stored result for this workspace (checkpoints and data must match exactly)."""
    from unlearn_core.analyses.registry import ANALYSES

    ws = ws or state.workspace()
    hashes = _hashes(ws)
    listing = state.store(ws).list()
    if listing.empty:
        return {}
    mine = listing[(listing["data_hash"] == ws.data.hash) & listing["checkpoints"].map(lambda c: c == hashes)]
    memo = st.session_state.setdefault("results", {})
    out: dict[str, Stored] = {}
    for name in ANALYSES:
        rows = mine[mine["analysis"] == name]
        if rows.empty:
            continue
        try:
            default_key = state.plan(name, None, ws).key
        except Exception:  # noqa: BLE001 - an analysis that cannot even build its config is simply skipped
            continue
        ordered = pd.concat([rows[rows["key"] == default_key], rows[rows["key"] != default_key]])  # newest next
        for _, row in ordered.iterrows():
            result = memo.get(row["key"])
            if result is None:
                try:
                    result = state.store(ws).get_obj(row["key"])
                except Exception:  # noqa: BLE001 - an undecodable old payload is not evidence
                    result = None
            if result is None:
                continue
            memo[row["key"]] = result
            out[name] = Stored(name, result, row["key"], row["created"].strftime("%Y-%m-%d %H:%M UTC"),
                               row["key"] == default_key)
            break
    return out


def roles(ws: state.Workspace) -> dict[str, str]:
    names = ws.names()
    return {n: "original" if n == "original" else "retain_only" if n == "retain_only" and ws.spec.retain_only
            else "unlearned" for n in names}


def verdict(stored: dict[str, Stored], ws: state.Workspace, rule, with_reference: bool = True):
    """(VerdictResult, long table of every number read) through the CLI's own path (audit.verdict_from_results).

    with_reference=False reads the same stored results as if the workspace had no retain-only model: every probe
    runs per checkpoint, so dropping the reference from the roles gives the holdout-split calibration that an audit
    with --no-reference computes (most public unlearned models have no reference: this is their reading)."""
    from unlearn_core.run.audit import verdict_from_results

    results = [(name, s.result) for name, s in stored.items()]
    kept = {n: r for n, r in roles(ws).items() if with_reference or r != "retain_only"}
    result, scores = verdict_from_results(results, kept, rule, ws.data)
    rows = [{"checkpoint": n, "score": k, "value": v} for n, sc in scores.items() for k, v in sc.items()]
    return result, pd.DataFrame(rows, columns=["checkpoint", "score", "value"])
