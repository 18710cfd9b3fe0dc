"""Layer-wise patching / UDS on the tiny demo lab: planted truths of the two controls.

retain_only as the source IS the deletion reference, so its UDS is exactly 1; suppressed_head changed only its last
block, so every lower layer's states are the original's (drop exactly 0) and UDS comes from the last layer alone.
"""

from __future__ import annotations

import math

import pytest
import torch

from unlearn_core.analyses.patching import PatchingConfig, compute_patching, uds_score
from unlearn_core.codec import decode_result, encode_result
from unlearn_core.types import LoadedModel, ModelSet
from unlearn_core.workspace import lab_workspace


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
    assert res.uds["suppressed_head"] < 0.25 and res.uds["retain_only"] == 1.0
    assert res.scores("suppressed_head")["patching_retention"] > 0.4


def test_frames_and_storage(lab):
    ms, _, res = lab
    df = res.to_frame()
    assert set(df["model"]) == set(ms.all()) - {"original"}
    assert len(df) == len(res.drops) * len(res.layers)
    back = decode_result(encode_result(res))
    assert back.uds == res.uds and back.config == res.config
    assert math.isclose(res.uds_frame().set_index("model").loc["retain_only", "patching_retention"], 0.0)
