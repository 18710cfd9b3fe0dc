"""SAE training (sae-lens) and restoration on the tiny demo lab.

Planted truths asserted: suppressed_head (only its last block / final norm / head changed: the knowledge is intact
below) gets HIGH restoration at the last block's output with its facts' own SAE features; retain_only (retrained
from scratch without the forget split, loaded as one more unlearned checkpoint) gets ~none; random features restore
much less than the fact features; an unchanged copy of the original has nothing to restore and injection is an
exact no-op on it; below the last block suppressed_head equals the original, so injection there changes nothing;
the default SAE explains >= 0.9 of the variance.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from unlearn_core.analyses import registry
from unlearn_core.analyses.sae_restoration import RestorationConfig, compute_restoration, default_layer
from unlearn_core.analyses.sae_restoration.plots import plot_dose_response, plot_expert_features
from unlearn_core.analyses.sae_restoration.training import (
    SAETrainConfig,
    collect_residual,
    get_sae,
    load_sae,
    sae_quality,
    train_sae,
)
from unlearn_core.evidence.calibration import CONTROL_NONE, CONTROL_REFERENCE, calibrate
from unlearn_core.model.scoring import encode, pad_id_of
from unlearn_core.store.codec import decode_result, encode_result
from unlearn_core.types import LoadedModel, ModelSet

FAST_SAE = SAETrainConfig()  # the default: 1024 features, k 32, ~15 s on one thread
TINY_SAE = SAETrainConfig(expansion=4, k=16, steps=150)  # where only exactness (no-op) is tested


@pytest.fixture(scope="module")
def lab(tiny_lab, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setenv("UNLEARN_AUDIT_CACHE", str(tmp_path_factory.mktemp("cache")))
    from unlearn_core.run.workspace import lab_workspace

    ws = lab_workspace(tiny_lab, unlearned=["suppressed_head", "rmu"])
    models, data = ws.load_models(), ws.load_data()
    o = models.original
    unlearned = {"suppressed_head": models.unlearned["suppressed_head"],
                 "retain_only_as_unlearned": LoadedModel("retain_only_as_unlearned", "unlearned",
                                                         models.retain_only.model, o.tokenizer, "", "ro"),
                 "copy": LoadedModel("copy", "unlearned", o.model, o.tokenizer, "", "copy")}
    res = compute_restoration(ModelSet(o, unlearned, None), data, RestorationConfig(sae=FAST_SAE))
    yield ModelSet(o, {**unlearned, "rmu": models.unlearned["rmu"]}, None), data, res  # rmu: layer sweep only
    mp.undo()
    torch.set_num_threads(threads)


def test_default_layer_is_last_block_on_small_models():
    assert default_layer(3) == 2 and default_layer(4) == 3 and default_layer(12) == 8 and default_layer(1) == 0


def test_config_validation():
    with pytest.raises(ValueError):
        RestorationConfig(alphas=(1.0, -2.0))
    with pytest.raises(ValueError):
        RestorationConfig(headline_alpha=3.0)
    with pytest.raises(ValueError):
        SAETrainConfig(architecture="gated")
    with pytest.raises(ValueError):
        RestorationConfig(n_fact_features=0)
    assert RestorationConfig(headline_alpha=2.0).headline_alpha == 2.0


def test_sae_quality_cache_and_roundtrip(lab, tmp_path):
    ms, data, res = lab
    q = res.sae_quality
    assert q.explained_variance >= 0.9 and q.l0 == pytest.approx(FAST_SAE.k) and q.dead_fraction < 0.5
    o = ms.original
    pairs = [data.prompt_format.pair(it) for it in data.forget]
    enc = encode(o.tokenizer, [p for p, _ in pairs], [a for _, a in pairs])
    sae, q2, folder = get_sae(o.model, enc, res.layer, FAST_SAE, pad_id_of(o.tokenizer), o.hash, data.hash)
    assert q2.train_seconds == 0.0  # served from the on-disk cache
    x = collect_residual(o.model, enc, res.layer, pad_id_of(o.tokenizer))
    again = load_sae(folder, d_model=x.shape[1])
    assert torch.equal(again.encode(x), sae.encode(x))
    with pytest.raises(ValueError):
        load_sae(folder, d_model=x.shape[1] + 1)


def test_standard_sae_trains_sparse(lab):
    ms, data, res = lab
    o = ms.original
    pairs = [data.prompt_format.pair(it) for it in data.retain]
    enc = encode(o.tokenizer, [p for p, _ in pairs], [a for _, a in pairs])
    x = collect_residual(o.model, enc, res.layer, pad_id_of(o.tokenizer))
    sae = train_sae(x, SAETrainConfig(architecture="standard", expansion=4, steps=100, batch_size=128))
    q = sae_quality(sae, x)
    assert 0 < q.l0 < sae.cfg.d_sae / 2 and q.explained_variance > 0


def test_identical_model_has_nothing_to_restore(lab):
    _, _, res = lab
    rows = [r for r in res.rows if r["model"] == "copy"]
    assert all(math.isnan(r["restoration_p"]) for r in rows if r["split"] == "forget")
    assert all(r["delta_p"] == 0.0 for r in rows if r["variant"] == "inject")


def test_fact_features_beat_random_and_concept(lab):
    _, data, res = lab
    s = res.scores("suppressed_head")
    assert s["sae_restoration_fact"] > 3 * s["sae_restoration_random"], s
    assert s["sae_restoration_fact"] > s["sae_restoration_concept"], s
    curve = res.curve("suppressed_head")
    assert curve == sorted(curve), curve  # dose-response: more alpha, more restored
    assert s["sae_restoration_alpha"] == res.config.alphas[curve.index(max(curve))]
    assert res.scores("copy") and math.isnan(res.scores("copy")["sae_restoration_fact"])
    assert len(res.expert_features) == max(16, 2 * len(data.forget))  # the concept set grows with the forget set
    assert res.n_fact_features == 2 * FAST_SAE.k  # 2 x L0: the support of a two-token answer span
    facts = res.fact_features_frame()
    assert len(facts) == len(data.forget) and (facts["n_features"] == res.n_fact_features).all()
    assert facts["mass_share"].median() > 0.5  # the set holds most of each fact's activation mass
    top = res.features_frame()
    assert (top["mean_forget"] > top["mean_retain"]).all()


def test_injection_restores_the_suppression_and_the_retrained_model_too(lab):
    """The paper's finding, on the TOFU-protocol lab: injecting the original's fact features restores the planted
    suppression, far above random features, but ALSO the model fine-tuned from the same base without the forget set:
    raw restoration measures "can read the original's features", which is why it needs its control."""
    _, _, res = lab
    sup, ro = res.scores("suppressed_head"), res.scores("retain_only_as_unlearned")
    assert sup["sae_restoration_fact"] >= 0.3 and sup["sae_restoration_fact"] > 3 * sup["sae_restoration_random"], sup
    assert ro["sae_restoration_fact"] >= 0.2, ro
    # restored without breaking the retain set (the 30-entity tiny lab: -0.129, against +0.3 or more on forget)
    assert abs(sup["sae_retain_delta_p"]) < 0.15


def test_injection_below_the_edit_is_a_no_op(lab):
    """suppressed_head equals the original below its last block: z_o = z_u there, so injection changes nothing."""
    ms, data, _ = lab
    sub = ModelSet(ms.original, {"suppressed_head": ms.unlearned["suppressed_head"]})
    res = compute_restoration(sub, data, RestorationConfig(layer=0, alphas=(1.0, 5.0), sae=TINY_SAE))
    inject = [r for r in res.rows if r["variant"] == "inject"]
    assert inject and all(r["delta_p"] == 0.0 for r in inject)
    assert res.scores("suppressed_head")["sae_restoration_fact"] == 0.0


def test_result_storable_and_plottable(lab):
    _, _, res = lab
    back = decode_result(encode_result(res))
    pd.testing.assert_frame_equal(back.to_frame(), res.to_frame())  # NaN-aware
    assert back.config == res.config and back.sae_quality == res.sae_quality
    fig = plot_dose_response(res)
    assert fig.layout.title.text and len(fig.data) == 3 * 3 * 2 + 3  # models x sets x panels + style key
    assert plot_expert_features(res).data


def test_verdict_from_restoration_alone(lab, tiny_lab):
    """With SAE restoration as the only retention evidence (counted on request: it is not counted by default),
    calibrated against the retain-only model, the planted suppression is called suppressed; without the reference
    the same number does not count (it copies the original's feature values, so only a deletion reference run the
    same way is a control)."""
    import json

    from unlearn_core.evidence.verdict import VerdictConfig, calibrate_all, compute_verdict

    _, _, res = lab
    meta = json.loads((tiny_lab / "lab.json").read_text())
    acc = {k: v["scores"]["forget_acc"] for k, v in meta["checkpoints"].items()}
    behaviour = {"original": {"forget_acc": acc["original"]},
                 "suppressed_head": {"forget_acc": acc["suppressed_head"]},
                 "retain_only_as_unlearned": {"forget_acc": acc["retain_only"]}}
    items = registry.collect_evidence_items([("sae_restoration", res)])
    ref = "retain_only_as_unlearned"
    rule = VerdictConfig(counted=("sae_restoration",))
    ev = calibrate_all(items, list(behaviour), "original", ref, rule)
    v = compute_verdict(behaviour, ev, rule, original="original", reference=ref)
    sup = v.get("suppressed_head")
    # alone, calibrated injection is too weak to call the suppression here, but it never makes a wrong call
    assert sup.verdict in ("suppressed", "inconclusive") and sup.retention_from == "sae_restoration", sup.reason
    assert sup.control == CONTROL_REFERENCE
    assert [x.model for x in v.verdicts] == ["suppressed_head"]  # the reference is the control, not audited
    alone = compute_verdict(behaviour, calibrate_all(items, list(behaviour), "original", None, rule), rule,
                            original="original")
    assert alone.get("suppressed_head").verdict == "unknown"
    assert alone.get("retain_only_as_unlearned").verdict == "unknown"


def test_evidence_items_aligned_with_the_forget_split(lab):
    ms, data, res = lab
    items = res.evidence_items()["sae_restoration"]
    assert items.key == "sae_restoration" and items.metric == "answer p~" and items.holdout_plain == {}
    assert set(items.forget_plain) == set(items.forget_attacked) == set(ms.all()) - {"rmu"}
    for m in items.forget_plain:
        assert items.forget_plain[m].shape == items.forget_attacked[m].shape == (len(data.forget),)
    np.testing.assert_array_equal(items.forget_attacked["original"], items.forget_plain["original"])
    np.testing.assert_array_equal(items.forget_attacked["copy"], items.forget_plain["copy"])  # injection: a no-op
    np.testing.assert_array_equal(items.forget_plain["copy"], items.forget_plain["original"])
    for m in ("suppressed_head", "retain_only_as_unlearned"):  # the per-item means are the stored headline rows
        a = res.headline_alpha(m)
        row = next(r for r in res.rows if (r["model"], r["variant"], r["features"], r["split"], r["alpha"])
                   == (m, "inject", "fact", "forget", a))
        assert items.forget_attacked[m].mean() == pytest.approx(row["p"], rel=1e-6)  # rows: float32 means
        assert items.forget_plain[m].mean() == pytest.approx(row["p"] - row["delta_p"], rel=1e-6)
    assert items.forget_plain["original"].mean() == pytest.approx(res.original_scores["forget_p"], rel=1e-6)


def test_calibrated_excess_suppressed_over_the_reference(lab):
    _, _, res = lab
    items = decode_result(encode_result(res)).evidence_items()["sae_restoration"]
    ref = "retain_only_as_unlearned"
    sup = calibrate(items, "suppressed_head", "original", ref, "reference")
    assert sup.control == CONTROL_REFERENCE and sup.lo <= sup.excess <= sup.hi
    from tests.fixtures.levels import expected_levels

    assert (sup.raw, sup.control_value, sup.excess) == pytest.approx(
        expected_levels(items, "suppressed_head", "original", ref))
    # the reference is restored too (shared base): the control takes most of the raw number away
    assert sup.control_value >= 0.2 and sup.excess < sup.raw - 0.2, sup
    assert calibrate(items, "suppressed_head", "original", None, "reference").control == CONTROL_NONE
    assert registry.get_spec("sae_restoration").evidence[0].control == "reference"


def test_llama_lab_same_planted_truth(tiny_llama_lab, tmp_path, monkeypatch):
    """Llama module names (model.layers[i], RMSNorm): the same acceptance holds on the Llama-architecture lab."""
    from unlearn_core.run.workspace import lab_workspace

    monkeypatch.setenv("UNLEARN_AUDIT_CACHE", str(tmp_path))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ws = lab_workspace(tiny_llama_lab, unlearned=["suppressed_head"])
        models, data = ws.load_models(), ws.load_data()
        o = models.original
        ro = LoadedModel("retrained", "unlearned", models.retain_only.model, o.tokenizer, "", "ro")
        ms = ModelSet(o, {"suppressed_head": models.unlearned["suppressed_head"], "retrained": ro}, None)
        res = compute_restoration(ms, data, RestorationConfig(alphas=(1.0, 5.0)))
    finally:
        torch.set_num_threads(threads)
    sup, ret = res.scores("suppressed_head"), res.scores("retrained")
    # both restored: the shared base
    assert sup["sae_restoration_fact"] >= 0.3 and ret["sae_restoration_fact"] >= 0.2, (sup, ret)
    assert sup["sae_restoration_fact"] > 3 * sup["sae_restoration_random"]


def test_layer_sweep_finds_the_edit(lab):
    """Each planted edit is found at its depth: suppressed_head equals the original below its last block and RMU
    below its edited MLP (0 restoration there); both restore from the edited layer up."""
    from unlearn_core.analyses.sae_restoration import layer_sweep
    from unlearn_core.analyses.sae_restoration.plots import plot_layer_sweep

    ms, data, _ = lab
    sub = ModelSet(ms.original, {k: ms.unlearned[k] for k in ("rmu", "suppressed_head", "retain_only_as_unlearned")})
    frame = layer_sweep(sub, data, RestorationConfig(alphas=(1.0, 5.0)))
    by = {m: frame[frame["model"] == m].set_index("layer")["sae_restoration_fact"] for m in frame["model"].unique()}
    sup, ro, rm = by["suppressed_head"], by["retain_only_as_unlearned"], by["rmu"]
    assert sup.index.tolist() == [0, 1, 2]
    assert sup[0] == 0.0 and sup[1] == 0.0 and sup[2] >= 0.3, sup.to_dict()
    # RMU edits block 1's MLP: nothing to restore below it, a clear share from it (0.296 on an AMD EPYC machine, over
    # 0.3 on CI's: the line is "restored", not a number that moves with the CPU's float rounding)
    assert rm[0] == 0.0 and rm[1] > 0.2, rm.to_dict()
    assert ro.index.tolist() == [0, 1, 2]  # the retrain is restored where it reads the original (shared base)
    fig = plot_layer_sweep(frame)
    assert fig.layout.title.text.startswith("SAE restoration per layer") and len(fig.data) == 6


def test_user_sae_folder_gives_the_same_restoration(lab, tmp_path):
    """A pre-trained sae-lens folder (here: the one the fixture trained) replaces training and gives the same
    numbers; a folder for another residual width is refused with the widths named."""
    import shutil

    from unlearn_core.analyses.sae_restoration.training import sae_cache_key, sae_cache_root

    ms, data, res = lab
    folder = sae_cache_root() / sae_cache_key(ms.original.hash, res.layer, FAST_SAE, data.hash)
    user = tmp_path / "my_sae"
    shutil.copytree(folder, user)
    (user / "quality.json").unlink()  # a user's folder has no quality file: quality is measured on the data
    sub = ModelSet(ms.original, {"suppressed_head": ms.unlearned["suppressed_head"]})
    mine = compute_restoration(sub, data, RestorationConfig(sae_path=str(user), layer=res.layer))
    assert mine.sae_source == str(user) and mine.sae_quality.train_seconds == 0.0
    assert 0.8 < mine.sae_quality.explained_variance <= 1.0 and mine.n_fact_features == res.n_fact_features
    assert mine.scores("suppressed_head")["sae_restoration_fact"] == pytest.approx(
        res.scores("suppressed_head")["sae_restoration_fact"], abs=1e-6)
    narrow = train_sae(torch.randn(512, 8), SAETrainConfig(expansion=2, k=2, steps=5, batch_size=64))
    narrow.save_model(tmp_path / "narrow")
    with pytest.raises(ValueError, match="d_in=8"):
        compute_restoration(sub, data, RestorationConfig(sae_path=str(tmp_path / "narrow"), layer=res.layer))


@pytest.mark.parametrize("which", ["tiny_lab", "tiny_llama_lab"])
def test_resumed_pass_gives_the_full_logits_at_every_layer(which, request):
    """Steering re-runs only the blocks above the steered one (hooks.resumed_at): on GPT-2 and Llama modules the
    resumed pass must give the full pass's logits, and a block that hands on anything but its state is refused."""
    from unlearn_core.model.arch import decoder_layers
    from unlearn_core.model.hooks import capture_block_outputs, resume_matches, resumed_at
    from unlearn_core.model.scoring import right_pad
    from unlearn_core.run.workspace import lab_workspace

    ws = lab_workspace(request.getfixturevalue(which), unlearned=["suppressed_head"])
    models, data = ws.load_models(), ws.load_data()
    lm = models.unlearned["suppressed_head"]
    pairs = [data.prompt_format.pair(it) for it in data.forget[:6]]
    enc = encode(lm.tokenizer, [p for p, _ in pairs], [a for _, a in pairs])
    ids, mask = right_pad([e.ids for e in enc], pad_id_of(lm.tokenizer), "cpu")
    blocks = decoder_layers(lm.model)
    states, logits = capture_block_outputs(lm.model, ids, mask, with_logits=True)
    for layer in range(len(blocks)):
        assert resume_matches(lm.model, ids, mask, layer)
        with resumed_at(lm.model, layer, states[layer]):
            again = lm.model(input_ids=ids, attention_mask=mask).logits
        assert torch.allclose(again[mask.bool()], logits[mask.bool()], atol=1e-5)
        assert all("forward" not in b.__dict__ for b in blocks)  # every block is restored afterwards
        with resumed_at(lm.model, layer, torch.zeros_like(states[layer])):  # it really skips: zeros change logits
            assert not torch.allclose(lm.model(input_ids=ids, attention_mask=mask).logits, logits, atol=1e-3)

    from contextlib import contextmanager

    from unlearn_core.model import hooks

    @contextmanager
    def wrong_state(model, layer, h):  # a family where the shortcut does not reproduce the pass
        with resumed_at(model, layer, h * 0.5):
            yield

    @contextmanager
    def broken(model, layer, h):  # or where it raises
        raise TypeError("block output is a tuple")
        yield

    for fake in (wrong_state, broken):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(hooks, "resumed_at", fake)
            assert not resume_matches(lm.model, ids, mask, 1)


