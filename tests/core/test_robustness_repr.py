"""Representation similarity (CKA, logit lens) and activation perturbation on planted ground truth."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.plot_checks import bars_show, legend_names, one_trace_per_checkpoint, one_trace_per_checkpoint_of, reads
from unlearn_core.analyses.perturbation import PerturbationConfig, compute_perturbation
from unlearn_core.analyses.perturbation.plots import plot_perturbation
from unlearn_core.analyses.registry import get_spec
from unlearn_core.analyses.representation import RepresentationConfig, compute_representation, linear_cka
from unlearn_core.analyses.representation.plots import plot_cka, plot_logit_lens
from unlearn_core.evidence.calibration import CONTROL_HOLDOUT, CONTROL_REFERENCE, calibrate
from unlearn_core.model import arch
from unlearn_core.run.workspace import lab_workspace
from unlearn_core.store.codec import decode_result, encode_result
from unlearn_core.types import AuditData, LoadedModel, ModelSet
from unlearn_core.viz.charts import human_label


@pytest.fixture(scope="module")
def lab(tiny_lab):
    ws = lab_workspace(tiny_lab, unlearned=["suppressed_head"])
    models, data = ws.load_models(), ws.load_data()
    return models, AuditData(data.forget, data.retain[:24], (), data.prompt_format)


def test_cka_self_and_rotation_invariance():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=g, dtype=torch.float64)
    y = x @ torch.randn(16, 16, generator=g, dtype=torch.float64)
    y = y + 2.0 * torch.randn(200, 16, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-10)
    base = linear_cka(x, y)
    assert base < 0.99  # the check below must be able to fail
    assert linear_cka(x @ q, y) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x, 3.0 * y @ q) == pytest.approx(base, abs=1e-10)
    # Gram form (n < d) is rotation invariant too
    assert linear_cka(x[:10] @ q, y[:10]) == pytest.approx(linear_cka(x[:10], y[:10]), abs=1e-10)
    assert linear_cka(x, torch.randn(200, 16, generator=g, dtype=torch.float64)) < 0.3


def test_cka_of_a_model_with_itself_is_one(lab):
    models, data = lab
    o = models.original
    same = ModelSet(o, {"copy": LoadedModel("copy", "unlearned", o.model, o.tokenizer, o.path, o.hash)})
    res = compute_representation(same, data, RepresentationConfig(logit_lens=False))
    df = res.to_frame()
    assert len(df) == 2 * arch.n_layers(o.model)
    assert (df.cka - 1.0).abs().max() < 1e-9


def test_suppressed_head_keeps_lower_layers(lab):
    models, data = lab
    res = compute_representation(models, data, RepresentationConfig(lens_head="original"))
    df = res.to_frame()
    last = arch.n_layers(models.original.model) - 1
    sh = df[(df.model == "suppressed_head") & (df.split == "forget")]
    assert (sh[sh.layer < last].cka > 0.99).all()
    ro = df[(df.model == "retain_only") & (df.split == "forget")]
    assert ro.cka.max() < 0.99  # the deletion reference was trained separately: its representations differ
    # through the original's head, blocks below the changed one read exactly like the original's
    lens = res.lens_frame()
    lf = lens[(lens.split == "forget") & (lens.layer < last)].set_index(["model", "layer"])
    for layer in range(last):
        assert lf.loc[("suppressed_head", layer), "mean_prob"] == pytest.approx(
            lf.loc[("original", layer), "mean_prob"], abs=1e-5)
    final = lens[(lens.split == "forget") & (lens.layer == last)].set_index("model")
    assert final.loc["suppressed_head", "mean_prob"] < final.loc["original", "mean_prob"]
    scores = res.scores("suppressed_head")
    assert scores["cka_forget_min"] > 0.95 and not math.isnan(scores["logit_lens_recovery"])
    fig = plot_cka(res)
    reads(fig)
    for split in ("forget", "retain"):  # one line per checkpoint and split (dashed = retain prompts)
        one_trace_per_checkpoint_of(fig, res.to_frame().model.unique(), split)
    assert "retain_only (forget)" in legend_names(fig)
    lens_fig = plot_logit_lens(res)
    reads(lens_fig)
    one_trace_per_checkpoint(lens_fig, lens.model.unique())
    want = lens[lens.split == "forget"].set_index(["model", "layer"])["top1_share"]
    for t in lens_fig.data:
        assert list(t.y) == [want[(t.name, int(x))] for x in t.x]


def test_zero_noise_is_identity_and_hooks_are_removed(lab):
    models, data = lab
    small = AuditData(data.forget[:8], data.retain[:8], (), data.prompt_format)
    ms = ModelSet(models.original, models.unlearned, models.retain_only)
    before = [p.detach().clone() for p in models.original.model.parameters()]
    res = compute_perturbation(ms, small, PerturbationConfig(sigmas=(0.0, 0.5), k=3))
    df = res.to_frame().set_index(["model", "attack"])
    for name in ("original", "suppressed_head", "retain_only"):
        assert df.loc[(name, "sigma0"), "forget_p"] == pytest.approx(df.loc[(name, "plain"), "forget_p"], abs=1e-6)
        assert df.loc[(name, "sigma0"), "retain_acc_delta"] == 0.0
    assert df.loc[("suppressed_head", "sigma0"), "recovery_p"] == pytest.approx(0.0, abs=1e-6)
    # noise actually changes something, and the model itself is untouched afterwards
    assert df.loc[("original", "sigma0.5"), "retain_p"] != df.loc[("original", "plain"), "retain_p"]
    assert all(torch.equal(a, b) for a, b in zip(before, models.original.model.parameters()))
    for layer in arch.decoder_layers(models.original.model):
        assert not layer._forward_hooks
    assert "perturbation_recovery_sigma0.5_acc" in res.scores("suppressed_head")
    fig = plot_perturbation(res)
    reads(fig)
    one_trace_per_checkpoint(fig, res.to_frame().model.unique())
    bars_show(fig, res.to_frame(), "attack", "forget_acc", human_label)
    assert "noise σ = 0.5" in fig.data[0].x


@pytest.fixture(scope="module")
def noise_result(lab, tiny_lab):
    """Perturbation on the whole forget and holdout splits (the holdout is the within-model control)."""
    models, data = lab
    holdout = lab_workspace(tiny_lab).load_data().holdout
    small = AuditData(data.forget, data.retain[:8], holdout, data.prompt_format)
    return small, compute_perturbation(models, small, PerturbationConfig(sigmas=(0.0, 0.3), k=4))


def test_perturbation_evidence_is_best_of_k_per_item_with_holdout(lab, noise_result):
    models, _ = lab
    data, res = noise_result
    spec = get_spec("perturbation")
    (ev,) = spec.evidence
    assert (ev.key, ev.control) == ("perturbation_recovery", "reference+holdout")
    assert res.config.headline == 0.3 and PerturbationConfig(sigmas=(0.1, 0.5)).headline == 0.1
    with pytest.raises(ValueError, match="headline_sigma"):
        PerturbationConfig(sigmas=(0.1,), headline_sigma=0.3)
    items = spec.evidence_items(res)[ev.key]
    for split, n in (("forget", len(data.forget)), ("holdout", len(data.holdout))):
        plain, att = getattr(items, f"{split}_plain"), getattr(items, f"{split}_attacked")
        for m in ("original", "suppressed_head", "retain_only"):
            assert plain[m].shape == att[m].shape == (n,), (split, m)
            samples = res.items[split][m]["sigma0.3"]  # every noise sample is kept: [n, k]
            assert samples.shape == (n, 4) and np.array_equal(att[m], samples.max(1))
    df = res.to_frame().set_index(["model", "attack"])
    assert items.forget_attacked["suppressed_head"].mean() == pytest.approx(
        df.loc[("suppressed_head", "sigma0.3"), "forget_p"], abs=1e-6)
    # noise moves every model's per-item scores; sigma 0 is the identity item by item
    assert not np.allclose(items.forget_attacked["original"], items.forget_plain["original"], atol=1e-3)
    z = replace(res, config=replace(res.config, headline_sigma=0.0)).evidence_items()[ev.key]
    for m in models.all():
        assert np.allclose(z.forget_attacked[m], z.forget_plain[m], atol=1e-5)
        assert np.allclose(z.holdout_attacked[m], z.holdout_plain[m], atol=1e-5)
    ref = calibrate(items, "suppressed_head", "original", "retain_only", ev.control)
    hold = calibrate(items, "retain_only", "original", None, ev.control)
    assert (ref.control, hold.control) == (CONTROL_REFERENCE, CONTROL_HOLDOUT)
    for e in (ref, hold):
        assert e.lo <= e.excess <= e.hi
    back = decode_result(encode_result(res)).evidence_items()[ev.key]
    assert all(np.array_equal(back.holdout_attacked[m], items.holdout_attacked[m]) for m in models.all())
