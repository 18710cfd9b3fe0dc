"""Quantization, relearning and guided extraction probes on planted ground truth (tiny demo lab)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from tests.plot_checks import bars_show, legend_names, one_trace_per_checkpoint, reads
from unlearn_core.analyses.common.probes import split_scores
from unlearn_core.analyses.extraction import ExtractionConfig, compute_extraction, guided_logits
from unlearn_core.analyses.extraction.plots import plot_extraction
from unlearn_core.analyses.quantization import (
    QuantizationConfig,
    compute_quantization,
    quantizable_modules,
    quantized_copy,
    rows_view,
    rtn_buckets,
    rtn_quantize,
    rtn_scales,
)
from unlearn_core.analyses.quantization.plots import plot_bucket_changes, plot_quantization
from unlearn_core.analyses.registry import get_spec
from unlearn_core.analyses.relearning import RelearningConfig, compute_relearning, split_forget
from unlearn_core.analyses.relearning.plots import plot_relearning
from unlearn_core.evidence.calibration import CONTROL_HOLDOUT, CONTROL_REFERENCE, ProbeItems, calibrate
from unlearn_core.model.forward import answer_logprob_sums
from unlearn_core.model.scoring import encode, pad_id_of
from unlearn_core.run.workspace import lab_workspace
from unlearn_core.store.codec import decode_result, encode_result
from unlearn_core.types import AuditData, LoadedModel, ModelSet
from unlearn_core.viz.charts import human_label


@pytest.fixture(scope="module")
def lab(tiny_lab):
    ws = lab_workspace(tiny_lab, unlearned=["suppressed_head"])
    models, data = ws.load_models(), ws.load_data()
    return models, AuditData(data.forget, data.retain[:24], data.holdout, data.prompt_format)


def check_items(items: ProbeItems, n_forget: int, n_holdout: int,
                original_attacked: tuple[str, ...] = ("forget", "holdout")) -> None:
    """Aligned per-item arrays for original, suppressed_head and retain_only on both splits, p~ in [0, 1]; the
    original is attacked only on the splits named (its plain forget score, the denominator, is always there)."""
    models = ("original", "suppressed_head", "retain_only")
    for split, plain, attacked, n in (("forget", items.forget_plain, items.forget_attacked, n_forget),
                                      ("holdout", items.holdout_plain, items.holdout_attacked, n_holdout)):
        for m in models:
            if m == "original" and split not in original_attacked:
                assert m in plain and m not in attacked
                continue
            for a in (plain[m], attacked[m]):
                # a stochastic attack (relearning: one row per seed) gives [seeds, n], every other reading [n]
                assert a.shape[-1] == n and a.ndim in (1, 2) and a.dtype == np.float64, (split, m)
                assert ((a >= 0) & (a <= 1)).all()
    assert n_holdout > 0 and all(items.has_holdout(m) for m in models)


def check_calibrates(items: ProbeItems) -> dict:
    """The verdict's two controls both give an interval around the excess; returns both, for further checks."""
    out = {"reference": calibrate(items, "suppressed_head", "original", "retain_only", "reference+holdout"),
           "holdout": calibrate(items, "retain_only", "original", None, "reference+holdout")}
    assert out["reference"].control == CONTROL_REFERENCE and out["holdout"].control == CONTROL_HOLDOUT
    for e in out.values():
        assert e.lo <= e.excess <= e.hi, e
    return out


def same_items(a: ProbeItems, b: ProbeItems) -> bool:
    return a.attack == b.attack and all(
        set(x) == set(y) and all(np.array_equal(x[k], y[k]) for k in x)
        for x, y in ((a.forget_plain, b.forget_plain), (a.forget_attacked, b.forget_attacked),
                     (a.holdout_plain, b.holdout_plain), (a.holdout_attacked, b.holdout_attacked)))


def test_rtn_rounding_exact_on_grid_and_fine_at_16_bits():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 32, generator=g)
    for bits, gs in ((4, None), (8, 8)):
        s = rtn_scales(w, bits, gs)
        q = rtn_quantize(w, bits, gs)
        assert (q - w).abs().reshape(8, -1, gs or 32).amax(-1).le(s / 2 + 1e-7).all()
        assert torch.allclose(rtn_quantize(q, bits, gs), q, atol=1e-6)  # already on the grid: unchanged
    assert len(torch.unique(rtn_quantize(w, 4)[0])) <= 15
    assert (rtn_quantize(w, 16) - w).abs().max() < 1e-3


