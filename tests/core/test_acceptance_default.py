"""Known truth through the CLI on the demo lab the app opens on (the checks of test_acceptance.py, in their own file:
the lab's build is the suite's longest setup, and pytest-xdist's --dist loadfile keeps a file on one worker).
UNLEARN_AUDIT_FAST_TESTS=1 leaves it out of a local run."""

from __future__ import annotations

import os

import pytest

from tests.fixtures.acceptance import check_default_evidence_set, lab_fixture, with_reference_fixture

pytestmark = [pytest.mark.lab, pytest.mark.skipif(bool(os.environ.get("UNLEARN_AUDIT_FAST_TESTS")),
                                                  reason="UNLEARN_AUDIT_FAST_TESTS: the tiny labs only")]
lab = lab_fixture(["default"])
with_reference = with_reference_fixture()


@pytest.mark.parametrize("reference", [True, False], ids=["with-reference", "no-reference"])
def test_default_evidence_set(lab, with_reference, tmp_path, reference):
    check_default_evidence_set(lab, with_reference, tmp_path, reference)
