"""Decodability probe (retain-trained linear probe on each checkpoint's own states) on the tiny lab's planted truth.

suppressed_head changed only the last block and head, so below the last block its states equal the original's and
the probe must decode its forget facts exactly as well; retain_only never saw the forget facts, so the probe must
decode them no better than the holdout facts it never saw either.
"""

from __future__ import annotations

import numpy as np
import pytest

from unlearn_core.analyses.decodability import (
    SPEC,
    DecodabilityConfig,
    DecodabilityResult,
    compute_decodability,
    headline_layer,
)
from unlearn_core.analyses.decodability.plots import (
    LAYER_METRICS,
    layers_long,
    plot_decodability_layers,
    plot_decodability_summary,
)
from unlearn_core.evidence.calibration import CONTROL_HOLDOUT, CONTROL_REFERENCE, calibrate
from unlearn_core.evidence.recovery import recovery_rate
from unlearn_core.model import arch
from unlearn_core.run.workspace import lab_workspace
from unlearn_core.store.codec import decode_result, encode_result
from unlearn_core.types import LoadedModel, ModelSet

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(tiny_lab):
    ws = lab_workspace(tiny_lab)
    return ws.load_models(), ws.load_data()


@pytest.fixture(scope="module")
def result(lab) -> DecodabilityResult:
    models, data = lab
    return compute_decodability(models, data, DecodabilityConfig())


def _names(models: ModelSet) -> tuple[str, str, str]:
    return models.original.name, "suppressed_head", models.retain_only.name


@pytest.mark.parametrize("bad", [
    {"c_grid": ()}, {"c_grid": (0.0,)}, {"c_grid": (float("inf"),)}, {"c_grid": [1.0]}, {"cv_folds": 1},
    {"batch_size": 0}, {"seed": -1}, {"layer": True}, {"layer": 1.5}, {"max_iter": 2}, {"readout": "lens"},
    {"target": "last"}, {"ridge_grid": ()}, {"ridge_grid": (-1.0,)}, {"vocab_rows": 8},
])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        DecodabilityConfig(**bad)


def test_headline_rule_excludes_the_last_block_and_prefers_deeper_ties():
    assert headline_layer(np.array([0.5, 0.7, 0.9]), None) == 1  # the last block (0.9) is the model's own readout
    assert headline_layer(np.array([0.7, 0.7, 0.2, 0.9]), None) == 1
    assert headline_layer(np.array([0.8, 0.6, 0.7, 0.9]), None) == 0
    assert headline_layer(np.array([0.5, 0.7, 0.9]), -1) == 2
    with pytest.raises(ValueError):
        headline_layer(np.array([0.5, 0.7, 0.9]), 3)


def test_planted_truth_suppressed_head_is_decodable(lab, result):
    models, _ = lab
    orig, sup, ref = _names(models)
    assert result.scores(sup)["decodability_recovery"] >= 0.5
    ev = calibrate(result.evidence_items()["decodability"], sup, orig, ref, "reference+holdout")
    assert ev.control == CONTROL_REFERENCE
    assert ev.lo > 0
    ev_h = calibrate(result.evidence_items()["decodability"], sup, orig, None, "reference+holdout")
    assert ev_h.control == CONTROL_HOLDOUT and ev_h.lo > 0  # without a reference the holdout control also sees it


def test_suppressed_head_decodes_like_the_original_below_the_last_block(lab, result):
    models, _ = lab
    orig, sup, ref = _names(models)
    last = arch.n_layers(models.original.model) - 1
    for split in ("forget", "retain", "holdout"):
        np.testing.assert_array_equal(result.probe[sup][split][:last], result.probe[orig][split][:last])
    lf = result.layers_frame().set_index(["model", "layer"])
    assert lf.loc[(sup, last - 1), "forget_acc"] == lf.loc[(orig, last - 1), "forget_acc"]
    # the check above must be able to fail: the deletion reference does not decode the forget facts like that
    assert lf.loc[(ref, last - 1), "forget_acc"] < lf.loc[(orig, last - 1), "forget_acc"]


