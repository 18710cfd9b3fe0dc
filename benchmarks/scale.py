"""Scale benchmark: the headline page's evidence set on random-weight models of real sizes, one fresh store.

    python benchmarks/scale.py                                  # GPT-2 small shapes (124M), CPU
    python benchmarks/scale.py --size 1b --device cuda          # a 1B Llama (TinyLlama / Llama-3.2-1B shapes)
    python benchmarks/scale.py --size tiny --csv out.csv        # seconds: the size the test runs
    python benchmarks/scale.py --budget-s 300                   # stop (and say so) any analysis past 5 min

The demo lab's models are 0.1-1M parameters, so its timings say nothing about a real checkpoint. Here an original,
three "unlearned" copies and a retain-only reference (seeded Gaussian perturbations of the original) are saved as
safetensors with a byte-level BPE tokenizer and loaded through the real path (`WorkspaceSpec.load_models`, the
same inspection, memory check and content hashing an audit does). Data are the lab's synthetic people world
(forget / retain / holdout QA items with paraphrased and perturbed answers). Each analysis runs through
`audit.run_analysis` on an empty results store, so nothing is served from cache.

Random weights set the cost, not the answers: they practically never emit EOS, so every greedy generation runs the
whole OU budget (200 new tokens) and the scorecard's time is an upper bound for a model that stops at its answer.

The forward rows time the scorecard's teacher-forced pass (`scoring.score_encoded`, length-sorted batches) against
one item at a time and against the forward-pass floor (a plain batched forward of the same padded batches, no
log-softmax, every position projected onto the vocabulary: the scoring passes project only the answer positions, so
they can beat it), and `forward.answer_logprob_sums` (the differentiable pass relearning uses) on the same batches;
max_abs_diff is the largest disagreement with the one-at-a-time numbers (same quantities, only batching differs);
of_floor is tokens/s as a share of the floor's, naive_over_this the naive loop's time over the row's.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unlearn_core.analyses import registry  # noqa: E402
from unlearn_core.checkpoints.memory import pick_device  # noqa: E402
from unlearn_core.lab.tokenizer import train_tokenizer  # noqa: E402
from unlearn_core.lab.world import make_world  # noqa: E402
from unlearn_core.model.forward import answer_logprob_sums  # noqa: E402
from unlearn_core.model.scoring import encode, length_batches, pad_id_of, right_pad, score_encoded  # noqa: E402
from unlearn_core.model.threads import few_threads, model_params  # noqa: E402
from unlearn_core.run.audit import run_analysis  # noqa: E402
from unlearn_core.run.workspace import WorkspaceSpec  # noqa: E402
from unlearn_core.store.results import ResultsStore  # noqa: E402
from unlearn_core.types import ModelSet  # noqa: E402

SIZES = ("tiny", "gpt2", "1b")
UNLEARNED = ("unlearned_a", "unlearned_b", "unlearned_c")
N_ATTRIBUTES = 5  # facts per entity in the people world
TOKENIZER_VOCAB = 512  # smaller than every model's embedding, as with a real tokenizer and a padded embedding


def model_config(size: str):
    """Random-init shapes: GPT-2 small as transformers defines it, a 1B Llama, and a CI-sized GPT-2."""
    from transformers import GPT2Config, LlamaConfig

    if size == "gpt2":
        return GPT2Config()  # 12 layers, width 768, 12 heads, vocab 50257, context 1024: 124M
    if size == "1b":
        return LlamaConfig(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                           intermediate_size=8192, vocab_size=32000, max_position_embeddings=2048)
    # a short context keeps the greedy budget (capped at the context) and so the test to seconds
    return GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1024, n_positions=64)


def write_data(folder: Path, n_forget: int, n_retain: int, n_holdout: int, seed: int) -> dict[str, Path]:
    """forget / retain / holdout JSONL in the lab's item format, from the lab's world generator."""
    n_f, n_r, n_h = (math.ceil(n / N_ATTRIBUTES) for n in (n_forget, n_retain, n_holdout))
    world = make_world(n_f + n_r, N_ATTRIBUTES, n_f / (n_f + n_r), n_h, seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, n in (("forget", n_forget), ("retain", n_retain), ("holdout", n_holdout)):
        paths[split] = folder / f"{split}.jsonl"
        with paths[split].open("w", encoding="utf-8") as fh:
            for it in world.items(split)[:n]:
                row = {"question": it.question, "answer": it.answer, "paraphrased_answer": it.paraphrased_answer,
                       "perturbed_answers": list(it.perturbed_answers), "keywords": list(it.keywords),
                       "concept": it.concept, **dict(it.extra)}
                fh.write(json.dumps(row) + "\n")
    return paths


def corpus(paths: dict[str, Path]) -> list[str]:
    """Every string the audit will tokenise, so the tokenizer covers the data as a real one covers its language."""
    texts = []
    for path in paths.values():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            texts += [f"Question: {row['question']}\nAnswer: {row['answer']}", row["paraphrased_answer"],
                      *row["perturbed_answers"]]
    return texts


@torch.no_grad()
def write_checkpoints(folder: Path, size: str, device: torch.device, dtype: torch.dtype, tokenizer, noise: float,
                      seed: int) -> dict[str, Path]:
    """original + the unlearned copies + retain_only, each original + noise * N(0, 1) with its own seed."""
    from transformers import AutoModelForCausalLM

    cfg = model_config(size)
    cfg.bos_token_id = cfg.eos_token_id = tokenizer.eos_token_id
    cfg.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    with torch.device(device):  # a 1B init on the GPU takes seconds, on the CPU minutes
        model = AutoModelForCausalLM.from_config(cfg).to(dtype).eval()
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    paths = {}
    for k, name in enumerate(("original", *UNLEARNED, "retain_only")):
        gen = torch.Generator(device).manual_seed(seed + 1 + k)
        for n, p in model.named_parameters():
            p.copy_(base[n] if k == 0 else base[n] + noise * torch.randn(p.shape, generator=gen, device=device,
                                                                         dtype=torch.float32).to(dtype))
        paths[name] = folder / name
        model.save_pretrained(paths[name], safe_serialization=True)
        tokenizer.save_pretrained(paths[name])
    del model, base
    return paths


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Measured:
    seconds: float = math.nan
    peak_mib: float = math.nan  # CUDA: max_memory_allocated; CPU: the largest sampled RSS
    extra_mib: float = math.nan  # the peak above what was held when the step started
    steps: list[tuple[float, str]] = field(default_factory=list)  # (time, progress message)


@contextmanager
def measured(device: torch.device, poll_s: float = 0.02):
    """Wall seconds and peak memory of the block; on the CPU RSS is sampled by a thread (ru_maxrss never falls)."""
    import psutil

    out, stop = Measured(), threading.Event()
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        start_mem = torch.cuda.memory_allocated(device)
    else:
        proc = psutil.Process()
        start_mem = proc.memory_info().rss
        peak = [start_mem]

        def sample():
            while not stop.wait(poll_s):
                peak[0] = max(peak[0], proc.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        sync(device)
        out.seconds = time.perf_counter() - t0
        if device.type == "cuda":
            top = torch.cuda.max_memory_allocated(device)
        else:
            stop.set()
            sampler.join()
            top = max(peak[0], proc.memory_info().rss)
        out.peak_mib, out.extra_mib = top / 2**20, (top - start_mem) / 2**20


def dominant_step(m: Measured, names: list[str]) -> str:
    """The progress step (checkpoint names folded together) that took most of the analysis's time."""
    if not m.steps:
        return ""
    t0 = m.steps[0][0]
    ends = [t for t, _ in m.steps[1:]] + [t0 + m.seconds]
    totals: dict[str, float] = {}
    for (t, msg), end in zip(m.steps, ends):
        for n in sorted(names, key=len, reverse=True):
            msg = msg.replace(f"{n}: ", "*: ")
        totals[msg] = totals.get(msg, 0.0) + end - t
    step, secs = max(totals.items(), key=lambda kv: kv[1])
    return f"{step} ({100 * secs / max(m.seconds, 1e-9):.0f}%)"