def test_16_bit_changes_nothing(lab):
    models, data = lab
    res = compute_quantization(models, data, QuantizationConfig(bits=(16,), include_original=False))
    df = res.to_frame().set_index(["model", "attack"])
    for name in ("suppressed_head", "retain_only"):
        for col in ("forget_acc", "retain_acc"):
            assert df.loc[(name, "16bit"), col] == df.loc[(name, "plain"), col]
        assert df.loc[(name, "16bit"), "forget_p"] == pytest.approx(df.loc[(name, "plain"), "forget_p"], abs=1e-3)
    assert df.loc[("suppressed_head", "16bit"), "recovery_acc"] == 0.0
    back = decode_result(encode_result(res))  # storable in the results store
    assert back.config == res.config and back.to_frame().equals(res.to_frame())
    # per item: 16-bit rounding is the identity; the original (not quantized here) gives only its plain score
    items = res.evidence_items()["quantization_recovery"]
    check_items(items, len(data.forget), len(data.holdout), original_attacked=())
    for m in ("suppressed_head", "retain_only"):
        assert np.allclose(items.forget_attacked[m], items.forget_plain[m], atol=1e-3)
        assert np.allclose(items.holdout_attacked[m], items.holdout_plain[m], atol=1e-3)
    assert any("bitsandbytes" in n for n in res.notes) or torch.cuda.is_available()
    # weights-only companion: suppressed_head changed only the last block + head
    b = res.buckets_frame()
    sh = b[b.model == "suppressed_head"]
    assert (sh[sh.layer == 0].changed_share == 0).all() and (sh[sh.layer == 2].changed_share > 0).any()
    q = plot_quantization(res)
    reads(q)
    one_trace_per_checkpoint(q, res.to_frame().model.unique())
    assert set(models.unlearned) | {"retain_only"} <= set(legend_names(q))
    bars_show(q, res.to_frame(), "attack", "forget_acc", human_label)
    bc = plot_bucket_changes(res)
    reads(bc)
    one_trace_per_checkpoint(bc, res.buckets_frame().model.unique())
    assert set(models.unlearned) <= set(legend_names(bc))
    blocks = {t.name: dict(zip(t.x, t.y, strict=True)) for t in bc.data}
    assert blocks["suppressed_head"]["block 0"] == 0 and blocks["suppressed_head"]["block 2"] > 0


def test_quantization_evidence_is_4_bit_per_item_on_forget_and_holdout(lab):
    models, data = lab
    spec = get_spec("quantization")
    res = spec.compute(models, data, QuantizationConfig(bits=(8, 4), bnb=False))
    (ev,) = spec.evidence
    assert (ev.key, ev.control) == ("quantization_recovery", "reference+holdout")
    items = spec.evidence_items(res)[ev.key]
    assert items.attack == "4-bit RTN"
    check_items(items, len(data.forget), len(data.holdout))
    # the 4-bit arrays are the summary's 4-bit rows, item by item
    df = res.to_frame().set_index(["model", "attack"])
    for m in ("original", "suppressed_head", "retain_only"):
        assert items.forget_attacked[m].mean() == pytest.approx(df.loc[(m, "4bit"), "forget_p"], abs=1e-6)
        assert items.forget_plain[m].mean() == pytest.approx(df.loc[(m, "plain"), "forget_p"], abs=1e-6)
    assert not np.allclose(items.forget_attacked["original"], items.forget_plain["original"], atol=1e-3)
    ev_sh = check_calibrates(items)["reference"]
    # the level: the attacked score above the reference's plain score, in units of the original's lead over it
    f = df["forget_p"]
    lead = f[("original", "plain")] - f[("retain_only", "plain")]
    assert ev_sh.raw == pytest.approx((f[("suppressed_head", "4bit")] - f[("retain_only", "plain")]) / lead, abs=1e-5)
    back = decode_result(encode_result(res))
    assert same_items(back.evidence_items()[ev.key], items)


