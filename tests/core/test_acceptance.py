"""Known truth through the CLI (issues 17, 34): on every lab, with and without the retain-only reference, the
default evidence set and every analysis: never a wrong call on a known-truth control (two planted suppressions, three
deletions: the twin, a non-twin and an over-unlearned one); calls on the axis that may make them (see _check).

The second world (tests/fixtures/world2.py: another domain, templates and architecture) was never used to choose a
threshold: it is the held-out check that the rule transfers.
"""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from unlearn_core.cli import main

pytestmark = pytest.mark.lab

SUPPRESSED = ("suppressed_head", "suppressed_lowrank")
TWIN = "retrained"
DELETIONS = ("retrained", "non_twin", "over_unlearned")  # every lab's known-truth deletions
HIDDEN = "hidden by a small edit"
# the demo lab the app opens on is built in CI too; UNLEARN_AUDIT_FAST_TESTS=1 keeps a local run to the tiny ones.
# The full-size Llama lab (its architecture is covered by tiny-llama and the second world) costs ~19 min of a CI
# worker (build and two audits): UNLEARN_AUDIT_FULL_LABS=1 adds it
LABS = (["tiny", "tiny-llama"] + ([] if os.environ.get("UNLEARN_AUDIT_FAST_TESTS") else ["default"])
        + (["llama"] if os.environ.get("UNLEARN_AUDIT_FULL_LABS") else []))


def _audit(lab, out, *extra) -> dict:
    assert main(["audit", "--lab", str(lab), "--out", str(out), *extra]) == 0
    return json.loads((out / "report.json").read_text())


# a planted suppression is never called deleted or not forgotten; a deletion is never called suppressed, partially
# suppressed or hidden by a small edit (none of the three deletions is an edit of the original)
WRONG = {"suppressed": ("deleted", "not forgotten"), "deleted": ("suppressed", "partially suppressed", HIDDEN)}


def _table(report: dict) -> dict:
    return {n: (c.get("verdict"), c.get("deciding_axis"), c.get("retention_from"), c.get("retention"),
                c.get("retention_lo"), c.get("retention_hi"), c.get("control"))
            for n, c in report["checkpoints"].items() if "verdict" in c}


def _check(report: dict, with_reference: bool, out=None, unit: str = "entity") -> None:
    """Never a wrong call on a known-truth control, with or without the reference (issue 34):
    - "suppressed" / "partially suppressed" are decided on the recoverable axis only; "hidden by a small edit" only
      on the edit-of-original axis;
    - with the reference, the head-only suppression is "suppressed" (recoverable: decodability reads it from the
      checkpoint alone); the low-rank one (a rank-4 update on every block that keeps most of the answer path) is at
      least seen: "suppressed", "partially suppressed" or, where only the probes reading the original see it,
      "hidden by a small edit", never "deleted" or "inconclusive";
    - the twin deletion is "deleted", or "inconclusive" only with a projection; the non-twin and over-unlearned
      deletions are never suppressed, partially suppressed or hidden.
    Without a reference only the holdout split calibrates: "inconclusive" is allowed, a wrong call is not.
    A call that is not definite says how many units would make it one; the labs' units are entities (`unit`: a world
    with fewer than five entities resamples items, and says why)."""
    cps = report["checkpoints"]
    table = _table(report)
    for name, truth in [*((n, "suppressed") for n in SUPPRESSED), *((n, "deleted") for n in DELETIONS)]:
        assert cps[name]["verdict"] not in WRONG[truth], (name, table)
    for name, c in cps.items():
        v = c.get("verdict")
        if v in ("suppressed", "partially suppressed"):
            assert c["deciding_axis"] == "recoverable", (name, table)
        elif v == HIDDEN:
            assert c["deciding_axis"] == "edit_of_original", (name, table)
        if v in ("partially suppressed", "inconclusive") and c.get("call_with_more_units"):
            n = max(c["evidence"][k]["n_units"] for k in c["counted"])
            assert c["units_for_definite_call"] > n and "would make it" in c["verdict_reason"], (name, c)
        elif v in ("suppressed", "deleted"):
            assert c["units_for_definite_call"] is None, (name, c)
    assert report["units"]["forget"]["unit"] == unit, report["units"]  # the labs' items carry their entity
    for c in cps.values():
        for ev in c.get("evidence", {}).values():
            assert ev["unit"] == unit and ev["n_units"] >= 5 and ev["axis"] in ("recoverable", "edit_of_original")
    if out is not None:
        evidence, verdicts = pd.read_csv(out / "evidence.csv"), pd.read_csv(out / "verdicts.csv")
        assert {"axis", "unit", "n_units", "ci_low", "ci_high"} <= set(evidence.columns)
        assert set(evidence["unit"]) == {unit}
        assert "deciding_axis" in verdicts.columns
        decided = verdicts[verdicts["verdict"].isin(["suppressed", "partially suppressed"])]
        assert set(decided["deciding_axis"]) <= {"recoverable"}, decided
    if with_reference:
        assert cps["suppressed_head"]["verdict"] == "suppressed", table
        assert cps["suppressed_lowrank"]["verdict"] in ("suppressed", "partially suppressed", HIDDEN), table
        assert cps[TWIN]["verdict"] == "deleted" or (
            cps[TWIN]["verdict"] == "inconclusive" and cps[TWIN]["call_with_more_units"] == "deleted"), table
        assert cps[TWIN]["control"] == "retain-only reference", table