def forward_rows(models: ModelSet, data, device: torch.device, batch_size: int, repeat: int = 1) -> list[dict]:
    """Floor, batched, answer_logprob_sums and naive on every item's gold answer, warm, same run, interleaved."""
    lm = models.original
    items = data.forget + data.retain + data.holdout
    pairs = [data.prompt_format.pair(it) for it in items]
    enc = encode(lm.tokenizer, [p for p, _ in pairs], [a for _, a in pairs])
    pad = pad_id_of(lm.tokenizer)
    n_tokens = sum(len(e.ids) for e in enc)
    batches = length_batches([len(e.ids) for e in enc], batch_size, 16384)  # score_encoded's own batches

    @torch.no_grad()
    def floor():
        for b in batches:
            ids, mask = right_pad([enc[i].ids for i in b], pad, device)
            lm.model(input_ids=ids, attention_mask=mask)

    @torch.no_grad()
    def sums():
        out = torch.zeros(len(enc), dtype=torch.float64)
        for b in batches:
            out[b] = answer_logprob_sums(lm.model, [enc[i] for i in b], pad, answers_only=True)[0].double().cpu()
        return out

    runs = {"floor (plain batched forward)": floor,
            "batched score_encoded": lambda: score_encoded(lm.model, enc, pad, batch_size),
            "batched answer_logprob_sums": sums,
            "naive score_encoded, 1 item/pass": lambda: [score_encoded(lm.model, [e], pad, 1) for e in enc]}
    with few_threads(model_params(models)):  # the thread policy run_analysis applies
        floor()  # warm-up over every batch shape: the first pass pays for allocating the [B, T, V] logits
        results, times = {}, {}
        for _ in range(repeat):  # the fastest of the repeats: the machine may be shared
            for name, fn in runs.items():
                with measured(device) as m:
                    results[name] = fn()
                if name not in times or m.seconds < times[name].seconds:
                    times[name] = m
    naive = [r.logprobs[0] for r in results["naive score_encoded, 1 item/pass"]]
    batched = results["batched score_encoded"].logprobs
    diff = {"batched score_encoded": max(float((b - n).abs().max()) for b, n in zip(batched, naive)),
            "batched answer_logprob_sums": float((results["batched answer_logprob_sums"]
                                                  - torch.stack([n.double().sum() for n in naive])).abs().max())}
    floor_s = times["floor (plain batched forward)"].seconds
    naive_s = times["naive score_encoded, 1 item/pass"].seconds
    rows = []
    for name, m in times.items():
        rows.append({"part": "forward", "step": name, "seconds": m.seconds, "peak_mib": m.peak_mib,
                     "extra_mib": m.extra_mib, "tokens_per_s": n_tokens / m.seconds,
                     "of_floor": floor_s / m.seconds,
                     "naive_over_this": naive_s / m.seconds if name != "floor (plain batched forward)" else math.nan,
                     "max_abs_diff": diff.get(name, math.nan), "note": f"{len(enc)} items, {n_tokens} tokens"})
    return rows


