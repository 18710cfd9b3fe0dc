"""Calibration and the verdict rule on synthetic per-item evidence whose answer is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unlearn_core.analyses.spec import Evidence
from unlearn_core.evidence.calibration import CONTROL_HOLDOUT, CONTROL_NONE, CONTROL_REFERENCE, ProbeItems, calibrate
from unlearn_core.evidence.plots import plot_evidence_matrix, plot_probe_validity, plot_verdict_headline
from unlearn_core.evidence.validity import probe_validity
from unlearn_core.evidence.verdict import OUT_OF_REACH, VerdictConfig, calibrate_all, compute_verdict, projection_phrase
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


def test_reference_calibration_reads_excess_with_interval():
    it = _items()
    sup = calibrate(it, "sup", "original", "ref", "reference+holdout", n_boot=1000)
    dele = calibrate(it, "deleted", "original", "ref", "reference+holdout", n_boot=1000)
    assert sup.control == CONTROL_REFERENCE and dele.control == CONTROL_REFERENCE
    assert sup.raw == pytest.approx(0.8, abs=0.05) and sup.control_value == pytest.approx(0.15, abs=0.05)
    assert sup.lo <= sup.excess <= sup.hi and sup.excess == pytest.approx(0.65, abs=0.06)
    # the deletion control's raw recovery is the attack's false recovery (0.15); calibrated it is ~0
    assert dele.raw == pytest.approx(0.15, abs=0.05) and dele.lo < 0 < dele.hi
    assert calibrate(it, "sup", "original", "ref", "reference", n_boot=1000) == sup  # seeded: reproducible


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
    items = {"probe": (Evidence("probe", "synthetic", "reference+holdout"), it)}
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
    assert "excess" in sup.reason and "[" in sup.reason
    frame = res.to_frame()
    assert {"ci_low", "ci_high", "control", "probe_excess"} <= set(frame.columns)
    ev = res.evidence_frame()
    assert set(ev["model"]) == {"sup", "deleted", "leaky", "kept"}
    # "kept" never forgot: no recovery to measure, so its evidence does not count (and says why)
    assert list(ev[~ev["counted"]]["model"]) == ["kept"] and "did not forget" in ev.iloc[-1]["why_not_counted"]
    # a payload round-trips through the results codec
    assert decode_result(encode_result(res)).get("sup").retention == sup.retention


def test_verdict_without_reference_and_uncounted_probe():
    res = _verdict(reference=None)
    assert res.get("sup").verdict == "suppressed" and res.get("sup").control == CONTROL_HOLDOUT
    assert res.get("deleted").verdict == "deleted"
    # the same evidence not counted by the rule: no verdict from it, and the page/report says why
    res = _verdict(rule=VerdictConfig(counted=(), n_boot=1000, suppressed_at=0.25))
    assert res.get("sup").verdict == "unknown" and "probe" in res.get("sup").not_counted


def test_inconclusive_when_interval_straddles_the_line():
    rule = VerdictConfig(counted=("probe",), n_boot=1000, suppressed_at=0.25, partial_at=0.2)
    it = _items()
    # a checkpoint whose excess is right at the line, on few items: the interval must straddle it
    few = ProbeItems("probe", "a", "p", {k: v[:6] for k, v in it.forget_plain.items()},
                     {k: (v[:6] if k != "leaky" else v[:6] + np.array([0, 0.5, 0, 0.5, 0, 0.3]))
                      for k, v in it.forget_attacked.items()})
    ev = calibrate_all({"probe": (Evidence("probe", "s", "reference+holdout"), few)}, ["original", "leaky", "ref"],
                       "original", "ref", rule)
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


def test_probe_validity_and_plots():
    it = _items()
    items = {"probe": (Evidence("probe", "synthetic", "reference+holdout"), it)}
    rule = VerdictConfig(n_boot=500)
    v = probe_validity(items, {"sup": "suppressed", "deleted": "deleted", "ref": "deleted"}, "original", "ref", rule)
    by = v.set_index("control")
    # raw: the deletion control 'recovers' 0.15 (its false-recovery rate); calibrated both ways it separates
    assert by.loc["uncalibrated (raw recovery)", "false_recovery"] == pytest.approx(0.15, abs=0.05)
    assert by.loc["uncalibrated (raw recovery)", "auc_items"] > 0.95
    assert bool(by.loc[CONTROL_REFERENCE, "separates"]) and bool(by.loc[CONTROL_HOLDOUT, "separates"])
    assert by.loc[CONTROL_REFERENCE, "false_calls"] == 0 and by.loc[CONTROL_REFERENCE, "missed"] == 0
    fig = plot_probe_validity(v)
    assert [t.name for t in fig.data][0].startswith("suppressed controls") and fig.layout.title.text
    res = _verdict()
    head = plot_verdict_headline(res)
    bars = [t for t in head.data if t.type == "bar"]
    assert head.layout.yaxis.title.text and len(bars) == 2 and bars[1].error_x.array is not None
    assert [t.name for t in head.data if t.type == "scatter"][0].startswith("suppressed if lo >=")  # the rule's lines
    mat = plot_evidence_matrix(res)
    assert list(mat.data[0].y) == ["probe"] and "needs reference" not in str(mat.data[0].text)


def test_nothing_to_audit_when_the_original_never_knew_the_forget_set():
    """A forget set the original answers 0 of: no checkpoint may 'look forgotten', whatever the probes say."""
    rule = VerdictConfig(counted=("probe",), n_boot=500, suppressed_at=0.25, partial_at=0.1)
    it = _items()
    names = ["original", "sup", "deleted", "ref"]
    ev = calibrate_all({"probe": (Evidence("probe", "s", "reference+holdout"), it)}, names, "original", "ref", rule)
    behaviour = {n: {"forget_acc": 0.0} for n in names}
    res = compute_verdict(behaviour, ev, rule, reference="ref")
    for name in ("sup", "deleted"):
        v = res.get(name)
        assert v.verdict == "nothing to audit" and "looks forgotten" not in v.reason
        assert "none of the forget questions" in v.reason and "prompt template" in v.reason
        assert math.isnan(v.retention) and v.counted == ()
    # no behavioural score for the checkpoints yet: still "nothing to audit", not "unknown"
    early = compute_verdict({"original": {"forget_acc": 0.0}, "sup": {}}, {}, rule)
    assert early.get("sup").verdict == "nothing to audit"
    # the same evidence with an original that knew the facts still gives a verdict
    behaviour["original"] = {"forget_acc": 1.0}
    assert compute_verdict(behaviour, ev, rule, reference="ref").get("sup").verdict == "suppressed"


def test_sampling_leak_overrides_greedy_forgetting_in_reference_units():
    """Greedy answers gone but k samples still find them: "not forgotten". A leak no larger than what the deletion
    reference guesses (a common answer) is not a leak; without leak@k sampled nothing changes; the rule can switch
    it off."""
    rule = VerdictConfig(counted=("probe",), n_boot=1000, suppressed_at=0.25, partial_at=0.1)
    it = _items()
    names = ["original", "sup", "deleted", "ref"]
    ev = calibrate_all({"probe": (Evidence("probe", "synthetic", "reference+holdout"), it)}, names, "original", "ref",
                       rule)
    leak = {"original": 1.0, "sup": 0.7, "deleted": 0.35, "ref": 0.3}
    behaviour = {n: {"forget_acc": 1.0 if n == "original" else 0.05, "forget_leak_at_k": leak[n]} for n in names}
    res = compute_verdict(behaviour, ev, rule, original="original", reference="ref")
    assert res.get("sup").verdict == "not forgotten" and "leak@k 0.700" in res.get("sup").reason
    assert res.get("deleted").verdict == "deleted"  # 0.35 - 0.3 <= 0.5 x (1.0 - 0.3)
    off = compute_verdict(behaviour, ev, VerdictConfig(**{**rule.__dict__, "read_leak": False}), original="original",
                          reference="ref")
    assert off.get("sup").verdict == "suppressed" and "leak@k" not in off.rule
    nan = {n: {**b, "forget_leak_at_k": math.nan} for n, b in behaviour.items()}
    assert compute_verdict(nan, ev, rule, original="original", reference="ref").get("sup").verdict == "suppressed"


@pytest.mark.parametrize("seed, p_ck, p_ref, call", [(6, 0.4, 0.15, "suppressed"), (8, 0.4, 0.15, "suppressed"),
                                                     (11, 0.4, 0.15, "suppressed"), (1, 0.25, 0.2, "deleted"),
                                                     (5, 0.25, 0.2, "deleted")])
def test_items_for_a_definite_call_predicts_where_the_interval_clears_the_line(seed, p_ck, p_ref, call):
    """A partial / inconclusive call says how many forget items would make it definite. Checked against the
    project's own bootstrap: the same items repeated (same per-item spread, same excess) to half the projected
    count still miss the call, to twice the projected count make it."""
    n, rule = 20, VerdictConfig(counted=("probe",))
    rng = np.random.default_rng(seed)
    ck, ref = (rng.random(n) < p_ck).astype(float), (rng.random(n) < p_ref).astype(float)

    def items(m: int) -> ProbeItems:
        zeros = np.zeros(n * m)
        return ProbeItems("probe", "a", "p", {"original": zeros, "c": zeros, "r": zeros},
                          {"original": np.ones(n * m), "c": np.tile(ck, m), "r": np.tile(ref, m)}, ceiling="attacked")

    def evidence(m: int):
        return calibrate_all({"probe": (Evidence("probe", "s", "reference+holdout"), items(m))},
                             ["original", "c", "r"], "original", "r", rule)

    res = compute_verdict({"original": {"forget_acc": 1.0}, "c": {"forget_acc": 0.0}, "r": {"forget_acc": 0.0}},
                          evidence(1), rule, reference="r")
    v = res.get("c")
    assert v.verdict in ("partially suppressed", "inconclusive") and v.call_if_more_items == call
    projected = v.items_for_call
    assert projected > 2 * n and f"{projected:.0f}" in v.projection() and v.projection() in v.reason
    assert f"would make it \"{call}\"" in v.projection()
    assert res.to_frame().set_index("model").loc["c", "items_for_definite_call"] == projected

    def made(m: int) -> bool:
        e = evidence(m)["c"][0]
        return e.lo >= rule.suppressed_at if call == "suppressed" else e.hi < rule.suppressed_at

    assert not made(max(1, math.floor(projected / (2 * n))))
    assert made(math.ceil(2 * projected / n))


def test_a_projection_far_beyond_the_items_audited_says_more_items_would_not_settle_it():
    """An excess a hair below the line (the Llama lab's +0.147 against 0.15) projects six-figure item counts: the
    phrase says the call is out of reach instead of reading like a plan."""
    assert projection_phrase(53, "deleted", 40) == 'about 53 forget items would make it "deleted"'
    far = projection_phrase(141786, "deleted", 40)
    assert far.startswith("more forget items would not settle it") and "141786" in far and f"{OUT_OF_REACH}x" in far
    assert projection_phrase(OUT_OF_REACH * 40, "suppressed", 40).startswith("about 400")
