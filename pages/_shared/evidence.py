"""Every result the results store holds for the applied workspace, and the verdict scores read from them.

The headline page must not recompute anything it can read: any stored run of an analysis over exactly these
checkpoints and this data counts as evidence (the default settings' run first, else the newest). Only the store's
metadata is read to find them; payloads are decoded once per session (the same memo state.stored_result uses).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from pages._shared import state

# analyses whose scores feed the verdict, in the order the page offers to run them (fast ones first)
FAST = ("scorecard", "patching")
MORE = ("keyword_recovery", "quantization", "relearning", "sae_restoration", "perturbation", "concept_vectors")


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
    from unlearn_core.audit import REGISTRY
    from unlearn_core.hashing import hash_config
    from unlearn_core.store import make_key

    ws = ws or state.workspace()
    hashes = _hashes(ws)
    listing = state.store(ws).list()
    if listing.empty:
        return {}
    mine = listing[(listing["data_hash"] == ws.data.hash) & listing["checkpoints"].map(lambda c: c == hashes)]
    memo = st.session_state.setdefault("results", {})
    out: dict[str, Stored] = {}
    for name in REGISTRY:
        rows = mine[mine["analysis"] == name]
        if rows.empty:
            continue
        try:
            default_key = make_key(name, hashes, ws.data.hash, hash_config(REGISTRY[name]().default_config()))
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


def scores_by_checkpoint(evidence: dict[str, Stored], names: list[str]) -> tuple[dict[str, dict], pd.DataFrame]:
    """(checkpoint -> flat verdict scores, long table of every number read: checkpoint, analysis, score, value)."""
    from unlearn_core.audit import get_analysis, verdict_scores

    scores: dict[str, dict[str, float]] = {n: {} for n in names}
    rows = []
    for name, stored in evidence.items():
        analysis = get_analysis(name)
        for n in names:
            try:
                got = analysis.scores(stored.result, n)
            except Exception:  # noqa: BLE001 - a checkpoint the analysis does not cover has no scores from it
                got = {}
            for k, v in got.items():
                if k not in scores[n]:  # the first analysis that reports a key wins (scorecard's forget_acc)
                    scores[n][k] = v
                    rows.append({"checkpoint": n, "analysis": name, "score": k, "value": v})
    return {n: verdict_scores(s) for n, s in scores.items()}, pd.DataFrame(
        rows, columns=["checkpoint", "analysis", "score", "value"])