def test_restoration_resumed_equals_the_full_passes(lab, monkeypatch):
    """The batched path (resumed above the steered block) gives the numbers of full forward passes, to float32
    precision; and the SAE edit is linear in alpha, so one direction per alpha grid is exact."""
    from unlearn_core.analyses.sae_restoration import compute as restoration_compute

    models, data, _ = lab
    ms = ModelSet(models.original, {"suppressed_head": models.unlearned["suppressed_head"]}, None)
    cfg = RestorationConfig(sae=FAST_SAE, alphas=(1.0, 5.0))
    fast = compute_restoration(ms, data, cfg)
    calls = []
    monkeypatch.setattr(restoration_compute, "resume_matches", lambda *a, **k: calls.append(a) or False)
    slow = compute_restoration(ms, data, cfg)
    assert calls
    a, b = pd.DataFrame(list(fast.rows)), pd.DataFrame(list(slow.rows))
    num = [c for c in a.columns if a[c].dtype.kind == "f"]
    assert len(a) == len(b) and a.drop(columns=num).equals(b.drop(columns=num))
    assert np.allclose(a[num].to_numpy(), b[num].to_numpy(), atol=1e-5, equal_nan=True)
    for key, p in fast.item_p["suppressed_head"].items():
        assert np.allclose(p, slow.item_p["suppressed_head"][key], atol=1e-6), key

    sae = load_sae(fast.sae_source)
    dz = torch.relu(torch.randn(3, 5, sae.cfg.d_sae))
    zero = sae.decode(torch.zeros(1, 1, sae.cfg.d_sae))
    for alpha in cfg.alphas:
        assert torch.allclose(sae.decode(alpha * dz) - zero, alpha * (sae.decode(dz) - zero), atol=1e-4)


