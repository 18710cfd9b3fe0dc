"""The CPU thread policy: one thread for small models while an analysis runs, restored afterwards."""

from __future__ import annotations

import torch

from unlearn_core.threads import SMALL_MODEL_PARAMS, few_threads, model_params
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

    from unlearn_core.threads import active_users

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