class OverBudget(Exception):
    """Raised from an analysis's progress callback: the analysis has run past --budget-s."""


def time_analysis(name: str, models: ModelSet, data, store: ResultsStore, device: torch.device,
                  budget_s: float | None, log) -> dict:
    """One analysis through run_analysis on the empty store; past budget_s it is stopped at its next progress step
    (analyses leave nothing half-done when their progress callback raises) and reported as stopped."""
    analysis = registry.get_spec(name)
    log(f"{name} ...")
    done, stopped, cached = [0.0], False, False
    with measured(device) as m:
        def progress(frac: float, msg: str) -> None:
            now = time.perf_counter()
            m.steps.append((now, msg))
            done[0] = frac
            log(f"  {name} {100 * frac:3.0f}% {msg}")
            if budget_s is not None and frac < 1 and now - m.steps[0][0] > budget_s:
                raise OverBudget

        try:
            _result, cached = run_analysis(analysis, models, data, store, progress=progress)
        except OverBudget:
            stopped = True
    if cached:
        raise RuntimeError(f"{name} was served from the results store; the store must start empty")
    note = "dominant step: " + dominant_step(m, list(models.all()))
    if stopped:
        note = f"STOPPED by --budget-s at {100 * done[0]:.0f}% of its progress steps; " + note + " so far"
    return {"part": "analysis", "step": name, "seconds": m.seconds, "peak_mib": m.peak_mib,
            "extra_mib": m.extra_mib, "note": note}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="gpt2", choices=SIZES)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--analyses", default=",".join(registry.DEFAULT_EVIDENCE_SET),
                    help="comma-separated (default: the headline page's evidence set)")
    ap.add_argument("--n-forget", type=int, default=40)
    ap.add_argument("--n-retain", type=int, default=100)
    ap.add_argument("--n-holdout", type=int, default=40)
    ap.add_argument("--noise", type=float, default=0.002, help="std of the perturbation that makes each copy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resident", type=int, help="checkpoints in memory at once (the CLI's --resident): the others are "
                    "loaded when an analysis reaches them; default: all")
    ap.add_argument("--workdir", type=Path, help="where checkpoints, data and the store go (default: a temp dir)")
    ap.add_argument("--repeat", type=int, default=1, help="forward rows: the fastest of this many runs")
    ap.add_argument("--budget-s", type=float, help="stop an analysis at its first progress step past this many "
                    "seconds and report it as stopped (how far it got, and its slowest step so far)")
    ap.add_argument("--csv", type=Path, help="also write the table here")
    ap.add_argument("--quiet", action="store_true", help="no live progress on stderr")
    args = ap.parse_args(argv)
    args.analyses = [a.strip() for a in args.analyses.split(",") if a.strip()]
    for a in args.analyses:
        registry.get_spec(a)  # unknown names fail before minutes of model building
    return args


