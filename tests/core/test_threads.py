"""The CPU thread policy: one thread for small models while an analysis runs, restored afterwards."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from unlearn_core.model.threads import SMALL_MODEL_PARAMS, few_threads, model_params
from unlearn_core.types import LoadedModel, ModelSet


def _set(n_features: int) -> ModelSet:
    lm = LoadedModel("original", "original", torch.nn.Linear(n_features, 1000), None, "", "h")
    return ModelSet(lm, {})


def test_small_models_run_on_one_thread_and_the_count_is_restored():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with few_threads(model_params(_set(10))):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        big = model_params(_set(SMALL_MODEL_PARAMS // 1000 + 1))
        assert big > SMALL_MODEL_PARAMS
        with few_threads(big):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _in_thread(fn):
    import threading

    errors = []

    def run():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - reported in the main thread
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t, errors


def test_overlapping_sessions_neither_undo_the_policy_early_nor_leave_it_behind():
    """Two 'sessions' (threads) overlap: A enters, B enters, A leaves while B still runs, then B leaves. With the old
    save/restore per block, B ran its rest on 2 threads and the process was left on 1 thread afterwards."""
    import threading

    from unlearn_core.model.threads import active_users

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    a_in, b_in, a_out, b_check = threading.Event(), threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def session_a():
        with few_threads(10):
            a_in.set()
            assert b_in.wait(10)
            seen["a"] = torch.get_num_threads()
        a_out.set()

    def session_b():
        assert a_in.wait(10)
        with few_threads(10):
            b_in.set()
            assert a_out.wait(10)
            seen["b_after_a_left"] = torch.get_num_threads()
            seen["users"] = active_users()
            b_check.set()

    try:
        (ta, ea), (tb, eb) = _in_thread(session_a), _in_thread(session_b)
        ta.join(20)
        tb.join(20)
        assert not ea and not eb, ea + eb
        assert seen == {"a": 1, "b_after_a_left": 1, "users": 1}
        assert active_users() == 0
        assert torch.get_num_threads() == 2  # the configured count is back once the last one left
    finally:
        torch.set_num_threads(before)


def test_nested_blocks_and_an_exception_restore_the_count():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with few_threads(10):
            with few_threads(10):
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1  # the outer block is still running
        assert torch.get_num_threads() == 2
        try:
            with few_threads(10):
                raise RuntimeError("analysis failed")
        except RuntimeError:
            pass
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_forward_hook_of_one_session_never_reaches_another_sessions_forward_pass():
    """Loaded models are shared by all browser sessions: while one analysis has a noise hook on a block, another
    analysis' forward pass through the same block must wait, or it silently gets that noise."""
    import threading

    from unlearn_core.model.threads import models_in_use

    torch.manual_seed(0)
    ms = _set(8)
    layer = ms.original.model
    x = torch.randn(4, 8)
    clean = layer(x).detach()
    hooked, release = threading.Event(), threading.Event()
    got, waits = {}, []

    def noisy_session():
        with models_in_use(ms):
            h = layer.register_forward_hook(lambda _m, _i, out: out + 100.0)
            hooked.set()
            release.wait(10)
            h.remove()

    def scoring_session():
        assert hooked.wait(10)
        with models_in_use(ms, progress=lambda f, msg: (waits.append(msg), release.set())):
            got["out"] = layer(x).detach()

    ta, ea = _in_thread(noisy_session)
    tb, eb = _in_thread(scoring_session)
    ta.join(20)
    tb.join(20)
    assert not ea and not eb, ea + eb
    assert torch.equal(got["out"], clean)  # computed after the other session's hook was gone
    assert waits and "waiting for another session" in waits[0]


def test_waiting_for_the_models_can_be_cancelled_and_nesting_does_not_deadlock():
    import threading

    from unlearn_core.model.threads import models_in_use

    ms = _set(8)
    held, done = threading.Event(), threading.Event()

    def holder():
        with models_in_use(ms):
            with models_in_use(ms):  # the same thread nests (reentrant)
                held.set()
                done.wait(10)

    t, errors = _in_thread(holder)
    assert held.wait(10)

    def stop(_f, _msg):
        raise KeyboardInterrupt("Stop clicked")

    try:
        with pytest.raises(KeyboardInterrupt):
            with models_in_use(ms, progress=stop, poll_s=0.05):
                pass
    finally:
        done.set()
        t.join(10)
    assert not errors
    with models_in_use(ms):  # free again once the holder left
        pass


@pytest.mark.lab
def test_two_analyses_at_once_on_shared_models_give_the_numbers_they_give_alone(tiny_lab):
    """Perturbation (noise hooks on the blocks) and quantization run in two threads on ONE loaded ModelSet, as two
    browser sessions do; each result equals the one computed alone."""
    import threading

    from unlearn_core.run.audit import get_analysis, run_analysis
    from unlearn_core.run.workspace import lab_workspace

    spec = lab_workspace(tiny_lab, unlearned=["ga"], device="cpu")
    ms, data = spec.load_models(), spec.load_data()
    names = ("perturbation", "quantization")
    alone = {n: get_analysis(n).tables(run_analysis(get_analysis(n), ms, data, None)[0]) for n in names}
    together, start = {}, threading.Barrier(2)

    def session(name):
        start.wait(10)
        together[name] = get_analysis(name).tables(run_analysis(get_analysis(name), ms, data, None)[0])

    threads = [_in_thread(lambda n=n: session(n)) for n in names]
    for t, errors in threads:
        t.join(300)
        assert not errors, errors
    for n in names:
        assert alone[n].keys() == together[n].keys()
        for table in alone[n]:
            pd.testing.assert_frame_equal(alone[n][table], together[n][table], check_exact=False, rtol=1e-6)
