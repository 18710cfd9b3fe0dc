"""Estimates before a run: recorded wall times in the results store, scaled to a new size; old stores gain the table."""

from __future__ import annotations

import sqlite3

import pytest

from unlearn_core.run.timing import NO_RECORD, estimate, workload, workload_from_spec
from unlearn_core.store.results import ResultsStore
from unlearn_core.store.timings import HOST, TimingRecord, Workload


def _rec(seconds, ckpts=3, params=400_000, items=100, config="c1", created=1.0, analysis="scorecard",
         device="cpu", host=HOST):
    return TimingRecord(analysis, config, seconds, Workload(ckpts, params, items), device, host, created)


def test_no_record_no_number():
    assert estimate([], Workload(3, 10, 10)) is None


def test_scaled_linearly_in_checkpoints_params_and_items():
    rec = _rec(30.0)
    assert estimate([rec], Workload(3, 400_000, 100)).seconds == pytest.approx(30.0)
    assert estimate([rec], Workload(6, 400_000, 100)).seconds == pytest.approx(60.0)
    assert estimate([rec], Workload(3, 4_000_000, 100)).seconds == pytest.approx(300.0)
    assert estimate([rec], Workload(3, 400_000, 50)).seconds == pytest.approx(15.0)
    big = estimate([rec], Workload(4, 4_000_000, 300))
    assert big.seconds == pytest.approx(30.0 * 4 / 3 * 10 * 3) and big.scale == pytest.approx(40.0)
    assert big.describe() == ("about 20 min on this machine (scaled x40 from a recorded run: 3 checkpoints x "
                              "0.4M parameters x 100 items in 30.0 s)")
    assert estimate([rec], rec.workload).describe() == "about 30 s on this machine (a run of this size took 30.0 s)"


def test_the_most_similar_record_is_scaled():
    small, large = _rec(2.0, params=100_000), _rec(500.0, params=50_000_000)
    assert estimate([small, large], Workload(3, 40_000_000, 100)).basis is large
    assert estimate([small, large], Workload(3, 200_000, 100)).basis is small
    other_cfg = _rec(100.0, config="c2")
    same_cfg_far = _rec(10.0, items=1000)
    assert estimate([other_cfg, same_cfg_far], Workload(3, 400_000, 100), "c1").basis is same_cfg_far
    old, new = _rec(10.0, created=1.0), _rec(12.0, created=2.0)
    assert estimate([old, new], old.workload).seconds == pytest.approx(12.0)


def test_store_records_and_filters_by_host_and_device(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        assert store.record_timing("k1", _rec(5.0))
        assert store.record_timing("k2", _rec(7.0, device="cuda"))
        assert store.record_timing("k3", _rec(9.0, host="elsewhere"))
        assert store.record_timing("k4", _rec(1.0, analysis="patching"))
        here = store.timings("scorecard", device="cpu", host=HOST)
        assert [r.seconds for r in here] == [5.0] and here[0] == _rec(5.0)
        assert sorted(r.seconds for r in store.timings("scorecard")) == [5.0, 7.0, 9.0]


def test_a_store_from_before_timings_opens_and_gains_the_table(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE results (key TEXT PRIMARY KEY, analysis TEXT NOT NULL, checkpoints TEXT NOT NULL,
            data_hash TEXT NOT NULL, config_hash TEXT NOT NULL, created REAL NOT NULL, payload BLOB NOT NULL);
        INSERT INTO results VALUES ('k', 'scorecard', '{}', 'd', 'c', 1.0, x'00');
    """)
    con.close()
    with ResultsStore(path) as store:
        assert len(store) == 1 and store.get("k") == b"\x00"
        assert store.timings("scorecard") == []
        assert store.record_timing("k", _rec(3.0))
        assert [r.seconds for r in store.timings("scorecard")] == [3.0]


@pytest.mark.lab
def test_a_computed_analysis_records_its_time_and_the_next_size_is_estimated(tiny_lab, tmp_path, capsys):
    from unlearn_core.analyses.scorecard import ScorecardConfig
    from unlearn_core.cli import _print_estimates
    from unlearn_core.run.audit import cost_estimates, get_analysis, run_analysis
    from unlearn_core.run.workspace import lab_workspace
    from unlearn_core.types import AuditData

    spec = lab_workspace(tiny_lab, unlearned=["ga"])
    models = spec.load_models()
    full = spec.load_data()
    data = AuditData(full.forget, (), full.holdout, full.prompt_format)
    assert workload_from_spec(spec, data) == workload(models, data)  # the page's size (headers) = the CLI's (loaded)
    cfg = ScorecardConfig(generate=False)
    configs = {"scorecard": cfg}
    with ResultsStore(tmp_path / "r.sqlite") as store:
        assert cost_estimates(["scorecard"], models, data, store, configs) == {"scorecard": None}
        _print_estimates(["scorecard"], models, data, store, configs, jobs=1)
        assert f"estimate: scorecard: {NO_RECORD}" in capsys.readouterr().err
        run_analysis(get_analysis("scorecard"), models, data, store, config=cfg)
        (rec,) = store.timings("scorecard")
        assert rec.workload == Workload(3, rec.workload.n_params, len(full.forget) + len(full.holdout))
        assert rec.workload.n_params > 0 and rec.seconds > 0 and rec.device == "cpu" and rec.host == HOST
        assert cost_estimates(["scorecard"], models, data, store, configs) == {}  # stored: nothing to estimate
        run_analysis(get_analysis("scorecard"), models, data, store, config=cfg)
        assert len(store.timings("scorecard")) == 1  # served from the store: not a timing

        half = AuditData(full.forget[: len(full.forget) // 2], (), full.holdout, full.prompt_format)
        est = cost_estimates(["scorecard"], models, half, store, configs)["scorecard"]
        n_half = len(half.forget) + len(half.holdout)
        assert est.basis == rec and est.seconds == pytest.approx(rec.seconds * n_half / rec.workload.n_items)
        _print_estimates(["scorecard"], models, half, store, configs, jobs=1)
        assert "estimate: scorecard: " in (err := capsys.readouterr().err) and "on this machine (scaled x" in err


def test_progress_weights_follow_the_estimates():
    from unlearn_core.run.timing import Estimate, progress_weights

    fast, slow = Estimate(10.0, _rec(10.0)), Estimate(40.0, _rec(40.0))
    # stored analyses come back at once: no share of the bar
    assert progress_weights(["a", "b", "c"], {"a": fast, "c": slow}) == {"a": 10.0, "b": 0.0, "c": 40.0}
    assert progress_weights(["a", "b"], {"a": fast, "b": None}) == {"a": 1.0, "b": 1.0}  # one unknown: equal
    assert progress_weights(["a", "b"], {}) == {"a": 1.0, "b": 1.0}
