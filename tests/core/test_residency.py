"""One checkpoint at a time (issue 14): audits whose checkpoints do not all fit in memory load them when an analysis
reaches them, keep the original, and give exactly the numbers of the all-resident audit."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from unlearn_core.analyses.registry import ANALYSES, get_spec
from unlearn_core.checkpoints import memory
from unlearn_core.checkpoints.memory import memory_estimate, plan_resident
from unlearn_core.checkpoints.residency import OnDemandModel, ReleasedModelError, Residency
from unlearn_core.checkpoints.source import CheckpointError
from unlearn_core.run.workspace import WorkspaceSpec, lab_workspace


def _linear_loader(made: list):
    def load(name, resident):
        torch.manual_seed(len(made))
        m = torch.nn.Linear(4, 4)
        made.append((name, len(resident)))
        return m

    return load


def test_least_recently_used_is_released_and_the_pinned_one_stays():
    made: list = []
    r = Residency(3, _linear_loader(made), pinned=("a",), policy="lru")
    a, b, c = r.get("a"), r.get("b"), r.get("c")
    assert r.get("b") is b  # resident: no reload
    d = r.get("d")  # full: the least recently used unpinned one (c) goes, not the pinned "a" used first
    assert r.resident() == ["a", "b", "d"] and r.peak == 3
    assert c.weight.device.type == "meta", "a released model's memory is freed even though it is still referenced"
    with pytest.raises(ReleasedModelError, match="'c' was released"):
        c(torch.zeros(1, 4))
    c2 = r.get("c")
    assert c2 is not c and c2.weight.device.type == "cpu" and r.loads == {"a": 1, "b": 1, "c": 2, "d": 1}
    assert r.resident() == ["a", "d", "c"] and b.weight.device.type == "meta"  # b was the least recently used
    assert a.weight.device.type == "cpu" and d.weight.device.type == "cpu"
    assert max(n for _, n in made) == 2, "a model is loaded only after room was made for it"
    with pytest.raises(ValueError, match="capacity"):
        Residency(1, _linear_loader([]), pinned=("a",))
    with pytest.raises(ValueError, match="policy"):
        Residency(3, _linear_loader([]), pinned=("a",), policy="fifo")


def _belady_loads(walk: list[str], capacity: int, pinned: str) -> int:
    """Loads of the offline optimum: on a miss with no room, evict the resident whose next use is furthest away."""
    resident, loads = {pinned}, 0
    for i, name in enumerate(walk):
        if name in resident:
            continue
        loads += 1
        if len(resident) >= capacity:
            later = walk[i + 1:]
            resident.remove(max((n for n in resident if n != pinned),
                                key=lambda n: later.index(n) if n in later else len(later)))
        resident.add(name)
    return loads


@pytest.mark.parametrize("capacity", [2, 3, 4, 5])
def test_default_policy_is_optimal_on_the_analyses_cyclic_walks(capacity):
    """Every analysis walks the checkpoints in one order, once or twice (tiny lab, logged per analysis): under LRU a
    walk over more checkpoints than fit misses on every access whatever the capacity; the default (MRU) makes the
    offline optimum's number of loads, at least one load fewer per walk once there is room for two others."""
    others = ["b", "c", "d", "e", "f"]
    walk = ["a"] + [x for rep in (1, 2, 1, 1, 2) for _ in range(rep) for x in others]
    counts = {}
    for policy in ("mru", "lru"):
        r = Residency(capacity, _linear_loader([]), pinned=("a",), policy=policy)
        for name in walk:
            r.get(name)
        counts[policy] = sum(r.loads.values())
        assert r.peak <= capacity and r.loads["a"] == 1
    walks = len(walk) // len(others)
    assert counts["lru"] == 1 + len(others) * walks
    assert counts["mru"] == 1 + _belady_loads(walk[1:], capacity, "a")
    if capacity == 2:  # one slot beside the original: every switch is a load, whatever the policy
        assert counts["mru"] == counts["lru"]
    else:
        assert counts["mru"] <= 1 + len(others) + (walks - 1) * (len(others) - 1)