@pytest.fixture(scope="module", params=LABS)
def lab(request):
    from tests.conftest import lab_path

    if request.param == "tiny":
        return request.getfixturevalue("tiny_lab")
    return lab_path(request.param)


@pytest.fixture(scope="module")
def with_reference(lab, tmp_path_factory):
    out = tmp_path_factory.mktemp("with-reference")
    return _audit(lab, out), out


@pytest.mark.parametrize("reference", [True, False], ids=["with-reference", "no-reference"])
def test_default_evidence_set(lab, with_reference, tmp_path, reference):
    if reference:
        report, out = with_reference
    else:  # the same checkpoints less the reference: a subset of the stored set, served from it (issue 35)
        out = tmp_path
        report = _audit(lab, out, "--no-reference", "--store", str(with_reference[1] / "results.sqlite"))
        assert all(a["from_store"] for a in report["analyses"].values()), report["analyses"]
    _check(report, reference, out)
    assert report["reference"] == ("retain_only" if reference else None)
    if reference:
        validity = {(r["evidence"], r["control"]): r for r in report["probe_validity"]}
        assert validity, "the lab's ground truth gives a probe-validity table"
        assert (out / "probe_validity.csv").exists() and (out / "evidence.csv").exists()


@pytest.mark.parametrize("reference", [True, False], ids=["with-reference", "no-reference"])
def test_all_analyses(tiny_lab, tmp_path, reference):
    report = _audit(tiny_lab, tmp_path, "--analyses", "all", *([] if reference else ["--no-reference"]))
    _check(report, reference)
    if reference:
        rows = [r for r in report["probe_validity"] if r["evidence"] == "sae_restoration"]
        raw = next(r for r in rows if r["control"].startswith("uncalibrated"))
        # injection at the last layer "restores" the retrained model too: raw, it does not separate
        assert not raw["separates"], rows
    else:
        sae = report["checkpoints"]["suppressed_head"]["not_counted"]
        assert "needs a deletion reference" in sae["sae_restoration"]


def test_second_world_never_tuned_on(tmp_path):
    from tests.conftest import CACHE
    from tests.fixtures.world2 import build_world2_lab

    lab = build_world2_lab(CACHE)
    ref = _audit(lab, tmp_path / "ref")
    # its 4 forget entities are too few for an entity interval: items are resampled, and the report says so
    assert "only 4 entities" in ref["units"]["forget"]["reason"], ref["units"]
    _check(ref, True, tmp_path / "ref", unit="item")
    noref = _audit(lab, tmp_path / "noref", "--no-reference", "--store", str(tmp_path / "ref" / "results.sqlite"))
    assert all(a["from_store"] for a in noref["analyses"].values()), noref["analyses"]
    _check(noref, False, unit="item")


def test_over_unlearned_climbs_back_to_the_reference_not_above_it(tiny_lab, tmp_path):
    """The tiny lab's retrained model pushed below the reference by gradient ascent (it never knew the facts) gets no
    credit for climbing back from its own floor (issue 34; the old per-model climb gave it +0.064 [-0.040, +0.164]):
    its excess is at most +0.05 and its interval reaches up to -0.05 or above. Measured: -0.090 [-0.195, +0.010]; a
    point estimate inside +-0.05 was the issue's aim, not met, and this is why: the ascent marked the forget set. The
    checkpoint scores the forget answers below a model that never learned them, so a loss membership attack tells
    them from the holdout facts (MIA AUC 0.27 against the reference's 0.47), and ten steps on other facts do not
    undo a push-down specific to each held fact. The negative excess is that imprint, not a floor artefact."""
    report = _audit(tiny_lab, tmp_path, "--analyses", "relearning,scorecard")
    ev = report["checkpoints"]["over_unlearned"]["evidence"]["relearning_recovery"]
    assert ev["excess"] <= 0.05 and ev["ci_high"] >= -0.05, ev
    assert ev["n_seeds"] >= 3, ev
    auc = pd.read_csv(tmp_path / "scorecard_summary.csv").set_index("model")["mia_auc_loss"]
    assert auc["over_unlearned"] < auc["retain_only"] - 0.1, auc


def test_held_out_world_is_frozen():
    """World 3 (ships, 4-block Llama) was frozen before the verdict's second version and is used once, for the final
    check: its facts and config may not change."""
    from tests.fixtures.world3 import WORLD3, facts_hash

    assert facts_hash() == "7277bb879a221b1b"
    assert WORLD3.hash == "32e61396753b"
