"""Low-rank update revert on planted truth.

suppressed_lowrank is the original plus a rank-4 update on every block's MLP output: undoing the top 4 directions of
each matrix's update must give the original's answers back exactly. A model fine-tuned from the same base without
the forget set (retrained) must recover no more than the retain-only reference under the same revert, and the
uncalibrated number must NOT separate it from the planted suppressions (why the probe needs the reference).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from unlearn_core.analyses.update_revert import (
    SPEC,
    RevertConfig,
    compute_update_revert,
    top_directions,
    weight_matrices,
)
from unlearn_core.analyses.update_revert.plots import plot_update_revert, plot_update_spectrum
from unlearn_core.evidence.calibration import calibrate
from unlearn_core.run.workspace import lab_workspace
from unlearn_core.store.codec import decode_result, encode_result
from unlearn_core.types import LoadedModel, ModelSet

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(tiny_lab):
    ws = lab_workspace(tiny_lab)
    return ws.load_models(), ws.load_data()


@pytest.fixture(scope="module")
def result(lab):
    models, data = lab
    keep = {n: m for n, m in models.unlearned.items() if n in ("retrained", "suppressed_lowrank", "suppressed_head")}
    return compute_update_revert(ModelSet(models.original, keep, models.retain_only), data, RevertConfig())


@pytest.mark.parametrize("bad", [{"ranks": ()}, {"ranks": [8]}, {"ranks": (0, 8)}, {"headline_rank": 3},
                                 {"exact_svd_up_to": 0}, {"seed": -1}, {"batch_size": 0}])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        RevertConfig(**bad)


def test_tied_weights_are_reverted_once(lab):
    models, _ = lab
    model = models.original.model
    mats = weight_matrices(model)
    ptrs = [w.data_ptr() for w in mats.values()]
    assert len(ptrs) == len(set(ptrs))
    if model.get_output_embeddings().weight is model.get_input_embeddings().weight:  # GPT-2 ties them
        assert sum(w.data_ptr() == model.get_input_embeddings().weight.data_ptr() for w in mats.values()) == 1


def test_randomized_svd_finds_the_planted_directions():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(300, 3, generator=g) @ torch.randn(3, 200, generator=g) + 1e-4 * torch.randn(300, 200, generator=g)
    u, s, vh = top_directions(d, 3, exact_up_to=1, seed=0)  # forced onto the randomized path
    ue, se, vhe = top_directions(d, 3, exact_up_to=10_000, seed=0)
    assert torch.allclose(s, se, rtol=1e-4)
    assert torch.allclose((u * s) @ vh, (ue * se) @ vhe, atol=1e-3)
    assert torch.equal(top_directions(d, 3, 1, 0)[1], s)  # seeded: the same directions every run


def test_undoing_a_planted_low_rank_edit_gives_the_original_back(lab):
    models, data = lab
    o = models.original
    edited = copy.deepcopy(o.model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for w in list(weight_matrices(edited).values())[:4]:
            w.add_(0.5 * torch.randn(w.shape[0], 2, generator=g) @ torch.randn(2, w.shape[1], generator=g))
    ms = ModelSet(o, {"edit": LoadedModel("edit", "unlearned", edited, o.tokenizer, o.path, "edit")})
    r = compute_update_revert(ms, data, RevertConfig(ranks=(1, 2, 4), headline_rank=2))
    df = r.to_frame().set_index(["model", "attack"])
    f0 = df.loc[(o.name, "plain"), "forget_p"]
    assert abs(df.loc[("edit", "plain"), "forget_p"] - f0) > 0.05  # the edit changed the answers
    for k in (2, 4):  # rank 2 undone: the original's scores, to float precision
        assert df.loc[("edit", f"rank{k}"), "forget_p"] == pytest.approx(f0, abs=1e-4)
    assert df.loc[("edit", "rank2"), "retain_p"] == pytest.approx(df.loc[(o.name, "plain"), "retain_p"], abs=1e-4)
    assert np.isnan(df.loc[("edit", "rank1"), "retain_p"])  # off the headline rank only the forget set is scored
    spec = r.spectrum_frame()
    assert len(spec) == 4 and (spec.energy_top_k > 0.999).all()  # every changed matrix is exactly rank 2


def test_a_workspace_without_a_retain_set(lab):
    from dataclasses import replace

    models, data = lab
    keep = {"suppressed_lowrank": models.unlearned["suppressed_lowrank"]}
    r = compute_update_revert(ModelSet(models.original, keep), replace(data, retain=()),
                              RevertConfig(ranks=(4,), headline_rank=4))
    df = r.to_frame().set_index(["model", "attack"])
    assert df.loc[("suppressed_lowrank", "rank4"), "recovery_p"] > 0.95 and df.retain_p.isna().all()
    assert any("no retain-only reference" in n for n in r.notes)


def test_planted_truth_on_the_tiny_lab(result, lab):
    models, _ = lab
    df = result.to_frame().set_index(["model", "attack"])
    assert df.loc[("suppressed_lowrank", "rank4"), "recovery_p"] > 0.95  # its update is rank 4
    items = result.evidence_items()["revert_recovery"]
    orig, ref = models.original.name, models.retain_only.name
    cal = {m: calibrate(items, m, orig, ref, "reference", 2000, 0, 0.95)
           for m in ("retrained", "suppressed_lowrank", "suppressed_head")}
    assert cal["suppressed_lowrank"].lo >= 0.15 and cal["suppressed_head"].lo >= 0.15, cal
    assert cal["retrained"].hi < 0.15, cal["retrained"]
    # uncalibrated, the retrained model "recovers" too (it moves back towards the original): the reference is needed
    assert cal["retrained"].raw > 0.15
    assert not calibrate(items, "retrained", orig, None, "reference", 2000, 0, 0.95).calibrated


def test_spectrum_tells_a_suppression_edit_from_a_deletion(result):
    s = result.spectrum_frame()
    share = (s.assign(e=s.energy_top_k * s.update_norm ** 2, n2=s.update_norm ** 2)
             .groupby("model")[["e", "n2"]].sum())
    share = share.e / share.n2
    assert share["suppressed_lowrank"] > 0.99 and share["retrained"] < 0.8, share
    assert result.scores("suppressed_lowrank")["update_energy_top8"] == pytest.approx(share["suppressed_lowrank"])


def test_result_round_trips_and_draws(result):
    back = decode_result(encode_result(result))
    assert back.to_frame().equals(result.to_frame()) and back.config == result.config
    tables = SPEC.tables(result)
    assert set(tables) == {"revert_summary", "revert_spectrum"}
    fig = plot_update_revert(result)
    names = {t.name for t in fig.data}
    assert "retain_only (deletion reference)" in names and "suppressed_lowrank" in names
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    assert list(fig.layout.xaxis.tickvals) == [1, 2, 4, 8, 16, 32]  # one tick per rank of the sweep
    assert plot_update_spectrum(result).layout.title.text.startswith("Update concentration")