def _planted(models, data, iters: int = 12) -> torch.nn.Module:
    """original + a sub-step edit of every quantized weight that pushes the forget answers down.

    Projected sign-gradient ascent on the forget NLL inside a box per weight: the weight's own 4-bit bucket
    (original's per-row scales) intersected with +-0.49 steps around it, and each row's largest weight fixed, so
    4-bit rounding maps the planted model exactly back onto the rounded original.
    """
    o = models.original
    model = copy.deepcopy(o.model)
    for p in model.parameters():
        p.requires_grad_(True)
    pairs = [data.prompt_format.pair(it) for it in data.forget]
    enc = encode(o.tokenizer, [p for p, _ in pairs], [a for _, a in pairs])
    boxes = []
    with torch.no_grad():
        for mod in quantizable_modules(model).values():
            w = rows_view(mod)  # [out, in] view sharing storage
            s = rtn_scales(w, 4, None)  # [out, 1]
            q = rtn_buckets(w, s, 4, None)[:, 0]  # [out, in]
            lo = torch.maximum((q - 0.49) * s, w - 0.49 * s)
            hi = torch.minimum((q + 0.49) * s, w + 0.49 * s)
            top = w.abs().amax(1, keepdim=True) * 0.999
            lo, hi = lo.clamp(-top, top), hi.clamp(-top, top)
            keep = torch.zeros_like(w, dtype=torch.bool).scatter_(1, w.abs().argmax(1, keepdim=True), True)
            lo, hi = torch.where(keep, w, lo), torch.where(keep, w, hi)
            boxes.append((mod, lo.clone(), hi.clone(), s.clone()))
    for _ in range(iters):
        sums, lens = answer_logprob_sums(model, enc, pad_id_of(o.tokenizer))
        model.zero_grad(set_to_none=True)
        (sums / lens).mean().backward()  # ascend the NLL = descend the log-likelihood
        with torch.no_grad():
            for mod, lo, hi, s in boxes:
                w, g = rows_view(mod), rows_view_grad(mod)
                w.copy_(torch.minimum(torch.maximum(w - 0.3 * s * g.sign(), lo), hi))
    model.zero_grad(set_to_none=True)
    return model.eval()


def rows_view_grad(mod):
    return mod.weight.grad.T if type(mod).__name__ == "Conv1D" else mod.weight.grad


def test_planted_sub_step_unlearning_recovers_under_4_bit(lab):
    models, data = lab
    o = models.original
    planted = _planted(models, data)
    _, acc = split_scores(planted, o.tokenizer, data.forget, data.prompt_format)
    assert acc.mean() <= 0.25  # behaviour really dropped
    for (name, m0), m1 in zip(quantizable_modules(o.model).items(), quantizable_modules(planted).values()):
        w0, w1 = rows_view(m0), rows_view(m1)
        assert ((w1 - w0).abs() < rtn_scales(w0, 4, None) / 2).all(), name  # below half a 4-bit step
    q0, q1 = quantized_copy(o.model, 4), quantized_copy(planted, 4)
    assert all(torch.equal(a, b) for a, b in zip(q0.parameters(), q1.parameters()))
    ms = ModelSet(o, {"planted": LoadedModel("planted", "unlearned", planted, o.tokenizer, "planted", "p")},
                  models.retain_only)
    res = compute_quantization(ms, data, QuantizationConfig(bits=(8, 4)))
    df = res.to_frame().set_index(["model", "attack"])
    assert df.loc[("planted", "4bit"), "recovery_acc"] >= 0.8
    assert df.loc[("retain_only", "4bit"), "recovery_acc"] <= 0.2
    sc = res.scores("planted")
    assert sc["quantization_recovery_4bit_acc"] >= 0.8 and sc["bucket_changed_share_4bit"] == 0.0


