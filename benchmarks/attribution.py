"""Batched attribution vs the naive one-prompt-at-a-time loop, same model, same prompts, same run.

    python benchmarks/attribution.py                       # demo lab (tiny, built if missing), CPU
    python benchmarks/attribution.py --device cuda --random-llama 1b --n-prompts 64

Naive LOO = one forward pass per prompt variant; naive IG = one captum LayerIntegratedGradients call per prompt
(same target, baseline and steps). Prints both times, the ratio, and the largest disagreement between the two
(they compute the same numbers; only the batching differs).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unlearn_core.analyses.attribution import answer_logprob_sum, integrated_gradients, leave_one_out  # noqa: E402
from unlearn_core.model.scoring import Encoded, score_encoded  # noqa: E402

LLAMA_SIZES = {  # hidden, layers, heads, kv heads, mlp, vocab
    "tiny": (64, 3, 4, 4, 172, 512),
    "160m": (768, 12, 12, 12, 2048, 32000),
    "1b": (2048, 16, 32, 8, 8192, 128256),
    "3b": (3072, 28, 24, 8, 8192, 128256),
}


def random_llama(size: str, device: str, n: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    h, layers, heads, kv, mlp, vocab = LLAMA_SIZES[size]
    cfg = LlamaConfig(hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                      intermediate_size=mlp, vocab_size=vocab, max_position_embeddings=256)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).to(device=device, dtype=dtype).eval()
    rng = random.Random(seed)
    prompts = [[rng.randrange(2, vocab) for _ in range(rng.randint(12, 40))] for _ in range(n)]
    answers = [[rng.randrange(2, vocab) for _ in range(rng.randint(2, 6))] for _ in range(n)]
    return model, 0, prompts, answers, f"random Llama {size} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M)"


def demo_lab(device: str, n: int):
    from unlearn_core.analyses.attribution import prompt_layout
    from unlearn_core.lab.build import build_lab
    from unlearn_core.lab.config import get_config
    from unlearn_core.model.scoring import pad_id_of
    from unlearn_core.run.workspace import lab_workspace

    cfg = get_config("tiny")
    out = Path(__file__).resolve().parents[1] / ".lab" / "test" / f"lab-{cfg.name}-{cfg.hash}"
    build_lab(out, cfg, verbose=False)
    ws = lab_workspace(out, unlearned=["suppressed_head"], device=device)
    models, data = ws.load_models(), ws.load_data()
    lm = models.original
    items = (data.forget + data.retain)[:n]
    prompts, answers = [], []
    for it in items:
        p, a = data.prompt_format.pair(it)
        prompts.append(list(prompt_layout(lm.tokenizer, p, it.question, "prompt")[0]))
        answers.append(list(lm.tokenizer(a, add_special_tokens=False)["input_ids"]))
    return lm.model, pad_id_of(lm.tokenizer), prompts, answers, f"demo lab tiny original ({len(items)} prompts)"


def naive_loo(model, pad, prompts, answers):
    out = []
    for x, y in zip(prompts, answers):
        full = score_encoded(model, [Encoded(tuple(x), tuple(y))], pad).mean_logprob()[0].item()
        out.append(np.array([full - score_encoded(model, [Encoded(tuple(x[:i] + x[i + 1:]), tuple(y))], pad)
                             .mean_logprob()[0].item() for i in range(len(x))]))
    return out


def naive_ig(model, pad, prompts, answers, steps):
    from captum.attr import LayerIntegratedGradients

    lig = LayerIntegratedGradients(lambda ids, mask, labels: answer_logprob_sum(ids, mask, labels, model),
                                   model.get_input_embeddings())
    dev = model.get_input_embeddings().weight.device
    out = []
    for x, y in zip(prompts, answers):
        ids = torch.tensor([x + y], device=dev)
        labels = torch.full_like(ids, -100)
        labels[0, len(x) - 1: len(x) + len(y) - 1] = torch.tensor(y, device=dev)
        base = ids.clone()
        base[0, : len(x)] = pad
        attr = lig.attribute(ids, baselines=base, additional_forward_args=(torch.ones_like(ids), labels),
                             n_steps=steps)
        out.append(attr.float().sum(-1)[0, : len(x)].detach().cpu().double().numpy())
    return out


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    res = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return res, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--random-llama", default=None, choices=sorted(LLAMA_SIZES),
                    help="random-weight Llama-shaped model of this size instead of the demo lab")
    ap.add_argument("--n-prompts", type=int, default=32)
    ap.add_argument("--ig-steps", type=int, default=32)
    ap.add_argument("--batch-tokens", type=int, default=16384, help="IG rows x length per pass (batched)")
    args = ap.parse_args()
    if args.random_llama:
        model, pad, prompts, answers, what = random_llama(args.random_llama, args.device, args.n_prompts)
    else:
        model, pad, prompts, answers, what = demo_lab(args.device, args.n_prompts)
    att = [[True] * len(x) for x in prompts]
    print(f"{what} on {args.device}; {len(prompts)} prompts, ig_steps={args.ig_steps}", flush=True)
    leave_one_out(model, pad, prompts[:2], answers[:2], att[:2])  # warm-up (allocator, kernels)
    (lp_b, loo_b), t_lb = timed(lambda: leave_one_out(model, pad, prompts, answers, att))
    loo_n, t_ln = timed(lambda: naive_loo(model, pad, prompts, answers))
    err = max(float(np.max(np.abs(a - b))) for a, b in zip(loo_b, loo_n))
    print(f"LOO  batched {t_lb:8.2f} s   naive {t_ln:8.2f} s   ratio {t_ln / t_lb:6.1f}x   max|diff| {err:.2e}")
    (ig_b, _), t_ib = timed(lambda: integrated_gradients(model, pad, prompts, answers, att, args.ig_steps,
                                                         batch_tokens=args.batch_tokens))
    ig_n, t_in = timed(lambda: naive_ig(model, pad, prompts, answers, args.ig_steps))
    err = max(float(np.max(np.abs(a - b))) for a, b in zip(ig_b, ig_n))
    print(f"IG   batched {t_ib:8.2f} s   naive {t_in:8.2f} s   ratio {t_in / t_ib:6.1f}x   max|diff| {err:.2e}")


if __name__ == "__main__":
    main()
