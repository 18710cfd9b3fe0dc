"""Loading is where users first meet the tool: wrong folders must be refused with a message naming the difference."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from unlearn_core.checkpoints import load, memory
from unlearn_core.checkpoints.inspect import inspect_checkpoint
from unlearn_core.checkpoints.source import CheckpointError, IncompatibleCheckpoints
from unlearn_core.run.workspace import WorkspaceSpec, lab_workspace

pytestmark = pytest.mark.lab


def _spec(tiny_lab, other, **kw):
    return WorkspaceSpec(original=str(tiny_lab / "original"), unlearned=(("x", str(other)),),
                         forget=str(tiny_lab / "data" / "forget.jsonl"), **kw)


def test_lab_workspace_loads_every_checkpoint(tiny_lab):
    spec = lab_workspace(tiny_lab)
    models = spec.load_models()
    data = spec.load_data()
    # every audited checkpoint of lab.json; the pretrained base and the reference are not "unlearned"
    assert set(models.unlearned) == {"ga", "graddiff", "npo", "rmu", "suppressed_head", "suppressed_lowrank",
                                     "retrained", "non_twin", "over_unlearned"}
    assert models.retain_only is not None and models.retain_only.role == "retain_only"
    assert len(data.forget) > 0 and len(data.retain) > len(data.forget) and len(data.holdout) > 0
    assert not any(p.requires_grad for p in models.original.model.parameters())
    assert models.original.hash != models.unlearned["ga"].hash


def test_other_vocabulary_is_refused_with_the_difference(tiny_lab, tmp_path):
    other = tmp_path / "other_vocab"
    shutil.copytree(tiny_lab / "ga", other)
    tok = AutoTokenizer.from_pretrained(other)
    tok.add_tokens(["<extra_token_a>", "<extra_token_b>"])
    tok.save_pretrained(other)
    expected = r"vocabulary differs: \d+ vs \d+ tokens \(0 only in the first, 2"
    with pytest.raises(IncompatibleCheckpoints, match=expected):
        _spec(tiny_lab, other).inspect()


def test_other_architecture_is_refused_with_the_difference(tiny_lab, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_lab / "original")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4)
    other = tmp_path / "llama"
    LlamaForCausalLM(cfg).save_pretrained(other)
    tok.save_pretrained(other)
    with pytest.raises(IncompatibleCheckpoints, match="architecture differs: gpt2.*vs llama"):
        _spec(tiny_lab, other).inspect()


def test_pickle_weights_refused_unless_opted_in(tiny_lab, tmp_path):
    from safetensors.torch import load_file

    other = tmp_path / "pickled"
    shutil.copytree(tiny_lab / "ga", other)
    state = load_file(str(other / "model.safetensors"))
    (other / "model.safetensors").unlink()
    torch.save(state, other / "pytorch_model.bin")
    assert not list(other.glob("*.safetensors"))
    with pytest.raises(CheckpointError, match="pickle"):
        inspect_checkpoint(other)
    assert inspect_checkpoint(other, allow_pickle=True).weight_format == "pickle"


def test_missing_folder_and_missing_config(tiny_lab, tmp_path):
    with pytest.raises(CheckpointError, match="folder not found"):
        inspect_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        inspect_checkpoint(tmp_path / "empty")


def test_model_too_big_for_memory_is_refused_before_loading(tiny_lab, monkeypatch):
    spec = lab_workspace(tiny_lab)
    infos = spec.inspect()
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1000)
    with pytest.raises(CheckpointError, match=r"not enough memory on cpu: .* only 0.0 GiB is free"):
        memory.check_memory(infos, torch.device("cpu"), torch.float32)


def test_remote_code_is_not_trusted_by_default(tiny_lab, tmp_path):
    import json

    other = tmp_path / "remote"
    shutil.copytree(tiny_lab / "ga", other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.Evil"}
    (other / "config.json").write_text(json.dumps(cfg))
    info = inspect_checkpoint(other)
    with pytest.raises(CheckpointError, match="custom code"):
        load.load_model(info, "x", "unlearned", torch.device("cpu"), torch.float32)


def test_planted_truth_follows_folders_not_names(tiny_lab, tmp_path):
    from dataclasses import replace

    from unlearn_core.run.workspace import planted_truth

    spec = lab_workspace(tiny_lab, unlearned=["suppressed_head", "retrained", "npo"])
    renamed = replace(spec, unlearned=(("mine", str(tiny_lab / "suppressed_lowrank")),
                                       ("again", str(tiny_lab / "retain_only"))))
    assert planted_truth(spec) == {"suppressed_head": "suppressed", "retrained": "deleted",
                                   "retain_only": "deleted"}  # npo has no ground truth
    assert planted_truth(renamed) == {"mine": "suppressed", "again": "deleted", "retain_only": "deleted"}
    elsewhere = replace(spec, original=str(tmp_path / "original"))  # real checkpoints: no lab.json beside them
    assert planted_truth(elsewhere) == {}


def test_loaded_gpt2_runs_the_fused_gelu_with_the_same_outputs(tiny_lab):
    """GPT-2's Python-composed tanh GELU is swapped for the fused kernel at load time; the logits must not move
    beyond float rounding, and nothing else may be replaced."""
    from transformers import AutoModelForCausalLM
    from transformers.activations import GELUTanh, NewGELUActivation

    from unlearn_core.model import arch

    loaded = lab_workspace(tiny_lab, unlearned=["ga"]).load_models().original.model
    assert not any(isinstance(m, NewGELUActivation) for m in loaded.modules())
    n_blocks = arch.n_layers(loaded)
    assert sum(isinstance(m, GELUTanh) for m in loaded.modules()) == n_blocks
    plain = AutoModelForCausalLM.from_pretrained(tiny_lab / "original").eval()
    assert sum(isinstance(m, NewGELUActivation) for m in plain.modules()) == n_blocks
    ids = torch.randint(2, plain.config.vocab_size, (3, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = plain(input_ids=ids).logits
        assert arch.fuse_activations(plain) == n_blocks
        after = plain(input_ids=ids).logits
    assert torch.allclose(before, after, atol=1e-5, rtol=0)
    assert torch.equal(after, loaded(input_ids=ids).logits)
    assert arch.fuse_activations(plain) == 0  # nothing left to replace