def _residency(models) -> str:
    r = getattr(models.original, "residency", None)
    if r is None:
        return " (all resident)"
    loads = sum(r.loads.values())
    return f" (at most {r.capacity} resident: {loads} loads in all, peak {r.peak} at once)"


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(argv)
    device, dtype = pick_device(args.device)  # what the loader will pick: bf16 on CUDA, fp32 on the CPU
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per shard and checkpoint would bury the table
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", file=sys.stderr, flush=True)

    def show(done: list[dict]) -> None:
        """Finished rows go to the log at once, so a run killed later still leaves its numbers."""
        for row in done:
            log("row: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))

    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        work = args.workdir or Path(tmp)
        rows = []
        log(f"building {args.size} checkpoints in {work}")
        with measured(device) as m_build:
            data_paths = write_data(work / "data", args.n_forget, args.n_retain, args.n_holdout, args.seed)
            tok = train_tokenizer(corpus(data_paths), TOKENIZER_VOCAB)
            ckpts = write_checkpoints(work / "checkpoints", args.size, device, dtype, tok, args.noise, args.seed)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        spec = WorkspaceSpec(original=str(ckpts["original"]), unlearned=tuple((n, str(ckpts[n])) for n in UNLEARNED),
                             retain_only=str(ckpts["retain_only"]), forget=str(data_paths["forget"]),
                             retain=str(data_paths["retain"]), holdout=str(data_paths["holdout"]),
                             device=device.type, resident=args.resident)
        log("loading through WorkspaceSpec.load_models")
        with measured(device) as m_load:
            models, data = spec.load_models(), spec.load_data()
        rows += [{"part": "setup", "step": "build + save 5 checkpoints", "seconds": m_build.seconds,
                  "peak_mib": m_build.peak_mib, "extra_mib": m_build.extra_mib},
                 {"part": "setup", "step": "load (WorkspaceSpec)", "seconds": m_load.seconds,
                  "peak_mib": m_load.peak_mib, "extra_mib": m_load.extra_mib}]
        log("forward pass: floor, batched, naive")
        from unlearn_core.analyses.scorecard.result import ScorecardConfig

        rows += forward_rows(models, data, device, ScorecardConfig().batch_size, args.repeat)
        show(rows)
        store = ResultsStore(work / "results.sqlite")
        for name in args.analyses:
            rows.append(time_analysis(name, models, data, store, device, args.budget_s, log))
            show(rows[-1:])
        store.close()
    table = pd.DataFrame(rows, columns=["part", "step", "seconds", "peak_mib", "extra_mib", "tokens_per_s",
                                        "of_floor", "naive_over_this", "max_abs_diff", "note"])
    n_params = sum(p.numel() for p in models.original.model.parameters())
    mem = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "sampled RSS (psutil)"
    print(f"size {args.size}: {type(models.original.model).__name__} {n_params / 1e6:.3g}M params, "
          f"{str(dtype).replace('torch.', '')} on {device}, torch threads {torch.get_num_threads()}, "
          f"{len(data.forget)} forget / {len(data.retain)} retain / {len(data.holdout)} holdout items, "
          f"5 checkpoints loaded from safetensors{_residency(models)}; memory = {mem}; "
          f"process ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(table.to_string(index=False, na_rep="", float_format=lambda x: f"{x:.4g}"))
    if args.csv:
        table.to_csv(args.csv, index=False)
    return table


if __name__ == "__main__":
    main()
