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
