"""The CUDA path runs every analysis on bfloat16 weights (workspace.pick_device). No GPU was ever lent to the
project, so the same dtype runs here on the CPU: every analysis completes on bf16 checkpoints, the planted truth
holds, and integrated gradients still meet completeness to bf16 precision. A float32 op meeting a bf16 tensor in a
hook, a probe or an optimiser step fails here before it fails on a user's GPU."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from unlearn_core.analyses import registry
from unlearn_core.run.audit import run_audit

pytestmark = pytest.mark.lab


def test_every_analysis_runs_in_bfloat16_and_the_planted_truth_holds(tiny_lab, tmp_path, monkeypatch):
    import unlearn_core.run.workspace as ws

    monkeypatch.setattr(ws, "pick_device", lambda device="auto", max_memory=None: (torch.device("cpu"),
                                                                                   torch.bfloat16))
    spec = ws.lab_workspace(tiny_lab, unlearned=["suppressed_head", "retrained"])
    models, data = spec.load_models(), spec.load_data()
    assert {p.dtype for lm in models.all().values() for p in lm.model.parameters()} == {torch.bfloat16}
    # one relearning seed: the dtype path is under test, not the attack's seeds
    configs = {"relearning": replace(registry.get_spec("relearning").default_config(), seeds=1)}
    report = run_audit(models, data, list(registry.ANALYSES), tmp_path, store=None, configs=configs)
    assert set(report["analyses"]) == set(registry.ANALYSES)
    cps = report["checkpoints"]
    assert cps["suppressed_head"]["verdict"] == "suppressed", cps["suppressed_head"]["verdict_reason"]
    assert cps["retrained"]["verdict"] == "deleted", cps["retrained"]["verdict_reason"]
    assert cps["original"]["scores"]["forget_acc"] > 0.9 > cps["suppressed_head"]["scores"]["forget_acc"]
    # IG's completeness error is bf16's rounding, not the step count: still small against F(x) - F(baseline)
    items = pd.read_csv(tmp_path / "attribution_items.csv")
    ig = items[items["method"] == "ig"]
    assert len(ig) and ig["ig_delta"].notna().all()
    assert np.median(np.abs(ig["ig_delta"])) < 0.1 and np.median(np.abs(ig["lp"])) > 0  # nats