pytestmark = pytest.mark.lab


def _sizes(infos):
    return [int(b * 1.2) for b in memory.weight_bytes(infos, torch.float32).values()]


def test_plan_keeps_all_when_they_fit_and_as_many_as_fit_otherwise(tiny_lab, monkeypatch):
    spec = lab_workspace(tiny_lab)
    infos = spec.inspect()
    n, per = len(infos), max(_sizes(infos))
    cpu = torch.device("cpu")
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10**12)
    assert plan_resident(infos, cpu, torch.float32) == n
    assert plan_resident(infos, cpu, torch.float32, resident=3) == 3
    # room for the original, two others and one working copy, not for a fifth
    monkeypatch.setattr(memory, "available_bytes", lambda device: int(4.5 * per / 0.8))
    assert plan_resident(infos, cpu, torch.float32) == 3
    assert "one at a time" in memory_estimate(infos, cpu, torch.float32, resident=3)
    assert "at most 3 resident" in memory_estimate(infos, cpu, torch.float32, resident=3)
    with pytest.raises(CheckpointError, match="not enough memory for 4 checkpoints at once"):
        plan_resident(infos, cpu, torch.float32, resident=4)
    monkeypatch.setattr(memory, "available_bytes", lambda device: int(2.5 * per / 0.8))
    with pytest.raises(CheckpointError, match="Even one checkpoint at a time beside the original"):
        plan_resident(infos, cpu, torch.float32)
    with pytest.raises(CheckpointError, match="resident must be an int >= 2"):
        plan_resident(infos, cpu, torch.float32, resident=1)
    with pytest.raises(ValueError, match="resident must be an int >= 2"):
        WorkspaceSpec(original="o", unlearned=(("x", "y"),), forget="f", resident=1)


def test_one_at_a_time_gives_the_numbers_of_the_all_resident_audit(tiny_lab, monkeypatch):
    """Every analysis, on checkpoints loaded and released as the analyses walk them (room for 2: the original and
    one other, chosen by the plan from "free memory"), equals the run with all in memory, table for table."""
    spec = lab_workspace(tiny_lab, unlearned=["suppressed_head", "ga"])
    data = spec.load_data()
    eager = spec.load_models()
    per = max(_sizes(spec.inspect()))
    monkeypatch.setattr(memory, "available_bytes", lambda device: int(3.5 * per / 0.8))
    lazy = spec.load_models()
    assert isinstance(lazy.original, OnDemandModel)
    residency = lazy.original.residency
    assert residency.capacity == 2 and residency.resident() == ["original"]
    assert [lm.hash for lm in lazy.all().values()] == [lm.hash for lm in eager.all().values()]
    for name in ANALYSES:
        s = get_spec(name)
        cfg = s.default_config()
        if name == "relearning":  # one seed: which checkpoints are resident is under test, not the attack's seeds
            cfg = replace(cfg, seeds=1)
        want, got = s.tables(s.compute(eager, data, cfg)), s.tables(s.compute(lazy, data, cfg))
        for key, frame in want.items():
            assert frame.equals(got[key]), (name, key)
    assert residency.peak == 2 and residency.loads["original"] == 1
    assert all(residency.loads[n] > 1 for n in ("suppressed_head", "ga", "retain_only"))


def test_cli_resident_flag(tiny_lab, tmp_path, capsys):
    from unlearn_core.cli import main

    base = ["audit", "--lab", str(tiny_lab), "--analyses", "patching"]
    assert main([*base, "--out", str(tmp_path / "a"), "--resident", "1"]) == 2
    assert "resident must be an int >= 2" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "b"), "--resident", "2"]) == 0
    err = capsys.readouterr().err
    assert "one at a time" in err and "at most 2 resident" in err
    assert (tmp_path / "b" / "patching_uds.csv").exists()
