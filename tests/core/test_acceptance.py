"""Known truth through the CLI (issues 17, 34): on every lab (the default lab's in test_acceptance_default.py), with
and without the retain-only reference, the default evidence set and every analysis: never a wrong call on a
known-truth control (two planted suppressions, three deletions: the twin, a non-twin and an over-unlearned one); calls
on the axis that may make them (tests.fixtures.acceptance.check).

The second world (tests/fixtures/world2.py: another domain, templates and architecture) was never used to choose a
threshold: it is the held-out check that the rule transfers.
"""

from __future__ import annotations

import os

import pandas as pd
import pytest

from tests.fixtures.acceptance import audit, check, check_default_evidence_set, lab_fixture, with_reference_fixture

pytestmark = pytest.mark.lab

# the tiny labs here; the demo lab the app opens on in test_acceptance_default.py (its own xdist worker). The full-size
# Llama lab (its architecture is covered by tiny-llama and the second world) costs ~19 min of a CI worker (build and
# two audits): UNLEARN_AUDIT_FULL_LABS=1 adds it
LABS = ["tiny", "tiny-llama"] + (["llama"] if os.environ.get("UNLEARN_AUDIT_FULL_LABS") else [])
lab = lab_fixture(LABS)
with_reference = with_reference_fixture()


@pytest.mark.parametrize("reference", [True, False], ids=["with-reference", "no-reference"])
def test_default_evidence_set(lab, with_reference, tmp_path, reference):
    check_default_evidence_set(lab, with_reference, tmp_path, reference)


@pytest.mark.parametrize("reference", [True, False], ids=["with-reference", "no-reference"])
def test_all_analyses(tiny_lab, tmp_path, reference):
    report = audit(tiny_lab, tmp_path, "--analyses", "all", *([] if reference else ["--no-reference"]))
    check(report, reference)
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
    ref = audit(lab, tmp_path / "ref")
    # its 4 forget entities are too few for an entity interval: items are resampled, and the report says so
    assert "only 4 entities" in ref["units"]["forget"]["reason"], ref["units"]
    check(ref, True, tmp_path / "ref", unit="item")
    noref = audit(lab, tmp_path / "noref", "--no-reference", "--store", str(tmp_path / "ref" / "results.sqlite"))
    assert all(a["from_store"] for a in noref["analyses"].values()), noref["analyses"]
    check(noref, False, unit="item")


def test_over_unlearned_climbs_back_to_the_reference_not_above_it(tiny_lab, tmp_path):
    """The tiny lab's retrained model pushed below the reference by gradient ascent (it never knew the facts) gets no
    credit for climbing back from its own floor (issue 34; the old per-model climb gave it +0.064 [-0.040, +0.164]):
    its excess is at most +0.05 and its interval reaches up to -0.05 or above. Measured: -0.090 [-0.195, +0.010]; a
    point estimate inside +-0.05 was the issue's aim, not met, and this is why: the ascent marked the forget set. The
    checkpoint scores the forget answers below a model that never learned them, so a loss membership attack tells
    them from the holdout facts (MIA AUC 0.27 against the reference's 0.47), and ten steps on other facts do not
    undo a push-down specific to each held fact. The negative excess is that imprint, not a floor artefact."""
    report = audit(tiny_lab, tmp_path, "--analyses", "relearning,scorecard")
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
