"""Layer-wise patching / UDS on the tiny demo lab: planted truths of the two controls.

retain_only as the source IS the deletion reference, so its UDS is exactly 1; suppressed_head changed only its last
block, so every lower layer's states are the original's (drop exactly 0) and UDS comes from the last layer alone.
Per-item evidence: the same truths item by item, and the reference-calibrated excess of suppressed_head is large.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from unlearn_core.analyses import registry
from unlearn_core.analyses.patching import SPEC, PatchingConfig, compute_patching, uds_score
from unlearn_core.evidence.calibration import CONTROL_NONE, CONTROL_REFERENCE, calibrate
from unlearn_core.run.workspace import lab_workspace
from unlearn_core.store.codec import decode_result, encode_result
from unlearn_core.types import LoadedModel, ModelSet


@pytest.fixture(scope="module")
def lab(tiny_lab):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: thread sync dominates on the shared test machine
    ws = lab_workspace(tiny_lab, unlearned=["suppressed_head", "ga"])
    models, data = ws.load_models(), ws.load_data()
    copy = LoadedModel("copy", "unlearned", models.original.model, models.original.tokenizer, "", "copy")
    ms = ModelSet(models.original, {**models.unlearned, "copy": copy}, models.retain_only)
    yield ms, data, compute_patching(ms, data)
    torch.set_num_threads(threads)


def test_uds_formula():
    assert uds_score([1.0, 2.0], [1.0, 2.0]) == 1.0
    assert uds_score([1.0, 2.0], [0.0, 0.0]) == 0.0
    assert uds_score([1.0, 3.0], [0.0, 9.0]) == pytest.approx(0.75)  # clip at 1, weight by D1
    assert uds_score([0.01, 1.0], [5.0, 0.0]) == 0.0  # layer below the threshold carries no weight
    assert uds_score([-1.0, -2.0], [1.0, 1.0]) != uds_score([-1.0, -2.0], [1.0, 1.0])  # NaN: nothing to weigh
    with pytest.raises(ValueError):
        PatchingConfig(threshold=-1)


def test_retain_only_is_fully_deleted(lab):
    _, _, res = lab
    assert res.reference == "retain_only"
    assert res.uds["retain_only"] == 1.0
    assert all(d > 0.5 for d in res.drops["retain_only"])  # the original loses its answers at every layer


def test_identical_model_gives_zero_drop(lab):
    _, _, res = lab
    assert all(d == 0.0 for d in res.drops["copy"])
    assert res.uds["copy"] == 0.0


def test_suppressed_head_keeps_lower_layers(lab):
    _, _, res = lab
    drops = res.drops["suppressed_head"]
    assert all(d == 0.0 for d in drops[:-1])  # byte-identical below the last block
    assert drops[-1] > 0.5  # its last block output no longer gives the original its answers
    d1 = res.drops["retain_only"]
    # only the last layer counts: D1_last * min(1, D2_last / D1_last) / sum(D1)
    assert res.uds["suppressed_head"] == pytest.approx(min(d1[-1], drops[-1]) / sum(d1))
    # the reference shares the base with the original (TOFU protocol), so its last-layer drop is a small share
    assert res.uds["suppressed_head"] < 0.5 and res.uds["retain_only"] == 1.0
    assert res.scores("suppressed_head")["one_minus_uds"] > 0.4


def test_frames_and_storage(lab):
    ms, _, res = lab
    df = res.to_frame()
    assert set(df["model"]) == set(ms.all()) - {"original"}
    assert len(df) == len(res.drops) * len(res.layers)
    back = decode_result(encode_result(res))
    assert back.uds == res.uds and back.config == res.config
    assert math.isclose(res.uds_frame().set_index("model").loc["retain_only", "one_minus_uds"], 0.0)


# ------------------------------------------------------------------------------ per-item calibrated evidence


def test_evidence_items_are_aligned_with_the_forget_split(lab):
    ms, data, res = lab
    items = res.evidence_items()["patching_retention"]
    assert set(items.forget_plain) == set(items.forget_attacked) == set(ms.all())
    for m in ("original", "suppressed_head", "retain_only", "ga", "copy"):
        assert items.forget_plain[m].shape == items.forget_attacked[m].shape == (len(data.forget),)
    assert items.holdout_plain == {}  # not self-contained: the reference is its only control
    np.testing.assert_array_equal(items.forget_attacked["original"], items.forget_plain["original"])
    # patching the original's own states into it changes nothing, item by item (and in the stored per-layer table)
    np.testing.assert_allclose(items.forget_attacked["copy"], items.forget_plain["original"], rtol=1e-12)
    np.testing.assert_array_equal(items.forget_plain["copy"], items.forget_plain["original"])
    # suppressed_head equals the original below its last block: the patched p~ there IS the original's, per item
    for layer in res.layers[:-1]:
        np.testing.assert_array_equal(res.patched_p["suppressed_head"][layer], res.own_p["original"])
    # the per-item table reproduces the stored per-layer mean drops (log p~ = mean answer log-prob)
    drop = np.log(res.own_p["original"]) - np.log(res.patched_p["ga"])  # [n_layers, n]
    np.testing.assert_allclose(drop.mean(1), res.drops["ga"], rtol=1e-4, atol=1e-5)


def test_layer_weights_are_the_uds_weights(lab):
    _, _, res = lab
    d1 = np.asarray(res.drops["retain_only"])
    w = res.layer_weights()
    np.testing.assert_allclose(w, np.where(d1 > res.config.threshold, d1, 0) / d1[d1 > res.config.threshold].sum())
    no_ref = replace(res, reference=None)
    np.testing.assert_allclose(no_ref.layer_weights(), np.full(len(res.layers), 1 / len(res.layers)))


def test_calibrated_evidence_suppressed_exceeds_the_reference(lab):
    _, _, res = lab
    items = res.evidence_items()["patching_retention"]
    sup = calibrate(items, "suppressed_head", "original", "retain_only", "reference")
    assert sup.control == CONTROL_REFERENCE and sup.n_items == len(items.forget_plain["original"])
    assert sup.lo <= sup.excess <= sup.hi
    assert sup.excess > 0.3 and sup.lo > 0.2  # two of three layers still carry everything the original needs
    ref_gain = items.forget_attacked["retain_only"] - items.forget_plain["retain_only"]
    sup_gain = items.forget_attacked["suppressed_head"] - items.forget_plain["suppressed_head"]
    # the reference, fine-tuned from the same base, is partly readable by the original: that is why it is the control
    assert sup_gain.mean() > ref_gain.mean() + 0.2
    # the probe copies the original into the checkpoint: without the reference it does not count
    alone = calibrate(items, "suppressed_head", "original", None, "reference")
    assert alone.control == CONTROL_NONE and not alone.calibrated
    from tests.fixtures.levels import expected_levels

    assert (sup.raw, sup.control_value, sup.excess) == pytest.approx(
        expected_levels(items, "suppressed_head", "original", "retain_only"))
    # uncalibrated, the number shown is the attacked level itself
    assert alone.raw == pytest.approx(items.forget_attacked["suppressed_head"].mean())


def test_spec_and_evidence_through_the_registry(lab):
    _, _, res = lab
    spec = registry.get_spec("patching")
    assert spec is SPEC and [(e.key, e.control) for e in spec.evidence] == [("patching_retention", "reference")]
    back = decode_result(encode_result(res))
    ev, items = registry.collect_evidence_items([("patching", back)])["patching_retention"]
    assert ev.control == "reference"
    for m, a in res.evidence_items()["patching_retention"].forget_attacked.items():
        np.testing.assert_array_equal(items.forget_attacked[m], a)