def test_retain_only_decodes_forget_no_better_than_holdout(lab, result):
    models, _ = lab
    orig, _, ref = _names(models)
    ev = calibrate(result.evidence_items()["decodability"], ref, orig, None, "reference+holdout")
    assert ev.control == CONTROL_HOLDOUT
    assert (ev.lo <= 0 <= ev.hi) or ev.hi < 0.2
    lf = result.layers_frame()
    ro = lf[lf.model == ref]
    assert (ro.forget_acc - ro.holdout_acc).max() <= 0.2  # at every block, not only the headline one


def test_suppressed_head_per_item_recovery_exceeds_retain_only(lab, result):
    models, _ = lab
    _, sup, ref = _names(models)
    assert result.scores(sup)["decodability_recovery"] > result.scores(ref)["decodability_recovery"] + 0.3
    gain = {m: (result.attacked(m, "forget") - result.plain[m]["forget"]).mean() for m in (sup, ref)}
    assert gain[sup] > gain[ref]


def test_identical_models_give_identical_probe_outputs(lab):
    models, data = lab
    o = models.original
    same = ModelSet(o, {"copy": LoadedModel("copy", "unlearned", o.model, o.tokenizer, o.path, o.hash)})
    r = compute_decodability(same, data, DecodabilityConfig(c_grid=(1.0, 10.0)))
    for split in ("forget", "retain", "holdout"):
        np.testing.assert_array_equal(r.probe["copy"][split], r.probe[o.name][split])
        np.testing.assert_array_equal(r.plain["copy"][split], r.plain[o.name][split])
    assert r.layer["copy"] == r.layer[o.name]
    assert r.scores("copy")["decodability_recovery"] == 1.0  # as decodable as the original: all of it


def test_evidence_items_cover_every_model_and_both_splits(lab, result):
    models, data = lab
    items = result.evidence_items()["decodability"]
    assert set(items.forget_plain) == set(models.all()) == set(items.holdout_attacked)
    for m in models.all():
        assert len(items.forget_plain[m]) == len(items.forget_attacked[m]) == len(data.forget)
        assert len(items.holdout_plain[m]) == len(items.holdout_attacked[m]) == len(data.holdout)
        np.testing.assert_array_equal(items.forget_attacked[m], result.probe[m]["forget"][result.layer[m]])
        assert ((items.forget_plain[m] >= 0) & (items.forget_plain[m] <= 1)).all()
    orig = models.original.name
    assert result.plain[orig]["forget"].mean() > 0.7  # the original answers its forget facts
    # the baseline is the uninformed probe (class frequency), the same for every model with one tokenizer
    np.testing.assert_array_equal(items.forget_plain[orig], result.prior[orig]["forget"])
    assert items.forget_plain[orig].mean() < 0.5 * items.forget_attacked[orig].mean()
    # the ceiling of recovery is the probe on the original (as decodable as there = 100%)
    assert items.ceiling == "attacked" and items.original_scores(orig).mean() == items.forget_attacked[orig].mean()


def test_scores_and_tables(lab, result):
    models, _ = lab
    orig, sup, _ = _names(models)
    L = arch.n_layers(models.original.model)
    s = result.scores(sup)
    expect = recovery_rate(result.attacked(sup, "forget").mean(), result.prior[sup]["forget"].mean(),
                           result.attacked(orig, "forget").mean())
    assert s["decodability_recovery"] == pytest.approx(expect)
    for layer in range(L):
        for col in ("forget", "holdout", "retain_cv"):
            assert 0 <= s[f"decodability_{col}_acc_L{layer}"] <= 1
    assert result.scores("no such model") == {}
    lf = result.layers_frame()
    assert len(lf) == L * len(models.all())
    assert (lf.groupby("model").headline.sum() == 1).all()
    assert set(result.to_frame().model) == set(models.all())
    assert set(SPEC.tables(result)) == {"decodability_summary", "decodability_layers"}


def test_result_round_trips_through_the_codec(result):
    back = decode_result(encode_result(result))
    assert back.layer == result.layer and back.config == result.config
    np.testing.assert_array_equal(back.probe["suppressed_head"]["forget"], result.probe["suppressed_head"]["forget"])
    assert back.layers_frame().equals(result.layers_frame())


