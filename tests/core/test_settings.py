"""Analysis settings from the CLI (--set, --settings): checked against the config classes before anything runs,
part of the store key, recorded in report.json; relearning's rate scales with the model's size."""

from __future__ import annotations

import json

import pytest

from unlearn_core.analyses.relearning import RelearningConfig, lr_for
from unlearn_core.analyses.settings import as_record, build_configs, parse_set
from unlearn_core.analyses.spec import Shape
from unlearn_core.run.jobs import plan


def test_set_parses_into_the_config_types():
    cfgs = build_configs(["relearning.lr=2e-5", "relearning.steps=20", "relearning.split_by=concept",
                          "update_revert.ranks=[4,8,16]"])
    assert cfgs["relearning"].lr == 2e-5 and cfgs["relearning"].steps == 20
    assert cfgs["relearning"].split_by == "concept" and cfgs["update_revert"].ranks == (4, 8, 16)
    assert isinstance(build_configs(["relearning.lr=1"])["relearning"].lr, float)  # an int typed into a float field
    assert parse_set("a.b=c=d") == ("a", "b", "c=d")


@pytest.mark.parametrize("text,message", [
    ("relearning.lrr=1", "has no setting 'lrr'"),
    ("relearning.lr=-1", "lr must be a finite number >= 0"),
    ("relearninglr=1", "expects ANALYSIS.FIELD=VALUE"),
    ("nope.lr=1", "unknown analysis 'nope'"),
])
def test_bad_settings_are_refused_with_what_is_allowed(text, message):
    with pytest.raises(ValueError, match=message):
        build_configs([text])


def test_settings_files_and_later_wins(tmp_path):
    js = tmp_path / "s.json"
    js.write_text(json.dumps({"relearning": {"steps": 7, "lr": 3e-4}}))
    toml = tmp_path / "s.toml"
    toml.write_text("[relearning]\nsteps = 9\n")
    cfg = build_configs(["relearning.lr=5e-4"], [js, toml])["relearning"]
    assert (cfg.steps, cfg.lr) == (9, 5e-4)
    bad = tmp_path / "bad.json"
    bad.write_text("{relearning")
    with pytest.raises(ValueError, match="not valid JSON"):
        build_configs(files=[bad])
    with pytest.raises(ValueError, match="cannot read it"):
        build_configs(files=[tmp_path / "missing.json"])
    # a recorded config reads back as the same config
    assert build_configs(files=[_write(tmp_path, {"relearning": as_record(cfg)})])["relearning"] == cfg


def _write(tmp_path, obj):
    p = tmp_path / "rec.json"
    p.write_text(json.dumps(obj))
    return p


def test_relearning_rate_scales_with_size_and_resolves_once():
    assert lr_for(200_000) == lr_for(1_000_000) == 1e-3  # the demo labs keep their rate (numbers unchanged)
    assert lr_for(134_515_008) == pytest.approx(8.6e-5) and lr_for(7_000_000_000) == pytest.approx(1.2e-5)
    assert lr_for(10**12) == 1e-5 and lr_for(0) == 1e-3
    assert lr_for(134_515_008) == lr_for(134_600_000)  # two ways of counting one model: one rate, one key
    small, big = Shape(3, 20, 200_000), Shape(30, 20, 134_515_008)
    left = plan("relearning", {"original": "h"}, "d", RelearningConfig(), small)
    typed = plan("relearning", {"original": "h"}, "d", RelearningConfig(lr=1e-3), small)
    assert left.config.lr == 1e-3 and left.key == typed.key  # leaving the default or typing its value: one key
    assert plan("relearning", {"original": "h"}, "d", RelearningConfig(), big).config.lr == pytest.approx(8.6e-5)
    assert plan("relearning", {"original": "h"}, "d", RelearningConfig(lr=2e-5), big).key != \
        plan("relearning", {"original": "h"}, "d", RelearningConfig(), big).key


def test_cli_records_settings_and_they_move_the_key(tiny_lab, tmp_path):
    from unlearn_core.cli import main

    base = ["audit", "--lab", str(tiny_lab), "--analyses", "relearning", "--store", str(tmp_path / "s.sqlite")]
    one = ["--set", "relearning.seeds=1"]
    assert main([*base, "--out", str(tmp_path / "a"), "--set", "relearning.steps=3", *one]) == 0
    a = json.loads((tmp_path / "a" / "report.json").read_text())
    assert a["settings"]["relearning"]["steps"] == 3 and a["settings"]["relearning"]["lr"] == 1e-3
    # the recorded settings given back as a file: served from the store, same numbers
    (tmp_path / "rec.json").write_text(json.dumps(a["settings"]))
    assert main([*base, "--out", str(tmp_path / "b"), "--settings", str(tmp_path / "rec.json")]) == 0
    b = json.loads((tmp_path / "b" / "report.json").read_text())
    assert b["analyses"]["relearning"]["from_store"] and b["analyses"]["relearning"]["store_key"] == \
        a["analyses"]["relearning"]["store_key"]
    assert main([*base, "--out", str(tmp_path / "c"), "--set", "relearning.steps=4", *one]) == 0
    c = json.loads((tmp_path / "c" / "report.json").read_text())
    assert not c["analyses"]["relearning"]["from_store"]
    assert c["analyses"]["relearning"]["store_key"] != a["analyses"]["relearning"]["store_key"]
