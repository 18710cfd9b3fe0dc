"""Planted truth through the CLI (issue 17): on every lab, with and without the retain-only reference, the default
evidence set and every analysis: never a wrong call on a planted control; with the reference both planted
suppressions (head-only, low-rank over every block) called suppressed on every lab (see _check for what varies with a
lab's build). Without a reference a verdict may be "inconclusive" for lack of a control, never
the wrong call.

The second world (tests/fixtures/world2.py: another domain, templates and architecture) was never used to choose a
threshold: it is the held-out check that the rule transfers.
"""

from __future__ import annotations

import json
import os

import pytest

from unlearn_core.cli import main

pytestmark = pytest.mark.lab

SUPPRESSED = ("suppressed_head", "suppressed_lowrank")
DELETED = ("retrained",)
# the default labs are built in CI too; UNLEARN_AUDIT_FAST_TESTS=1 keeps a local run to the tiny ones
LABS = ["tiny", "tiny-llama"] + ([] if os.environ.get("UNLEARN_AUDIT_FAST_TESTS") else ["default", "llama"])


def _audit(lab, out, *extra) -> dict:
    assert main(["audit", "--lab", str(lab), "--out", str(out), *extra]) == 0
    return json.loads((out / "report.json").read_text())


WRONG = {"suppressed": ("deleted", "not forgotten"), "deleted": ("suppressed", "partially suppressed")}


def _check(report: dict, with_reference: bool) -> None:
    """Never a wrong call on any planted control, with or without the reference; with the reference both planted
    suppressions are called suppressed, and retrained may stop at "inconclusive" (weaker, never wrong). Without the
    reference only the holdout split calibrates, and with 16 forget items its interval can be too wide for any call:
    the one-thread build of tiny-llama gave suppressed_head +0.45 [0.00, 0.97] against the holdout (inconclusive),
    where the two-thread build gave +0.94 [0.45, 1.00].

    A lab's build differs between machines (CPU kernels: the same config and seed trained elsewhere gives other
    weights), and so do the margins: retrained was deleted on tiny-llama and Llama on both machines measured, on the
    default lab once and inconclusive once (decodability +0.068 [-0.011, +0.162]: the upper bound crosses the line by
    0.012). Asserting that definite call would test one machine's build, not the rule."""
    cps = report["checkpoints"]
    table = {n: (c.get("verdict"), c.get("retention_from"), c.get("retention"), c.get("retention_interval"),
                 c.get("control")) for n, c in cps.items() if "verdict" in c}
    for name, truth in [*((n, "suppressed") for n in SUPPRESSED), *((n, "deleted") for n in DELETED)]:
        assert cps[name]["verdict"] not in WRONG[truth], (name, table)
    for name, c in cps.items():  # a call that is not definite says how many items would make it one
        if c.get("verdict") in ("partially suppressed", "inconclusive") and c.get("call_with_more_items"):
            n = max(c["evidence"][k]["n_items"] for k in c["counted"])
            assert c["items_for_definite_call"] > n and "would make it" in c["verdict_reason"], (name, c)
        elif c.get("verdict") in ("suppressed", "deleted"):
            assert c["items_for_definite_call"] is None, (name, c)
    if with_reference:
        # both planted suppressions called outright: the head-only one by decodability, the low-rank one by the update
        # revert (its lower bound sat at +0.35..+0.58 on five builds, retrained's upper bound at <= +0.05); which
        # probe decides may vary with the build, the call must not
        assert cps["suppressed_head"]["verdict"] == "suppressed", table
        assert cps["suppressed_lowrank"]["verdict"] == "suppressed", table
        assert cps["retrained"]["control"] == "retain-only reference", table


@pytest.fixture(scope="module", params=LABS)
def lab(request):
    from tests.conftest import lab_path

    if request.param == "tiny":
        return request.getfixturevalue("tiny_lab")
    return lab_path(request.param)


@pytest.mark.parametrize("reference", [True, False], ids=["with-reference", "no-reference"])
def test_default_evidence_set(lab, tmp_path, reference):
    report = _audit(lab, tmp_path, *([] if reference else ["--no-reference"]))
    _check(report, reference)
    assert report["reference"] == ("retain_only" if reference else None)
    if reference:
        validity = {(r["evidence"], r["control"]): r for r in report["probe_validity"]}
        assert validity, "the lab's ground truth gives a probe-validity table"
        assert (tmp_path / "probe_validity.csv").exists() and (tmp_path / "evidence.csv").exists()


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
    _check(_audit(lab, tmp_path / "ref"), True)
    _check(_audit(lab, tmp_path / "noref", "--no-reference"), False)