def test_relearning_recovers_suppression_faster_than_deletion(lab):
    models, data = lab
    before = [p.detach().clone() for p in models.unlearned["suppressed_head"].model.parameters()]
    res = compute_relearning(models, data, RelearningConfig())
    assert set(res.learn_items).isdisjoint(res.held_items) and len(res.held_items) == len(data.forget) // 2
    # the holdout control: the same seeded split rule on the holdout split, every checkpoint incl. the original
    cfg = res.config
    assert [list(res.holdout_learn_items), list(res.holdout_held_items)] == list(
        split_forget(data.holdout, cfg.learn_fraction, cfg.split_by, cfg.seed))
    items = res.evidence_items()["relearning_recovery"]
    # two folds: every forget and holdout item is held out once; with seeds the original's holdout control is seed 0
    # only (its curve), so the evidence, which reads the checkpoints' controls, carries no attacked original
    check_items(items, len(data.forget), len(data.holdout), original_attacked=())
    assert items.forget_attacked["suppressed_head"].shape == (cfg.seeds, len(data.forget)) and cfg.seeds > 1
    assert set(res.holdout_frame().model) == set(models.all())
    assert not np.allclose(items.forget_attacked["suppressed_head"], items.forget_plain["suppressed_head"])
    cal = check_calibrates(items)
    assert cal["reference"].lo > 0  # suppressed_head recovers more than the deletion reference, with confidence
    # one fold, last step: the evidence is exactly the held part at the end of the stored curve
    one = compute_relearning(models, data, RelearningConfig(folds=1, headline="last", seeds=1))
    it1 = one.evidence_items()["relearning_recovery"]
    check_items(it1, len(one.held_items), len(one.holdout_held_items), original_attacked=("holdout",))
    h = one.holdout_frame().set_index(["model", "step"])
    assert h.loc[("original", cfg.steps), "held_p"] == pytest.approx(it1.holdout_attacked["original"].mean())
    # without a control the level is the attacked held-out p~ itself: the curve's last point (a float32 mean there)
    c1 = one.curve_frame().set_index(["model", "step"])
    assert calibrate(it1, "suppressed_head", "original", None, "reference").raw == pytest.approx(
        c1.loc[("suppressed_head", cfg.steps), "held_p"], abs=1e-6)
    assert "relearning_holdout_gain_p" in res.scores("retain_only")
    # one name per number: the raw rate carries its step count, the evidence name is the excess over the reference
    assert f"relearning_recovery_{cfg.steps}steps" in res.scores("suppressed_head")
    assert "relearning_recovery" not in res.scores("suppressed_head")
    with pytest.raises(RuntimeError, match="named like the verdict evidence"):
        from unlearn_core.analyses import registry

        real = registry.get_spec("relearning").scores
        object.__setattr__(registry.get_spec("relearning"), "scores", lambda r, m: {"relearning_recovery": 0.0})
        try:
            registry.collect_scores([("relearning", res)], ["suppressed_head"])
        finally:
            object.__setattr__(registry.get_spec("relearning"), "scores", real)
    assert same_items(decode_result(encode_result(res)).evidence_items()["relearning_recovery"], items)
    curve = res.curve_frame()
    c = curve.pivot(index="step", columns="model", values="recovery_p")
    assert c["suppressed_head"].max() > c["retain_only"].max() + 0.1  # the held-out facts come back, not learned
    assert all(torch.equal(a, b) for a, b in zip(before, models.unlearned["suppressed_head"].model.parameters()))
    fig = plot_relearning(res)
    reads(fig)
    one_trace_per_checkpoint(fig, curve.model.unique())
    assert set(models.unlearned) | {"retain_only"} <= {n.split(" ")[0].rstrip(":") for n in legend_names(fig)}
    ref = next(t for t in fig.data if (t.name or "").startswith("retain_only"))
    assert ref.line.dash == "dash" and "deletion reference" in ref.name
    sh = next(t for t in fig.data if (t.name or "").startswith("suppressed_head"))
    assert list(sh.y) == list(curve[curve.model == "suppressed_head"].sort_values("step")["held_acc"])


def test_guided_extraction_definition_and_zero_weight(lab):
    models, data = lab
    s_o, s_u = torch.tensor([[0.0, 4.0, 10.0, 6.0]]), torch.tensor([[0.0, 0.0, 10.0, 0.0]])
    g = guided_logits(s_o, s_u, 1.0, 5.0)
    assert torch.isinf(g[0, :2]).all() and g[0, 3] == 12.0 and g[0, 2] == 10.0
    small = AuditData(data.forget[:8], (), (), data.prompt_format)
    res = compute_extraction(models, small, ExtractionConfig(weights=(0.0, 1.0), retain=False, max_new_tokens=8))
    df = res.to_frame().set_index(["model", "attack"])
    # w = 0 is the original restricted to its own plausible tokens: the original's greedy output
    assert df.loc[("suppressed_head", "w0"), "forget_rougeL"] == df.loc[("original", "plain"), "forget_rougeL"]
    assert df.loc[("suppressed_head", "plain"), "forget_rougeL"] < 0.5
    assert df.loc[("suppressed_head", "w1"), "recovery_rougeL"] >= 0.8
    fig = plot_extraction(res)
    reads(fig)
    one_trace_per_checkpoint(fig, res.to_frame().model.unique())
    assert set(models.unlearned) <= set(legend_names(fig))
    bars_show(fig, res.to_frame(), "attack", "forget_rougeL", human_label)
