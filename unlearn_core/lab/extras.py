"""The demo lab's checkpoints as researchers have them: a LoRA adapter (peft) and a Hugging Face Trainer-style
series of `checkpoint-N/` folders, each from REAL gradient ascent on the forget set starting at the lab's original.
Kept in the lab's `extras/` folder, outside the config hash, so adding them never rebuilds a lab.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from unlearn_core.data.items import PromptFormat
from unlearn_core.data.sets import load_items
from unlearn_core.model.forward import answer_logprob_sums
from unlearn_core.model.scoring import encode, pad_id_of, score_encoded
from unlearn_core.model.threads import few_threads

# every linear map inside the blocks, by family (GPT-2's are Conv1D: fan_in_fan_out)
LORA_TARGETS = {"gpt2": ("c_attn", "c_fc", "c_proj"),
                "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                "gpt_neox": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")}
EXTRAS = "extras"  # lab folder of the checkpoints as researchers have them (not audited by default)


def _forget(lab: Path, tok):
    meta = json.loads((lab / "lab.json").read_text())
    fmt = PromptFormat(meta.get("prompt_template", PromptFormat.template))
    items = load_items(lab / meta["data"]["forget"]).items
    pairs = [fmt.pair(it) for it in items]
    return encode(tok, [p for p, _ in pairs], [a for _, a in pairs])


def _acc(model, enc, pad) -> float:
    model.eval()
    with torch.no_grad():
        acc = float(score_encoded(model, enc, pad, batch_size=64).accuracy().sum().item()) / len(enc)
    model.train()
    return acc


def _ga_step(model, opt, params, enc, pad, rng, batch) -> None:
    fb = rng.sample(enc, min(batch, len(enc)))
    s, n = answer_logprob_sums(model, fb, pad)
    loss = (s / n).mean()  # gradient ASCENT on the forget answers' NLL = descent on their log-likelihood
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


def train_lora_ga(lab: Path, out: Path, *, steps: int = 30, lr: float = 5e-3, r: int = 4, alpha: int = 8,
                  save_every: int | None = None, seed: int = 0, base: Path | None = None) -> dict[int, float]:
    """LoRA gradient ascent on the forget set from `base` (default: the lab's original). Saves the adapter to `out`
    (or, with save_every, `out/checkpoint-N/` every save_every steps and at the end). Returns {step: forget acc}
    measured at each save."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    rng = random.Random(seed)
    base = base or lab / "original"
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    targets = LORA_TARGETS.get(model.config.model_type)
    if targets is None:
        raise ValueError(f"no LoRA target modules known for model_type {model.config.model_type!r}")
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets),
                     fan_in_fan_out=model.config.model_type == "gpt2", lora_dropout=0.0, init_lora_weights=True)
    model = get_peft_model(model, cfg).train()
    enc, pad = _forget(lab, tok), pad_id_of(tok)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    recorded: dict[int, float] = {}
    for step in range(1, steps + 1):
        _ga_step(model, opt, params, enc, pad, rng, 8)
        if save_every and (step % save_every == 0 or step == steps):
            model.save_pretrained(out / f"checkpoint-{step}")
            recorded[step] = _acc(model, enc, pad)
    if not save_every:
        model.save_pretrained(out)
        recorded[steps] = _acc(model, enc, pad)
    return recorded


def train_full_ga_series(lab: Path, out: Path, *, steps: int = 24, every: int = 8, lr: float = 1e-4,
                         seed: int = 0) -> dict[int, float]:
    """Full-model gradient ascent from the lab's original, saved every `every` steps as `out/checkpoint-N/` (config,
    safetensors, tokenizer, and the trainer_state.json a Trainer writes). Returns {step: forget acc} at each save,
    plus step 0 (the original)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tok = AutoTokenizer.from_pretrained(lab / "original")
    model = AutoModelForCausalLM.from_pretrained(lab / "original", dtype=torch.float32).train()
    enc, pad = _forget(lab, tok), pad_id_of(tok)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    recorded = {0: _acc(model, enc, pad)}
    for step in range(1, steps + 1):
        _ga_step(model, opt, params, enc, pad, rng, 8)
        if step % every == 0 or step == steps:
            folder = out / f"checkpoint-{step}"
            model.save_pretrained(folder)
            tok.save_pretrained(folder)
            recorded[step] = _acc(model, enc, pad)
            (folder / "trainer_state.json").write_text(json.dumps({"global_step": step,
                                                                   "forget_acc": recorded[step]}))
    return recorded


def build_extras(lab: Path, *, force: bool = False) -> dict:
    """The lab's checkpoints as researchers have them, beside the audited ones (the lab's config hash is unchanged):
    `extras/ga_lora/` (LoRA r=4, 30 steps of gradient ascent from the original: a PEFT adapter folder) and
    `extras/ga_series/checkpoint-N/` (full-model gradient ascent saved every 8 of 32 steps, Trainer layout).
    Published whole (built beside, then renamed): a killed build leaves no half series. Returns extras.json."""
    import shutil

    lab = Path(lab)
    out = lab / EXTRAS
    if (out / "extras.json").exists() and not force:
        return json.loads((out / "extras.json").read_text())
    tmp = lab / (EXTRAS + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with few_threads(0):  # reproducible on any core count, like the lab itself
        lora = train_lora_ga(lab, tmp / "ga_lora", steps=30, lr=3e-3)
        series = train_full_ga_series(lab, tmp / "ga_series", steps=32, every=8, lr=1e-4)
    cfg = json.loads((tmp / "ga_lora" / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "../../original"  # relative to the adapter: the lab moves as a whole
    (tmp / "ga_lora" / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
    meta = {"ga_lora": {"path": f"{EXTRAS}/ga_lora", "kind": "LoRA r=4 gradient ascent from the original",
                        "forget_acc": lora}, "ga_series": {"path": f"{EXTRAS}/ga_series",
                                                           "kind": "full gradient ascent saved every 8 steps",
                                                           "forget_acc": series}}
    (tmp / "extras.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return meta