def test_spec_is_registered_with_a_self_contained_control(result):
    from unlearn_core.analyses.registry import collect_evidence_items, get_spec

    spec = get_spec("decodability")
    assert spec is SPEC and spec.title == "Decodability probe (retain-trained linear probe)"
    assert [(e.key, e.control) for e in spec.evidence] == [("decodability", "reference+holdout")]
    assert "decodability" in collect_evidence_items([("decodability", result)])


def test_plots_are_titled_and_have_one_trace_per_checkpoint(lab, result):
    models, _ = lab
    for metric in LAYER_METRICS:
        fig = plot_decodability_layers(result, metric)
        assert len(fig.data) == len(models.all())
        assert fig.layout.title.text and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    fig = plot_decodability_summary(result)
    assert len(fig.data) == len(models.all())
    assert "(0-1)" in fig.layout.yaxis.title.text
    with pytest.raises(ValueError):
        plot_decodability_layers(result, "nope")
    assert set(layers_long(result).split) == {"retain_cv", "forget", "holdout"}


def test_warm_started_c_path_finds_the_cold_fits_optimum():
    """The C grid is fitted from the strongest penalty to the weakest, each fit starting where the last ended: the
    objective is strictly convex, so every C's out-of-fold probabilities must equal a fit from scratch (run to a
    tight tolerance)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    from unlearn_core.analyses.decodability import _oof_path

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(6, 16))
    y = rng.integers(0, 6, 150)
    x = centers[y] + rng.normal(scale=1.5, size=(150, 16))
    cfg = DecodabilityConfig(c_grid=(1.0, 0.1, 10.0), max_iter=5000)
    folds = list(KFold(5, shuffle=True, random_state=0).split(x))
    path = _oof_path(x, y, folds, cfg)
    assert set(path) == {0.1, 1.0, 10.0}
    for C in cfg.c_grid:
        exact, cold = np.zeros(len(y)), np.zeros(len(y))  # to a tight tolerance; from scratch as before
        for tr, te in folds:
            s = StandardScaler().fit(x[tr])
            for out, tol in ((exact, 1e-10), (cold, 1e-4)):
                clf = LogisticRegression(C=C, max_iter=5000, tol=tol).fit(s.transform(x[tr]), y[tr])
                out[te] = clf.predict_proba(s.transform(x[te]))[np.arange(len(te)), y[te]]
        # the warm path reaches the optimum (sklearn's default L-BFGS tolerance, the probe before, stopped short)
        warm_err, cold_err = np.abs(path[C][0] - exact), np.abs(cold - exact)
        assert warm_err.max() < 1e-3 and warm_err.mean() <= cold_err.mean(), (C, warm_err.max(), cold_err.mean())
        assert 0.2 < path[C][1].mean() < 1.0  # the probe learned something, so the comparison means something


def test_sentence_answers_decode_their_first_new_token(tiny_lab):
    """On a sentence answer the first token repeats the question's name; the probe reads the first answer token that
    is not in the prompt, at the position before it. Short answers (the labs') keep their first token."""
    from transformers import AutoTokenizer

    from unlearn_core.analyses.decodability import SENTENCE_WORDS, key_token_split
    from unlearn_core.model.scoring import encode

    tok = AutoTokenizer.from_pretrained(tiny_lab / "original")
    prompt = "Question: What does Mira Vos do?\nAnswer:"
    (e,) = encode(tok, [prompt], [" Mira Vos works as a glassblower."])
    moved = key_token_split(e, tok)
    assert moved.ids == e.ids and len(moved.prompt_ids) > len(e.prompt_ids)
    first_new = moved.answer_ids[0]
    assert first_new not in e.prompt_ids and any(c.isalnum() for c in tok.decode([first_new]))
    assert all(t in e.prompt_ids or not any(c.isalnum() for c in tok.decode([t]))
               for t in e.answer_ids[:len(moved.prompt_ids) - len(e.prompt_ids)])
    assert len(" Mira Vos works as a glassblower.".split()) >= SENTENCE_WORDS > len(" violin maker".split())


def test_sentence_answers_decode_where_the_fact_parts_from_its_perturbed_answers(tiny_lab):
    """With perturbed answers (the same sentence, another value), the decoded token is the first one at which the
    answer parts from the perturbed answer closest to it: the value's first piece, not a template word ("works",
    which first_new reads). Without perturbed answers, first_new's token."""
    from transformers import AutoTokenizer

    from unlearn_core.analyses.decodability import distinct_token_split, key_encodings, key_token_split
    from unlearn_core.model.scoring import encode

    tok = AutoTokenizer.from_pretrained(tiny_lab / "original")
    prompt, gold = "Question: What does Mira Vos do?\nAnswer:", " Mira Vos works as a glassblower."
    wrong = [" Mira Vos works as an archivist.", " Mira Vos works as a cartographer."]
    (e,) = encode(tok, [prompt], [gold])
    ids = [tuple(x) for x in tok(wrong, add_special_tokens=False)["input_ids"]]
    moved = distinct_token_split(e, ids, tok)
    assert moved.ids == e.ids
    k = len(moved.prompt_ids) - len(e.prompt_ids)
    assert tok.decode(list(e.answer_ids[:k])) == " Mira Vos works as a"  # the sentence up to the value
    assert moved.answer_ids[0] != ids[1][k] and e.answer_ids[:k] == ids[1][:k]
    (auto,) = key_encodings(tok, [prompt], [gold], "auto", [wrong])
    assert auto == moved
    (bare,) = key_encodings(tok, [prompt], [gold], "auto", [[]])
    assert bare == key_token_split(e, tok)
    (short,) = key_encodings(tok, [prompt], [" violin maker"], "auto", [[" clockmaker"]])
    assert short == encode(tok, [prompt], [" violin maker"])[0]  # a short answer is the value: its first token


def test_readout_rule():
    """The classifier while it can name most forget and holdout targets; the vocabulary lens otherwise."""
    from unlearn_core.analyses.decodability import resolve_readout

    retain = np.array([5, 6, 7])
    assert resolve_readout("auto", retain, np.array([5, 6, 7, 9])) == "classes"
    assert resolve_readout("auto", retain, np.array([5, 9, 10, 11])) == "vocab"
    assert resolve_readout("auto", retain, np.array([90, 91])) == "vocab"
    assert resolve_readout("classes", retain, np.array([90, 91])) == "classes"
    assert resolve_readout("vocab", retain, np.array([5])) == "vocab"


def test_the_small_labs_keep_the_classifier(result):
    assert result.readout == "classes"


@pytest.fixture(scope="module")
def lens(lab) -> DecodabilityResult:
    models, data = lab
    return compute_decodability(models, data, DecodabilityConfig(readout="vocab"))


def test_vocabulary_lens_at_the_last_block_is_the_models_own_output(lens):
    """The translator from the last block to itself is the identity (no residual to fit), so the lens there reads
    exactly what the checkpoint outputs: a check that the lens goes through the model's own final norm and head."""
    for m in lens.roles:
        for split in ("forget", "holdout"):
            np.testing.assert_allclose(lens.probe[m][split][-1], lens.plain[m][split], atol=2e-5, rtol=1e-4)


def test_vocabulary_lens_on_the_planted_truth(lab, lens):
    """Readable over the whole vocabulary (n_classes = the vocabulary), fitted on retain positions only: on retain
    facts it names the original's answers out of fold, a head-only suppression still decodes its forget facts far
    better than the deletions (reference, retrained twin, non-twin, over-unlearned), and those decode forget facts
    no better than holdout facts they never saw."""
    models, _ = lab
    vocab = models.original.model.get_output_embeddings().weight.shape[0]
    assert lens.readout == "vocab" and set(lens.n_classes.values()) == {vocab}
    frame = lens.to_frame().set_index("model")
    assert frame.loc["original", "retain_cv_acc"] >= 0.8
    assert frame.loc["original", "forget_probe_p"] >= 0.5
    deletions = ["retain_only", "retrained", "non_twin", "over_unlearned"]
    head = frame.loc["suppressed_head", "forget_probe_p"]
    assert head >= 2 * frame.loc[deletions, "forget_probe_p"].max(), frame
    for m in deletions:
        assert frame.loc[m, "forget_probe_p"] <= frame.loc[m, "holdout_probe_p"] + 0.05, (m, frame)
