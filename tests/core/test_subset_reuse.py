"""Results reused for any subset of a stored set of checkpoints (issue 35): an analysis that declares `restrict`
serves fewer checkpoints, or the same set without the retain-only reference, from a stored superset, and what it
serves is what computing on the subset gives, to the last byte of the stored payload."""

from __future__ import annotations

from dataclasses import replace

import pytest

from unlearn_core.analyses import registry
from unlearn_core.run.jobs import checkpoints_to_compute, plan_for, run_or_serve, serve, stored
from unlearn_core.run.workspace import lab_workspace
from unlearn_core.store.codec import encode_result
from unlearn_core.store.results import ResultsStore
from unlearn_core.types import ModelSet

pytestmark = pytest.mark.lab

RESTRICTABLE = [s.name for s in registry.specs() if s.restrict is not None]


@pytest.fixture(scope="module")
def lab(tiny_lab):
    ws = lab_workspace(tiny_lab)
    models, data = ws.load_models(), ws.load_data()
    full = ModelSet(models.original, {n: models.unlearned[n] for n in ("ga", "suppressed_head")}, models.retain_only)
    sub = ModelSet(models.original, {"suppressed_head": models.unlearned["suppressed_head"]})  # no reference
    return full, sub, data


def test_the_default_evidence_set_is_restrictable():
    assert set(registry.DEFAULT_EVIDENCE_SET) <= set(RESTRICTABLE)


@pytest.mark.parametrize("name", RESTRICTABLE)
def test_a_restricted_result_is_the_subset_computed(lab, name, tmp_path):
    full, sub, data = lab
    store = ResultsStore(tmp_path / "r.sqlite")
    computed = []

    def loader(ms):
        def load():
            computed.append(ms)
            return ms
        return load

    big = plan_for(name, full, data)
    run_or_serve(big, loader(full), data, store)
    small = plan_for(name, sub, data)
    assert small.key != big.key and stored(small, store)
    served, from_store = run_or_serve(small, loader(sub), data, store)
    assert from_store and computed == [full], "the subset was served from the stored superset, nothing computed"
    fresh, _ = run_or_serve(small, sub, data, None)  # computed as the audit computes (its thread count too)
    assert encode_result(served) == encode_result(fresh)
    # a checkpoint the stored set lacks (here: the original's weights under another name) is not served
    other = ModelSet(full.original, {"npo": replace(full.original, name="npo", role="unlearned")})
    assert not stored(plan_for(name, other, data), store) and serve(plan_for(name, other, data), store) is None


def _sorted_tables(spec, result) -> dict:
    import pandas as pd

    out = {}
    for name, df in spec.tables(result).items():
        df = df.reset_index(drop=True)
        keys = [c for c in df.columns if df[c].map(lambda v: isinstance(v, str | int | float)).all()]
        out[name] = df.sort_values(keys, kind="stable").reset_index(drop=True) if keys else df
        assert isinstance(out[name], pd.DataFrame)
    return out


@pytest.mark.parametrize("name", RESTRICTABLE)
def test_a_grown_set_computes_only_the_new_checkpoint(lab, name, tmp_path):
    """{original, ga, reference} stored; {original, ga, suppressed_head, reference} computes suppressed_head only
    (with the original and the reference) and merges: every table equal to computing the whole set."""
    import pandas as pd

    full, _sub, data = lab
    store = ResultsStore(tmp_path / "r.sqlite")
    part = ModelSet(full.original, {"ga": full.unlearned["ga"]}, full.retain_only)
    run_or_serve(plan_for(name, part, data), part, data, store)
    calls = []
    spec = registry.get_spec(name)

    def counting(ms, data, config, progress=None):
        calls.append(sorted(ms.all()))
        return spec.compute(ms, data, config, progress=progress)

    job = plan_for(name, full, data)
    job = replace(job, spec=replace(job.spec, compute=counting))
    # what the time estimate scales with: the new checkpoint with the original and the reference, not all four
    assert checkpoints_to_compute(job, store) == 3 and checkpoints_to_compute(job, ResultsStore(tmp_path / "e")) == 4
    grown, from_store = run_or_serve(job, full, data, store)
    assert not from_store and calls == [sorted(["original", "suppressed_head", "retain_only"])], calls
    whole, _ = run_or_serve(plan_for(name, full, data), full, data, None)
    got, want = _sorted_tables(spec, grown), _sorted_tables(spec, whole)
    assert list(got) == list(want)
    for t in want:
        pd.testing.assert_frame_equal(got[t], want[t], check_exact=False, rtol=1e-6, obj=f"{name}.{t}")
    assert spec.scores(grown, "suppressed_head") == pytest.approx(spec.scores(whole, "suppressed_head"), nan_ok=True)
    # the grown set is now stored whole: asked again, nothing is computed
    assert run_or_serve(job, full, data, store)[1] and len(calls) == 1


