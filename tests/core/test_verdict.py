"""Calibration and the verdict rule on synthetic per-item evidence whose answer is known by construction."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from unlearn_core.analyses.spec import Evidence
from unlearn_core.evidence.calibration import CONTROL_HOLDOUT, CONTROL_NONE, CONTROL_REFERENCE, ProbeItems, calibrate
from unlearn_core.evidence.plots import plot_evidence_matrix, plot_probe_validity, plot_verdict_headline
from unlearn_core.evidence.units import MIN_ENTITIES, entity_labels, infer_entity, units_for
from unlearn_core.evidence.validity import probe_validity
from unlearn_core.evidence.verdict import (
    HIDDEN,
    JOINT,
    OUT_OF_REACH,
    VerdictConfig,
    calibrate_all,
    compute_verdict,
    projection_phrase,
)
from unlearn_core.store.codec import decode_result, encode_result

N = 40
RNG = np.random.default_rng(0)


def _noise(n=N, scale=0.03):
    return RNG.normal(0, scale, n)


def _items(key="probe", holdout=True) -> ProbeItems:
    """original knows every answer (p ~ 0.95); every other model outputs ~0.02. The attack brings back:
    suppressed 0.8 of the answer, deleted (and the reference) only the attack's own false recovery ~0.15 on forget
    AND on holdout; `leaky` recovers 0.15 above the reference (a small real excess)."""
    orig = np.clip(0.95 + _noise(), 0, 1)
    plain = {m: np.clip(0.02 + _noise(scale=0.01), 0, 1) for m in ("sup", "deleted", "ref", "leaky")}
    gain = {"sup": 0.8, "deleted": 0.15, "ref": 0.15, "leaky": 0.3}
    att = {m: np.clip(plain[m] + gain[m] * 0.93 + _noise(), 0, 1) for m in plain}
    fp = {"original": orig, **plain}
    fa = {"original": orig.copy(), **att}
    hp = {m: np.clip(0.02 + _noise(20, 0.01), 0, 1) for m in fp} if holdout else {}
    ha = {m: np.clip(hp[m] + 0.15 * 0.93 + _noise(20), 0, 1) for m in hp} if holdout else {}
    return ProbeItems(key, "synthetic attack", "answer p~", fp, fa, hp, ha)


def _ev(key="probe", axis="recoverable", control="reference+holdout"):
    return Evidence(key, "synthetic", control, axis=axis)


def test_reference_calibration_reads_levels_with_interval():
    it = _items()
    sup = calibrate(it, "sup", "original", "ref", "reference+holdout", n_boot=1000)
    dele = calibrate(it, "deleted", "original", "ref", "reference+holdout", n_boot=1000)
    assert sup.control == CONTROL_REFERENCE and dele.control == CONTROL_REFERENCE
    # levels in units of the original's lead over the reference's plain level: sup reaches ~0.8, the reference ~0.15
    assert sup.raw == pytest.approx(0.8, abs=0.05) and sup.control_value == pytest.approx(0.15, abs=0.05)
    assert sup.lo <= sup.excess <= sup.hi and sup.excess == pytest.approx(0.65, abs=0.06)
    assert dele.raw == pytest.approx(0.15, abs=0.05) and dele.lo < 0 < dele.hi
    assert calibrate(it, "sup", "original", "ref", "reference", n_boot=1000) == sup  # seeded: reproducible


def test_a_model_pushed_below_the_reference_that_climbs_back_to_it_scores_zero():
    """The floor effect (issue 34): reference p 0.30, checkpoint 0.01, an attack lifting both to 0.32. Measured as
    each model's climb from its own floor the checkpoint 'recovered' +0.30 more than the reference; as levels, it is
    where the reference is: excess 0, and the verdict can say deleted."""
    n = 60
    orig = np.full(n, 0.95) + _noise(n, 0.01)
    ref_plain, ck_plain = np.full(n, 0.30) + _noise(n, 0.01), np.full(n, 0.01) + _noise(n, 0.002)
    att = {"ref": np.full(n, 0.32) + _noise(n, 0.01), "ck": np.full(n, 0.32) + _noise(n, 0.01)}
    it = ProbeItems("probe", "a", "p", {"original": orig, "ref": ref_plain, "ck": ck_plain},
                    {"original": orig, **att})
    e = calibrate(it, "ck", "original", "ref", "reference+holdout", n_boot=1000)
    assert abs(e.excess) < 0.05 and e.hi < 0.15
    climb_ck = (att["ck"].mean() - ck_plain.mean()) / (orig.mean() - ck_plain.mean())
    climb_ref = (att["ref"].mean() - ref_plain.mean()) / (orig.mean() - ref_plain.mean())
    assert climb_ck - climb_ref > 0.25  # what the first version's climbs read
    res = compute_verdict({"original": {"forget_acc": 1.0}, "ck": {"forget_acc": 0.0}, "ref": {"forget_acc": 0.0}},
                          calibrate_all({"probe": (_ev(), it)}, ["original", "ck", "ref"], "original", "ref",
                                        VerdictConfig(counted=("probe",), n_boot=1000)),
                          VerdictConfig(counted=("probe",), n_boot=1000), reference="ref")
    assert res.get("ck").verdict == "deleted", res.get("ck").reason


def test_holdout_control_without_reference_and_injection_needs_reference():
    it = _items()
    sup = calibrate(it, "sup", "original", None, "reference+holdout", n_boot=1000)
    dele = calibrate(it, "deleted", "original", None, "reference+holdout", n_boot=1000)
    assert sup.control == CONTROL_HOLDOUT and sup.n_control == 20
    assert sup.lo > 0.5 and dele.hi < 0.15 and dele.lo < 0.05
    inj = calibrate(it, "sup", "original", None, "reference", n_boot=1000)
    assert inj.control == CONTROL_NONE and math.isnan(inj.excess) and not inj.calibrated
    no_holdout = calibrate(_items(holdout=False), "sup", "original", None, "reference+holdout", n_boot=1000)
    assert no_holdout.control == CONTROL_NONE


def _verdict(reference="ref", rule=VerdictConfig(counted=("probe",), n_boot=1000, suppressed_at=0.25, partial_at=0.1)):
    it = _items()
    names = ["original", "sup", "deleted", "leaky", "kept"] + ([reference] if reference else [])
    items = {"probe": (_ev(), it)}
    it.forget_plain["kept"] = it.forget_plain["original"]  # never forgot: behaviour says so first
    it.forget_attacked["kept"] = it.forget_plain["original"]
    ev = calibrate_all(items, names, "original", reference, rule)
    behaviour = {n: {"forget_acc": 1.0 if n in ("original", "kept") else 0.05} for n in names}
    return compute_verdict(behaviour, ev, rule, original="original", reference=reference)


def test_verdict_rule_with_reference():
    res = _verdict()
    got = {v.model: v.verdict for v in res.verdicts}
    assert got == {"sup": "suppressed", "deleted": "deleted", "leaky": "partially suppressed",
                   "kept": "not forgotten"}, res.to_frame().to_string()
    sup = res.get("sup")
    assert sup.retention_lo >= 0.25 and sup.control == CONTROL_REFERENCE and sup.retention_from == "probe"
    assert sup.deciding_axis == "recoverable" and "excess" in sup.reason and "corrected lower bound" in sup.reason
    frame = res.to_frame()
    assert {"ci_low", "ci_high", "control", "deciding_axis", "probe_excess", "probe_ci_low"} <= set(frame.columns)
    ev = res.evidence_frame()
    assert {"axis", "unit", "n_units", "lb_corrected"} <= set(ev.columns)
    assert set(ev["model"]) == {"sup", "deleted", "leaky", "kept"}
    assert decode_result(encode_result(res)).get("sup").retention == sup.retention  # round-trips the codec


def test_verdict_without_reference_and_uncounted_probe():
    res = _verdict(reference=None)
    assert res.get("sup").verdict == "suppressed" and res.get("sup").control == CONTROL_HOLDOUT
    assert res.get("deleted").verdict == "deleted"
    res = _verdict(rule=VerdictConfig(counted=(), n_boot=1000, suppressed_at=0.25))
    assert res.get("sup").verdict == "unknown" and "probe" in res.get("sup").not_counted


def test_an_attack_that_reads_the_original_gets_its_own_call_never_suppressed_or_deleted():
    """The same strong recovery on the edit-of-original axis alone: 'hidden by a small edit' (undoing it needs the
    original), drawn in its own colour; beside a recoverable probe that sees it too, 'suppressed'."""
    rule = VerdictConfig(counted=("revert", "probe"), n_boot=1000, joint=False)
    strong, none = _items("revert"), _items("probe")
    for m in ("sup", "leaky"):  # the recoverable probe sees nothing on these: the deletion control's level
        none.forget_attacked[m] = none.forget_attacked["deleted"].copy()
    names = ["original", "sup", "deleted", "ref"]
    behaviour = {n: {"forget_acc": 1.0 if n == "original" else 0.0} for n in names}
    items = {"revert": (_ev("revert", "edit_of_original", "reference"), strong), "probe": (_ev(), none)}
    res = compute_verdict(behaviour, calibrate_all(items, names, "original", "ref", rule), rule, reference="ref")
    v = res.get("sup")
    assert v.verdict == HIDDEN and v.deciding_axis == "edit_of_original" and v.retention_from == "revert"
    assert "needs the original" in v.reason or "with the original" in v.reason
    assert res.get("deleted").verdict == "deleted"
    fig = plot_verdict_headline(res)
    assert any("edit of the original" in (t.name or "") for t in fig.data if t.type == "bar")
    both = {"revert": (_ev("revert", "edit_of_original", "reference"), strong), "probe": (_ev(), _items("probe"))}
    res2 = compute_verdict(behaviour, calibrate_all(both, names, "original", "ref", rule), rule, reference="ref")
    assert res2.get("sup").verdict == "suppressed" and res2.get("sup").deciding_axis == "recoverable"


def test_lower_bounds_are_corrected_for_the_number_of_counted_probes():
    """With k counted probes of one axis the rule reads each lower bound at (1 - ci)/2/k: never looser than the
    uncorrected one, and strictly tighter for k > 1; a probe whose uncorrected lo just clears the line can miss it
    corrected."""
    rule1 = VerdictConfig(counted=("probe",), n_boot=2000, joint=False)
    rule3 = VerdictConfig(counted=("probe", "p2", "p3"), n_boot=2000, joint=False)
    assert rule3.level(3) == pytest.approx(rule3.alpha / 3) and rule1.level(1) == rule1.alpha
    it = _items()
    e = calibrate(it, "leaky", "original", "ref", "reference+holdout", n_boot=2000, alphas=rule3.levels())
    lb1, lb3 = e.lower_bound(rule3.level(1)), e.lower_bound(rule3.level(3))
    assert lb3 < lb1 and lb1 == pytest.approx(e.lo, abs=1e-9)
    off = VerdictConfig(counted=("probe",), correct=False)
    assert off.level(3) == off.alpha and "uncorrected" in off.rule_text()


def test_entities_are_resampled_when_facts_cluster_by_entity():
    """Facts of one entity move together (the attack recovers a whole entity or none of it): an interval over items
    treats 40 correlated facts as independent and is too narrow; over 8 entities it is wider. With fewer than
    MIN_ENTITIES it falls back to items and says why."""
    n, per = 40, 5
    labels = tuple(f"person {i // per}" for i in range(n))
    entity_effect = np.repeat(np.random.default_rng(3).normal(0, 0.25, n // per), per)
    orig = np.full(n, 0.95)
    plain = {m: np.full(n, 0.02) for m in ("ck", "ref")}
    att = {"ck": np.clip(0.4 + entity_effect + _noise(n, 0.01), 0, 1), "ref": np.full(n, 0.15) + _noise(n, 0.01)}
    it = ProbeItems("probe", "a", "p", {"original": orig, **plain}, {"original": orig, **att})
    by_item = calibrate(it, "ck", "original", "ref", "reference+holdout", n_boot=2000)
    by_entity = calibrate(it, "ck", "original", "ref", "reference+holdout", n_boot=2000,
                          forget_units=units_for(labels, n))
    assert by_entity.unit == "entity" and by_entity.n_units == n // per and by_item.unit == "item"
    assert by_entity.excess == pytest.approx(by_item.excess)
    assert (by_entity.hi - by_entity.lo) > 1.5 * (by_item.hi - by_item.lo)
    few = units_for(labels[: per * (MIN_ENTITIES - 1)], per * (MIN_ENTITIES - 1))
    assert few.unit == "item" and "entities" in few.reason and "these facts" in few.reason


def test_entity_labels_from_the_data_or_the_stated_rule():
    class It:
        def __init__(self, q, entity=None, concept=None):
            self.question, self.entity, self.concept = q, entity, concept

    given = [It("q", "A"), It("q", "B")]
    assert entity_labels(given) == (("A", "B"), "the data's entity field")
    inferred, how = entity_labels([It("Where was Mira Okonkwo born?"), It("What does Mira Okonkwo write?"),
                                   It("Who wrote it?")])
    assert inferred[:2] == ("Mira Okonkwo", "Mira Okonkwo") and inferred[2] == "item 2" and "inferred" in how
    assert infer_entity("What is the profession of Jaime van der Berg?") == "Jaime van der Berg"
    assert infer_entity("Who wrote it?") is None


def test_seeds_of_a_stochastic_attack_are_averaged_and_resampled():
    """[seeds, items]: the point is the mean over seeds; seeds that disagree widen the interval."""
    n = 40
    orig, plain = np.full(n, 0.95), np.full(n, 0.02)
    agree = np.stack([np.full(n, 0.5)] * 3) + _noise(n, 0.01)
    split = np.stack([np.full(n, 0.2), np.full(n, 0.5), np.full(n, 0.8)]) + _noise(n, 0.01)
    ref = np.full(n, 0.1)

    def ev(att):
        it = ProbeItems("probe", "a", "p", {"original": orig, "ck": plain, "ref": plain},
                        {"original": orig, "ck": att, "ref": ref})
        return calibrate(it, "ck", "original", "ref", "reference+holdout", n_boot=2000)

    a, s = ev(agree), ev(split)
    assert a.n_seeds == s.n_seeds == 3 and s.excess == pytest.approx(a.excess, abs=0.02)
    assert (s.hi - s.lo) > 3 * (a.hi - a.lo)


def test_the_joint_test_sees_a_suppression_two_probes_each_see_weakly():
    """Two recoverable probes, each with an excess near 0.26 on the same items but noisy: neither corrected lower
    bound clears 0.15, their paired mean does (its interval is narrower): 'suppressed' by joint_recoverable. Without
    the joint test the same evidence is only partially suppressed (a case found among seeds 5-11: the joint test
    adds power sometimes, and costs the single probes a stricter level always)."""
    n = 24
    rng = np.random.default_rng(8)
    orig, plain = np.full(n, 0.95), np.full(n, 0.02)
    ref = np.full(n, 0.10)

    def probe(key):
        att = np.clip(0.10 + 0.93 * 0.26 + rng.normal(0, 0.2, n), 0, 1)
        return ProbeItems(key, "a", "p", {"original": orig, "ck": plain, "ref": plain},
                          {"original": orig, "ck": att, "ref": ref})

    items = {"a": (_ev("a"), probe("a")), "b": (_ev("b"), probe("b"))}
    behaviour = {"original": {"forget_acc": 1.0}, "ck": {"forget_acc": 0.0}, "ref": {"forget_acc": 0.0}}
    with_joint = VerdictConfig(counted=("a", "b"), n_boot=2000)
    res = compute_verdict(behaviour, calibrate_all(items, ["original", "ck", "ref"], "original", "ref", with_joint),
                          with_joint, reference="ref")
    v = res.get("ck")
    singles = [e for e in v.evidence if e.key in ("a", "b")]
    assert all(e.lower_bound(with_joint.level(3)) < 0.15 for e in singles)
    assert v.verdict == "suppressed" and v.retention_from == JOINT, v.reason
    alone = VerdictConfig(counted=("a", "b"), n_boot=2000, joint=False)
    res2 = compute_verdict(behaviour, calibrate_all(items, ["original", "ck", "ref"], "original", "ref", alone),
                           alone, reference="ref")
    assert res2.get("ck").verdict != "suppressed"


def test_inconclusive_when_interval_straddles_the_line():
    rule = VerdictConfig(counted=("probe",), n_boot=1000, suppressed_at=0.25, partial_at=0.2)
    it = _items()
    few = ProbeItems("probe", "a", "p", {k: v[:6] for k, v in it.forget_plain.items()},
                     {k: (v[:6] if k != "leaky" else v[:6] + np.array([0, 0.35, 0, 0.35, 0, 0.1]))
                      for k, v in it.forget_attacked.items()})
    ev = calibrate_all({"probe": (_ev(), few)}, ["original", "leaky", "ref"], "original", "ref", rule)
    e = ev["leaky"][0]
    assert e.lo < 0.2 and e.hi > 0.25
    res = compute_verdict({"original": {"forget_acc": 1.0}, "leaky": {"forget_acc": 0.0}, "ref": {"forget_acc": 0}},
                          ev, rule, reference="ref")
    assert res.get("leaky").verdict == "inconclusive"


def test_rule_validation():
    with pytest.raises(ValueError):
        VerdictConfig(partial_at=0.6, suppressed_at=0.5)
    with pytest.raises(ValueError):
        VerdictConfig(n_boot=10)


def test_the_rule_text_is_the_rule_the_code_runs():
    """Every number and switch the decision reads appears in the text, and changing it changes the text."""
    base = VerdictConfig(counted=("a", "b"))
    text = base.rule_text()
    for part in (f"<= {base.forgotten_ratio:g} x", f">= {base.suppressed_at:g}", f">= {base.partial_at:g}",
                 f"{base.n_boot} resamples", f"seed {base.seed}", "a, b", f"{base.alpha:g}/k", "entities",
                 "hidden by a small edit", "joint_recoverable"):
        assert part in text, part
    for change in ({"suppressed_at": 0.2}, {"partial_at": 0.05}, {"forgotten_ratio": 0.4}, {"n_boot": 1000},
                   {"seed": 3}, {"counted": ("a",)}, {"ci": 0.9}, {"correct": False}, {"joint": False},
                   {"read_leak": False}):
        assert VerdictConfig(**{**base.__dict__, **change}).rule_text() != text, change
    nums = {float(x) for x in re.findall(r"(?<![\w.])(0\.\d+)", text)}
    assert {base.suppressed_at, base.partial_at, base.forgotten_ratio} <= nums


def test_probe_validity_reads_raw_climbs_and_calibrated_levels():
    it = _items()
    items = {"probe": (_ev(), it)}
    rule = VerdictConfig(n_boot=500)
    v = probe_validity(items, {"sup": "suppressed", "deleted": "deleted", "ref": "deleted"}, "original", "ref", rule)
    by = v.set_index("control")
    assert by.loc["uncalibrated (raw recovery)", "false_recovery"] == pytest.approx(0.14, abs=0.05)
    assert by.loc["uncalibrated (raw recovery)", "auc_items"] > 0.95
    assert bool(by.loc[CONTROL_REFERENCE, "separates"]) and bool(by.loc[CONTROL_HOLDOUT, "separates"])
    assert by.loc[CONTROL_REFERENCE, "false_calls"] == 0 and by.loc[CONTROL_REFERENCE, "missed"] == 0
    assert by.loc[CONTROL_REFERENCE, "axis"] == "recoverable"
    twin = probe_validity(items, {"sup": "suppressed", "deleted": "deleted"}, "original", "ref", rule, twin="deleted")
    gap = twin.set_index("control").loc[CONTROL_REFERENCE]
    assert abs(gap["twin_gap"]) < 0.1 and gap["twin_gap_hi"] < 0.15  # what two deletions differ by
    fig = plot_probe_validity(v)
    assert [t.name for t in fig.data][0].startswith("suppressed controls") and fig.layout.title.text
    res = _verdict()
    head = plot_verdict_headline(res)
    bars = [t for t in head.data if t.type == "bar"]
    assert head.layout.yaxis.title.text and len(bars) == 2 and bars[1].error_x.array is not None
    assert [t.name for t in head.data if t.type == "scatter"][0].startswith("suppressed if LB >=")
    mat = plot_evidence_matrix(res)
    assert list(mat.data[0].y) == ["probe"] and "needs reference" not in str(mat.data[0].text)


def test_nothing_to_audit_when_the_original_never_knew_the_forget_set():
    """A forget set the original answers 0 of: no checkpoint may 'look forgotten', whatever the probes say."""
    rule = VerdictConfig(counted=("probe",), n_boot=500, suppressed_at=0.25, partial_at=0.1)
    it = _items()
    names = ["original", "sup", "deleted", "ref"]
    ev = calibrate_all({"probe": (_ev(), it)}, names, "original", "ref", rule)
    behaviour = {n: {"forget_acc": 0.0} for n in names}
    res = compute_verdict(behaviour, ev, rule, reference="ref")
    for name in ("sup", "deleted"):
        v = res.get(name)
        assert v.verdict == "nothing to audit" and "looks forgotten" not in v.reason
        assert "none of the forget questions" in v.reason and "prompt template" in v.reason
        assert math.isnan(v.retention) and v.counted == ()
    early = compute_verdict({"original": {"forget_acc": 0.0}, "sup": {}}, {}, rule)
    assert early.get("sup").verdict == "nothing to audit"
    behaviour["original"] = {"forget_acc": 1.0}
    assert compute_verdict(behaviour, ev, rule, reference="ref").get("sup").verdict == "suppressed"


def test_sampling_leak_overrides_greedy_forgetting_in_reference_units():
    rule = VerdictConfig(counted=("probe",), n_boot=1000, suppressed_at=0.25, partial_at=0.1)
    it = _items()
    names = ["original", "sup", "deleted", "ref"]
    ev = calibrate_all({"probe": (_ev(), it)}, names, "original", "ref", rule)
    leak = {"original": 1.0, "sup": 0.7, "deleted": 0.35, "ref": 0.3}
    behaviour = {n: {"forget_acc": 1.0 if n == "original" else 0.05, "forget_leak_at_k": leak[n]} for n in names}
    res = compute_verdict(behaviour, ev, rule, original="original", reference="ref")
    assert res.get("sup").verdict == "not forgotten" and "leak@k 0.700" in res.get("sup").reason
    assert res.get("deleted").verdict == "deleted"
    off = compute_verdict(behaviour, ev, VerdictConfig(**{**rule.__dict__, "read_leak": False}), original="original",
                          reference="ref")
    assert off.get("sup").verdict == "suppressed" and "leak@k" not in off.rule
    nan = {n: {**b, "forget_leak_at_k": math.nan} for n, b in behaviour.items()}
    assert compute_verdict(nan, ev, rule, original="original", reference="ref").get("sup").verdict == "suppressed"


@pytest.mark.parametrize("seed, p_ck, p_ref, call", [(6, 0.4, 0.15, "suppressed"), (8, 0.4, 0.15, "suppressed"),
                                                     (11, 0.4, 0.15, "suppressed"), (1, 0.25, 0.2, "deleted"),
                                                     (5, 0.25, 0.2, "deleted")])
def test_units_for_a_definite_call_predicts_where_the_interval_clears_the_line(seed, p_ck, p_ref, call):
    """A partial / inconclusive call says how many units would make it definite. Checked against the project's own
    bootstrap: the same items repeated (same per-item spread, same excess) to half the projected count still miss
    the call, to twice the projected count make it."""
    n, rule = 20, VerdictConfig(counted=("probe",), joint=False)
    rng = np.random.default_rng(seed)
    ck, ref = (rng.random(n) < p_ck).astype(float), (rng.random(n) < p_ref).astype(float)

    def items(m: int) -> ProbeItems:
        zeros = np.zeros(n * m)
        return ProbeItems("probe", "a", "p", {"original": zeros, "c": zeros, "r": zeros},
                          {"original": np.ones(n * m), "c": np.tile(ck, m), "r": np.tile(ref, m)}, ceiling="attacked")

    def evidence(m: int):
        return calibrate_all({"probe": (_ev(), items(m))}, ["original", "c", "r"], "original", "r", rule)

    res = compute_verdict({"original": {"forget_acc": 1.0}, "c": {"forget_acc": 0.0}, "r": {"forget_acc": 0.0}},
                          evidence(1), rule, reference="r")
    v = res.get("c")
    assert v.verdict in ("partially suppressed", "inconclusive") and v.call_if_more_items == call
    projected = v.items_for_call
    assert projected > 2 * n and f"{projected:.0f}" in v.projection() and v.projection() in v.reason
    assert f"would make it \"{call}\"" in v.projection()
    assert res.to_frame().set_index("model").loc["c", "units_for_definite_call"] == projected

    def made(m: int) -> bool:
        e = evidence(m)["c"][0]
        return e.lo >= rule.suppressed_at if call == "suppressed" else e.hi < rule.suppressed_at

    assert not made(max(1, math.floor(projected / (2 * n))))
    assert made(math.ceil(2 * projected / n))


def test_a_projection_far_beyond_the_units_audited_says_more_would_not_settle_it():
    assert projection_phrase(53, "deleted", 40) == 'about 53 forget items would make it "deleted"'
    assert projection_phrase(9, "suppressed", 5, "entity") == 'about 9 entities would make it "suppressed"'
    far = projection_phrase(141786, "deleted", 40)
    assert far.startswith("more forget items would not settle it") and "141786" in far and f"{OUT_OF_REACH}x" in far
    assert projection_phrase(OUT_OF_REACH * 40, "suppressed", 40).startswith("about 400")
