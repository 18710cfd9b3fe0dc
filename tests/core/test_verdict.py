"""The verdict rule on planted score dicts, then end to end on the tiny demo lab's two controls."""

from __future__ import annotations

import math

import pytest
import torch

from unlearn_core.analyses.patching import compute_patching
from unlearn_core.analyses.verdict import VerdictConfig, compute_verdict
from unlearn_core.scoring import score_answers
from unlearn_core.viz.plot_restoration import plot_patching, plot_verdict

ORIG = {"forget_acc": 1.0}


def test_rule_thresholds():
    scores = {
        "original": ORIG,
        "kept": {"forget_acc": 0.9, "sae_restoration": 0.9},
        "sup": {"forget_acc": 0.05, "sae_restoration": 0.1, "patching_retention": 0.7},
        "part": {"forget_acc": 0.05, "keyword_recovery": 0.3, "sae_restoration": float("nan")},
        "gone": {"forget_acc": 0.0, "sae_restoration": 0.1, "quantization_recovery": 0.15},
        "blind": {"forget_acc": 0.0},
    }
    res = compute_verdict(scores)
    got = {v.model: v.verdict for v in res.verdicts}
    assert got == {"kept": "not forgotten", "sup": "suppressed", "part": "partially suppressed", "gone": "deleted",
                   "blind": "unknown"}
    sup = res.get("sup")
    assert sup.retention == 0.7 and sup.retention_from == "patching_retention" and sup.looks_forgotten_score == 0.95
    assert "sae_restoration" not in res.get("part").evidence  # NaN evidence is not evidence
    df = res.to_frame()
    assert list(df["model"]) == ["kept", "sup", "part", "gone", "blind"] and "reason" in df
    assert "r = max" in res.rule
    strict = compute_verdict(scores, VerdictConfig(suppressed_at=0.8, partial_at=0.5))
    assert strict.get("sup").verdict == "partially suppressed" and strict.get("part").verdict == "deleted"
    with pytest.raises(ValueError):
        VerdictConfig(partial_at=0.6, suppressed_at=0.5)
    assert plot_verdict(res).data


def test_clipping_and_missing_original():
    res = compute_verdict({"original": ORIG, "x": {"forget_acc": 0.0, "relearning_recovery": 3.0}})
    assert res.get("x").retention == 1.0 and res.get("x").verdict == "suppressed"
    res = compute_verdict({"x": {"forget_acc": 0.0, "sae_restoration": 0.9}})
    assert res.get("x").verdict == "unknown" and math.isnan(res.get("x").original_forget_acc)


def test_demo_lab_controls(tiny_lab):
    """suppressed_head -> suppressed; retain_only (loaded as an unlearned checkpoint) -> deleted."""
    from unlearn_core.workspace import lab_workspace

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ws = lab_workspace(tiny_lab, unlearned=["suppressed_head"])
        ms, data = ws.load_models(), ws.load_data()
        patching = compute_patching(ms, data)
        pairs = [data.prompt_format.pair(it) for it in data.forget]
        scores = {}
        for name, lm in ms.all().items():
            acc = score_answers(lm.model, lm.tokenizer, [p for p, _ in pairs], [a for _, a in pairs]).accuracy()
            scores[name] = {"forget_acc": float(acc.mean()), **patching.scores(name)}
    finally:
        torch.set_num_threads(threads)
    res = compute_verdict(scores)
    assert res.get("suppressed_head").verdict == "suppressed", res.to_frame().to_string()
    assert res.get("retain_only").verdict == "deleted"
    assert res.get("retain_only").retention == 0.0
    assert plot_patching(patching).data
