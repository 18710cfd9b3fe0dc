"""The demo lab ships a LoRA adapter and a checkpoint series (lab/extras): real gradient ascent, audited offline."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from unlearn_core.checkpoints.adapters import is_adapter_folder
from unlearn_core.checkpoints.series_layout import list_steps
from unlearn_core.cli import main
from unlearn_core.lab.extras import build_extras

pytestmark = pytest.mark.lab


def test_lab_extras_are_built_and_audit_from_the_cli(tiny_lab, tmp_path):
    meta = build_extras(tiny_lab)  # built with the lab (or once for a lab cached before): here, read back
    assert meta == json.loads((tiny_lab / "extras" / "extras.json").read_text())
    lora, series = tiny_lab / meta["ga_lora"]["path"], tiny_lab / meta["ga_series"]["path"]
    assert is_adapter_folder(lora)
    assert [s for s, _ in list_steps(series)] == [8, 16, 24, 32]
    acc = {int(k): v for k, v in meta["ga_series"]["forget_acc"].items()}
    assert acc[32] < acc[0]  # the run really forgets
    out = tmp_path / "audit"
    lab = json.loads((tiny_lab / "lab.json").read_text())
    assert main(["audit", "--original", str(tiny_lab / "original"), "--unlearned", f"ga_lora={lora}",
                 "--series", f"ga={series}", "--series-every", "2", "--retain-model", str(tiny_lab / "retain_only"),
                 "--forget", str(tiny_lab / lab["data"]["forget"]), "--retain", str(tiny_lab / lab["data"]["retain"]),
                 "--holdout", str(tiny_lab / lab["data"]["holdout"]), "--analyses", "scorecard",
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["checkpoints"]["ga_lora"]["scores"]["forget_acc"] < report["checkpoints"]["original"]["scores"][
        "forget_acc"]
    steps = pd.read_csv(out / "series.csv")
    assert list(steps["step"]) == [8, 24, 32]  # every 2nd step from the first, the last always
