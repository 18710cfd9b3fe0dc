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
