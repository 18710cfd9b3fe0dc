"""The demo lab is the ground truth every audit is tested against: check the truths it plants."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from unlearn_core.lab.build import CHECKPOINTS, build_lab
from unlearn_core.lab.config import get_config

pytestmark = pytest.mark.lab


def _meta(lab):
    return json.loads((lab / "lab.json").read_text())


def test_layout_is_hugging_face_folders(tiny_lab):
    for name in CHECKPOINTS:
        assert (tiny_lab / name / "config.json").exists()
        assert list((tiny_lab / name).glob("*.safetensors")), name
        assert (tiny_lab / name / "tokenizer.json").exists()
    for split in ("forget", "retain", "holdout"):
        assert (tiny_lab / "data" / f"{split}.jsonl").stat().st_size > 0


def test_original_knows_forget_and_retain(tiny_lab):
    s = _meta(tiny_lab)["checkpoints"]["original"]["scores"]
    assert s["forget_acc"] >= 0.9 and s["retain_acc"] >= 0.9


def test_retain_only_never_learned_forget_facts(tiny_lab):
    s = _meta(tiny_lab)["checkpoints"]["retain_only"]["scores"]
    assert s["forget_acc"] <= 0.15 and s["retain_acc"] >= 0.9


@pytest.mark.parametrize("method", ["ga", "graddiff", "npo", "rmu", "suppressed_head"])
def test_every_method_meets_stop_rule_and_retain_floor(tiny_lab, method):
    meta = _meta(tiny_lab)
    c = meta["checkpoints"][method]
    assert c["training"]["stopped_by"] == "rule", c["training"]
    assert c["scores"]["forget_acc"] <= meta["unlearn"]["stop_forget_acc"]
    floor = meta["unlearn"]["ga_retain_floor"] if method == "ga" else meta["unlearn"]["retain_floor"]
    assert c["scores"]["retain_acc"] >= floor, (method, c["scores"])


@pytest.mark.parametrize("lab_fixture", ["tiny_lab", "tiny_llama_lab"])
def test_suppressed_head_changes_only_last_block_and_head(lab_fixture, request):
    """Byte-identical weights outside the last block, final norm and head; names resolved through the model."""
    from transformers import AutoModelForCausalLM

    from unlearn_core import arch

    lab = request.getfixturevalue(lab_fixture)
    orig = load_file(str(lab / "original" / "model.safetensors"))
    supp = load_file(str(lab / "suppressed_head" / "model.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(lab / "original")
    head_ids = {id(p) for p in arch.head_parameters(model)}
    head_names = {n for n, p in model.named_parameters() if id(p) in head_ids}
    changed = {k for k in orig if not torch.equal(orig[k], supp[k])}
    assert changed, "suppressed_head must differ from original somewhere"
    assert changed <= head_names, f"changed outside the last block/head: {sorted(changed - head_names)[:3]}"
    assert len(orig) > len(head_names)


def test_llama_lab_meets_the_same_ground_truth(tiny_llama_lab):
    meta = _meta(tiny_llama_lab)
    assert meta["arch"] == "llama"
    c = meta["checkpoints"]
    assert c["original"]["scores"]["forget_acc"] >= 0.9 and c["retain_only"]["scores"]["forget_acc"] <= 0.15
    for method in ("graddiff", "npo", "rmu", "suppressed_head"):
        assert c[method]["scores"]["forget_acc"] <= meta["unlearn"]["stop_forget_acc"], method


def test_build_is_cached_by_config_hash(tiny_lab):
    before = (tiny_lab / "lab.json").stat().st_mtime_ns
    meta = build_lab(tiny_lab, "tiny", verbose=False)
    assert (tiny_lab / "lab.json").stat().st_mtime_ns == before
    assert meta["config_hash"] == get_config("tiny").hash


def test_build_is_deterministic(tiny_lab, tmp_path):
    """Two builds from the same seed give byte-identical original weights (and the same forget split)."""
    cfg = get_config("tiny", max_epochs=5, unlearn=get_config("tiny").unlearn.__class__(max_steps=2))
    a = build_lab(tmp_path / "a", cfg, verbose=False)
    b = build_lab(tmp_path / "b", cfg, verbose=False)
    wa = load_file(str(tmp_path / "a" / "original" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "original" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["world"]["forget_entities"] == b["world"]["forget_entities"]


def test_retain_only_is_a_retrain_from_its_own_init(tiny_lab):
    """The deletion reference shares the world and the recipe, not the random init (see LabConfig.retain_only_init)."""
    meta = _meta(tiny_lab)
    assert meta["retain_only_init"] == "independent"
    assert meta["checkpoints"]["retain_only"]["training"]["init_seed"] == meta["seed"] + 1
    assert meta["checkpoints"]["original"]["training"]["init_seed"] == meta["seed"]
    shared = get_config("tiny", retain_only_init="shared")
    assert shared.retain_only_seed == shared.seed and shared.hash != get_config("tiny").hash
    with pytest.raises(ValueError):
        get_config("tiny", retain_only_init="pretrained")