@pytest.mark.parametrize("name", ["relearning", "scorecard"])
def test_parts_computed_apart_are_served_whole(tiny_lab, name, tmp_path):
    """An analysis split over processes (run.parallel.split_tasks) stores one result per part, each part with the
    original and the reference; the whole set is then `stored`, served with nothing computed, kept whole, and its
    tables equal computing the whole set at once."""
    import pandas as pd

    ws = lab_workspace(tiny_lab)
    models, data = ws.load_models(), ws.load_data()
    names = ("ga", "suppressed_head", "retrained")
    full = ModelSet(models.original, {n: models.unlearned[n] for n in names}, models.retain_only)
    store = ResultsStore(tmp_path / "r.sqlite")
    for part in (names[:2], names[2:]):
        ms = ModelSet(full.original, {n: full.unlearned[n] for n in part}, full.retain_only)
        run_or_serve(plan_for(name, ms, data), ms, data, store)
    job = plan_for(name, full, data)
    assert store.get(job.key) is None and stored(job, store) and checkpoints_to_compute(job, store) == 2

    def fail():
        raise AssertionError("computed: the parts should have served it")

    served, from_store = run_or_serve(job, fail, data, store)
    assert from_store and store.get(job.key) is not None  # kept whole
    spec = registry.get_spec(name)
    whole, _ = run_or_serve(plan_for(name, full, data), full, data, None)
    got, want = _sorted_tables(spec, served), _sorted_tables(spec, whole)
    assert list(got) == list(want)
    for t in want:
        pd.testing.assert_frame_equal(got[t], want[t], check_exact=False, rtol=1e-6, obj=f"{name}.{t}")


def test_split_tasks_splits_the_critical_path_only_where_it_pays():
    from unlearn_core.run.parallel import split_tasks, task_label

    names = [f"m{i}" for i in range(8)]  # 8 unlearned + the original and the reference
    # the SmolLM2 CI lab's records (stop 41) with 3 relearning seeds: relearning ~5900 s, the rest 1725 s
    est = {"relearning": 5900.0, "scorecard": 573.0, "patching": 637.0, "decodability": 314.0, "update_revert": 200.0}
    order = list(est)
    tasks = split_tasks(order, 2, names, est)
    assert tasks[:2] == [("relearning", tuple(names[0::2])), ("relearning", tuple(names[1::2]))]
    assert tasks[2:] == [(a, None) for a in order[1:]]
    assert task_label(tasks[1], tasks) == "relearning (part 2 of 2: m1, m3, m5, m7)"
    # one seed (1971 s against 1724 s of the rest): the fixed models' share eats the gain
    assert split_tasks(order, 2, names, {**est, "relearning": 1971.0})[0] == ("relearning", None)
    # no records, one process, one checkpoint, or an analysis whose checkpoints are not independent: no split
    assert split_tasks(order, 2, names) == [(a, None) for a in order]
    assert split_tasks(order, 1, names, est)[0] == ("relearning", None)
    assert split_tasks(order, 2, ["m0"], est)[0] == ("relearning", None)
    assert split_tasks(["attribution", "scorecard"], 2, names, {"attribution": 900.0, "scorecard": 1.0})[0] == (
        "attribution", None)