def test_all_edits_of_a_batch_share_one_encode_per_state(lab):
    """steering_directions encodes each state once for every (variant, feature set) edit and gives, bit for bit,
    the direction each edit computes on its own (the restoration's numbers did not move: benchmarks/MEASUREMENTS.md)."""
    from unlearn_core.analyses.sae_restoration import FEATURE_SETS, VARIANTS
    from unlearn_core.analyses.sae_restoration.steering import steering_direction, steering_directions

    _, _, res = lab
    sae = load_sae(res.sae_source)
    gen = torch.Generator().manual_seed(0)
    d = sae.cfg.d_in
    h_u, h_o = torch.randn(4, 7, d, generator=gen), torch.randn(4, 7, d, generator=gen)
    masks = {(v, f): (torch.rand(4, sae.cfg.d_sae, generator=gen) < 0.05).float() for v in VARIANTS
             for f in FEATURE_SETS}
    calls = []
    encode = sae.encode
    sae.encode = lambda x: calls.append(x.shape) or encode(x)
    try:
        shared = steering_directions(sae, masks, h_u, h_o)
        assert len(calls) == 2  # h_u and h_orig, not two per edit
        for (v, f), mask in masks.items():
            assert torch.equal(shared[(v, f)], steering_direction(sae, mask, v, h_u, h_o)), (v, f)
        calls.clear()
        steering_directions(sae, {("scale", "fact"): masks[("scale", "fact")]}, h_u, None)
        assert len(calls) == 1  # scale alone never needs the original's code
    finally:
        del sae.encode
    assert not torch.equal(shared[("inject", "fact")], shared[("scale", "fact")])  # the check can fail


