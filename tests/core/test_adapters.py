"""PEFT LoRA adapters as checkpoints: a real adapter (gradient ascent with peft on the tiny lab's original) loads
merged, hashes with its base, refuses a wrong base or pickle weights, and audits like the merged full model."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.fixtures.checkpoints import random_gpt2, train_lora_ga
from unlearn_core.checkpoints.adapters import checkpoint_hash, describe, is_adapter_folder
from unlearn_core.checkpoints.inspect import inspect_checkpoint
from unlearn_core.checkpoints.load import load_model
from unlearn_core.checkpoints.memory import pick_device
from unlearn_core.checkpoints.source import CheckpointError
from unlearn_core.run.workspace import WorkspaceSpec

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def adapter(tiny_lab, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "adapter"
    recorded = train_lora_ga(tiny_lab, out, steps=8, lr=3e-3)
    return out, recorded


def _copy(src, dst, **cfg_changes):
    shutil.copytree(src, dst)
    if cfg_changes:
        cfg = json.loads((dst / "adapter_config.json").read_text())
        cfg.update(cfg_changes)
        (dst / "adapter_config.json").write_text(json.dumps(cfg))
    return dst


def _load(info):
    device, dtype = pick_device("cpu")
    return load_model(info, "lora", "unlearned", device, dtype)


def test_real_training_moved_the_forget_set(adapter):
    _path, recorded = adapter
    assert recorded[8] < 0.75, recorded  # the original answers all 16; a few LoRA ascent steps took some away


def test_adapter_inspects_with_its_base_and_loads_merged(adapter, tiny_lab):
    path, _ = adapter
    assert is_adapter_folder(path) and not is_adapter_folder(tiny_lab / "original")
    assert not is_adapter_folder(path / "adapter_config.json")
    info = inspect_checkpoint(path, original=tiny_lab / "original")
    base = inspect_checkpoint(tiny_lab / "original")
    a = info.adapter
    assert a is not None and a.rank == 4 and a.base_from == "adapter config"
    assert describe(info).startswith("LoRA rank 4 on ") and "original" in describe(info)
    assert describe(base).startswith("gpt2 model")
    lora = load_file(path / "adapter_model.safetensors")
    n_lora = sum(t.numel() for t in lora.values())
    assert info.n_params == base.n_params + n_lora  # the memory estimate counts the base, not just the adapter
    assert info.shapes == base.shapes and info.vocab == base.vocab

    loaded = _load(info)
    assert loaded.hash == checkpoint_hash(path, tiny_lab / "original") and loaded.path == str(path)
    merged = loaded.model.state_dict()
    w0 = load_file(tiny_lab / "original" / "model.safetensors")
    scaling = a.alpha / a.rank
    checked = 0
    for key, A in lora.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
        B = lora[key.replace("lora_A", "lora_B")]
        delta = (B @ A).T * scaling  # GPT-2 Conv1D stores [in, out] (fan_in_fan_out)
        assert delta.abs().max() > 0  # the adapter was trained, not left at B = 0
        torch.testing.assert_close(merged[module + ".weight"], w0[module + ".weight"] + delta, rtol=1e-5, atol=1e-6)
        checked += 1
    assert checked == 4 * 3  # attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj in each of the 3 blocks
    # everything the adapter does not touch is the base, bit for bit
    assert torch.equal(merged["transformer.wte.weight"], w0["transformer.wte.weight"])


def test_hash_covers_adapter_files_and_base(adapter, tiny_lab, tmp_path):
    path, _ = adapter
    h = checkpoint_hash(path, tiny_lab / "original")
    moved = _copy(path, tmp_path / "moved")
    assert checkpoint_hash(moved, tiny_lab / "original") == h  # content, not location
    alpha = _copy(path, tmp_path / "alpha", lora_alpha=16)
    assert checkpoint_hash(alpha, tiny_lab / "original") != h
    weights = _copy(path, tmp_path / "weights")
    state = load_file(weights / "adapter_model.safetensors")
    k = next(k for k in state if "lora_B" in k)
    state[k] = state[k] + 1e-3
    save_file(state, weights / "adapter_model.safetensors")
    assert checkpoint_hash(weights, tiny_lab / "original") not in (h, checkpoint_hash(alpha, tiny_lab / "original"))
    # the same adapter files on another base: another model, another key
    orphan = _copy(path, tmp_path / "orphan", base_model_name_or_path="/nonexistent/base")
    on_original = checkpoint_hash(orphan, tiny_lab / "original")
    on_retain = checkpoint_hash(orphan, tiny_lab / "retain_only")
    assert on_original != on_retain


def test_adapter_with_the_base_config_beside_it_is_still_an_adapter(adapter, tiny_lab, tmp_path):
    path, _ = adapter
    both = _copy(path, tmp_path / "with_config")
    shutil.copy(tiny_lab / "original" / "config.json", both / "config.json")
    assert is_adapter_folder(both) and inspect_checkpoint(both, original=tiny_lab / "original").adapter is not None
    shutil.copy(tiny_lab / "original" / "model.safetensors", both / "model.safetensors")
    assert not is_adapter_folder(both)  # full weights beside it: a full model that also keeps its adapter


def test_base_not_found_falls_back_to_the_original_or_says_so(adapter, tiny_lab, tmp_path):
    path, _ = adapter
    orphan = _copy(path, tmp_path / "orphan", base_model_name_or_path="/nonexistent/base")
    with pytest.raises(CheckpointError, match="not available locally"):
        inspect_checkpoint(orphan)
    info = inspect_checkpoint(orphan, original=tiny_lab / "original")
    assert info.adapter.base_from == "original" and describe(info) == "LoRA rank 4 on the original (original)"


def test_wrong_base_is_a_clear_error_and_loads_nothing(adapter, tiny_lab, tmp_path, monkeypatch):
    path, _ = adapter
    narrow = random_gpt2(tmp_path / "narrow", tiny_lab / "original", n_embd=32)
    wrong = _copy(path, tmp_path / "wrong", base_model_name_or_path=str(narrow))
    with pytest.raises(CheckpointError) as exc:
        inspect_checkpoint(wrong, original=tiny_lab / "original")
    msg = str(exc.value)
    assert "does not fit its base" in msg and "transformer.h.0.attn.c_attn" in msg and "[4, 64]" in msg, msg

    import transformers

    calls = []
    real = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: calls.append(a) or real(*a, **k))
    spec = WorkspaceSpec(original=str(tiny_lab / "original"), unlearned=(("lora", str(wrong)),),
                         forget=str(tiny_lab / "data" / "forget.jsonl"), device="cpu")
    with pytest.raises(CheckpointError, match="does not fit its base"):
        spec.load_models()
    assert calls == []  # refused from headers: not even the original was loaded


def test_adapter_tokenizer_with_another_vocabulary_is_refused(adapter, tiny_lab, tmp_path):
    from transformers import AutoTokenizer

    path, _ = adapter
    wrong = _copy(path, tmp_path / "vocab")
    tok = AutoTokenizer.from_pretrained(tiny_lab / "original")
    tok.add_tokens(["<zq1>", "<zq2>"])
    tok.save_pretrained(wrong)
    with pytest.raises(CheckpointError, match="tokenizer has 514 tokens, the base's 512"):
        inspect_checkpoint(wrong, original=tiny_lab / "original")


def test_pickle_only_adapter_refused_unless_allowed(adapter, tiny_lab, tmp_path):
    path, _ = adapter
    pk = _copy(path, tmp_path / "pickle")
    state = load_file(pk / "adapter_model.safetensors")
    torch.save(state, pk / "adapter_model.bin")
    (pk / "adapter_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="pickle file .*adapter_model.bin.* allow_pickle=True"):
        inspect_checkpoint(pk, original=tiny_lab / "original")
    info = inspect_checkpoint(pk, allow_pickle=True, original=tiny_lab / "original")
    assert info.adapter.weight_format == "pickle"
    safe = _load(inspect_checkpoint(path, original=tiny_lab / "original"))
    pickled = _load(info)
    for k, v in safe.model.state_dict().items():
        assert torch.equal(v, pickled.model.state_dict()[k]), k


def test_cli_audits_an_adapter_like_its_merged_full_model(adapter, tiny_lab, tmp_path, capsys):
    """Done means: auditing the adapter gives the numbers of auditing the merged full model."""
    from unlearn_core.cli import main

    path, _ = adapter
    loaded = _load(inspect_checkpoint(path, original=tiny_lab / "original"))
    full = tmp_path / "merged_full"
    loaded.model.save_pretrained(full)
    loaded.tokenizer.save_pretrained(full)
    out = tmp_path / "out"
    args = ["audit", "--original", str(tiny_lab / "original"), "--unlearned", f"lora={path}",
            "--unlearned", f"full={full}", "--forget", str(tiny_lab / "data" / "forget.jsonl"),
            "--retain", str(tiny_lab / "data" / "retain.jsonl"), "--holdout", str(tiny_lab / "data" / "holdout.jsonl"),
            "--retain-model", str(tiny_lab / "retain_only"), "--out", str(out), "--analyses", "scorecard,decodability",
            "--device", "cpu"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "lora: LoRA rank 4 on " in err
    report = json.loads((out / "report.json").read_text())
    lora, merged = report["checkpoints"]["lora"], report["checkpoints"]["full"]
    assert lora["hash"] != merged["hash"]  # two keys in the store, computed independently
    assert set(lora["scores"]) == set(merged["scores"]) and len(lora["scores"]) > 5
    for k, v in lora["scores"].items():
        if v is None:
            assert merged["scores"][k] is None, k
        else:
            assert v == pytest.approx(merged["scores"][k], rel=1e-4, abs=1e-5), k
    assert lora["scores"]["forget_acc"] < report["checkpoints"]["original"]["scores"]["forget_acc"]
    # the calibrated retention evidence and the verdict agree too
    assert lora["verdict"] == merged["verdict"] and lora["retention_from"] == merged["retention_from"] != ""
    assert lora["retention"] == pytest.approx(merged["retention"], abs=1e-6)
    interval = [merged["retention_lo"], merged["retention_hi"]]
    interval = [merged["retention_lo"], merged["retention_hi"]]
    assert [lora["retention_lo"], lora["retention_hi"]] == pytest.approx(interval, abs=1e-6)
    assert lora["deciding_axis"] == merged["deciding_axis"]
    assert set(lora["evidence"]) == set(merged["evidence"]) and lora["evidence"]


def test_under_a_workspace_root_a_base_outside_it_is_not_read(adapter, tiny_lab, tmp_path, monkeypatch):
    path, _ = adapter
    inside = _copy(path, tmp_path / "root" / "adapter", base_model_name_or_path=str(tiny_lab / "original"))
    assert inspect_checkpoint(inside, original=tiny_lab / "retain_only").adapter.base_from == "adapter config"
    monkeypatch.setenv("UNLEARN_AUDIT_ROOT", str(tmp_path / "root"))
    info = inspect_checkpoint(inside, original=tiny_lab / "retain_only")  # the original passed the caller's guard
    assert info.adapter.base_from == "original" and info.adapter.base_path == str(tiny_lab / "retain_only")
    with pytest.raises(CheckpointError, match="outside the workspace root"):
        inspect_checkpoint(inside)