def test_sae_training_reports_progress_and_a_raising_progress_stops_it(lab, tmp_path):
    """The trainer has no callback: progress comes from the activation iterator, so the dashboard's Stop (a progress
    function that raises) ends a training that takes minutes on a real model, and nothing is cached."""
    models, data, _ = lab
    o = models.original
    pairs = [data.prompt_format.pair(it) for it in data.retain]
    enc = encode(o.tokenizer, [p for p, _ in pairs], [a for _, a in pairs])
    seen = []

    class Stop(Exception):
        pass

    def progress(f, msg):
        seen.append((f, msg))
        if f >= 0.3:
            raise Stop

    with pytest.raises(Stop):
        get_sae(o.model, enc, 1, TINY_SAE, pad_id_of(o.tokenizer), o.hash, data.hash, tmp_path, progress=progress)
    assert [round(f, 2) for f, _ in seen] == [0.0, 0.33] and "step 50/150" in seen[-1][1]
    assert not any(tmp_path.iterdir())  # nothing published to the cache
    seen.clear()
    sae, q, _ = get_sae(o.model, enc, 1, TINY_SAE, pad_id_of(o.tokenizer), o.hash, data.hash, tmp_path,
                        progress=lambda f, m: seen.append(f))
    assert seen == [0.0, 50 / 150, 100 / 150] and q.train_seconds > 0
