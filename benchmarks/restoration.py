"""SAE restoration steering, batched (as compute_restoration does it) vs the naive loop, same SAE, same run.

    python benchmarks/restoration.py [--lab DIR] [--checkpoint suppressed_head] [--repeat 2] [--threads N]

Restoration steers every forget item with its OWN fact features over an alpha grid. compute_restoration runs the
original and the checkpoint once per length batch, keeps their block-l states, computes one steering direction per
alpha grid (the SAE edit is linear in alpha), and steers whole batches with a per-row feature mask in passes that start
above block l (forward.resumed_at).
The naive way does what a per-item script does: for every item and alpha, one forward pass of the original to get
its state and one steered pass of the unlearned model. Prints both times, the ratio, and the largest disagreement
in restored p~ (they compute the same numbers).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unlearn_core.analyses.sae_restoration.steering import (  # noqa: E402
    Split,
    fact_sets,
    feature_stats,
    run_split,
    steer,
    steering_direction,
)
from unlearn_core.analyses.sae_restoration.training import SAETrainConfig, get_sae, training_texts  # noqa: E402
from unlearn_core.model.arch import decoder_layers  # noqa: E402
from unlearn_core.model.hooks import resume_matches  # noqa: E402
from unlearn_core.model.scoring import encode, pad_id_of  # noqa: E402
from unlearn_core.run.workspace import lab_workspace  # noqa: E402

ALPHAS = (0.5, 1.0, 2.0, 5.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lab", type=Path, help="demo lab folder (default: the tiny test lab, built if missing)")
    ap.add_argument("--checkpoint", default="suppressed_head")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's; the app uses 1 for "
                    "models this small, see unlearn_core/threads.py)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.lab is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from conftest import lab_path

        args.lab = lab_path("tiny")
    spec = lab_workspace(args.lab, unlearned=[args.checkpoint])
    models, data = spec.load_models(), spec.load_data()
    orig, unl = models.original, models.unlearned[args.checkpoint]
    tok, pad = orig.tokenizer, pad_id_of(orig.tokenizer)
    layer = len(decoder_layers(orig.model)) - 1  # the tiny lab's default layer: the last block's output
    pairs = training_texts(data)
    sae, quality, _ = get_sae(orig.model, encode(tok, [p for p, _ in pairs], [a for _, a in pairs]), layer,
                              SAETrainConfig(), pad, orig.hash, data.hash)
    sae.eval()

    def split(name: str, batch_size: int) -> Split:
        ps = [data.prompt_format.pair(it) for it in getattr(data, name)]
        return Split([e for e in encode(tok, [p for p, _ in ps], [a for _, a in ps]) if e.answer_ids], batch_size,
                      pad, "cpu")

    forget, retain = split("forget", 32), split("retain", 32)
    _, _, forget.h_orig = run_split(orig.model, layer, forget)
    _, _, retain.h_orig = run_split(orig.model, layer, retain)
    f_mean, _ = feature_stats(sae, forget)
    r_mean, _ = feature_stats(sae, retain)
    everything = torch.cat([f_mean, r_mean])
    live = torch.nonzero(everything.mean(0) > 0).flatten()
    m = round(2 * quality.l0)
    fact, _ = fact_sets(f_mean, everything.mean(0), m, live, torch.Generator().manual_seed(0))

    def batched() -> torch.Tensor:
        fresh = split("forget", 32)
        _, _, fresh.h_orig = run_split(orig.model, layer, fresh)  # the original, once per batch
        _, _, h_u = run_split(unl.model, layer, fresh)  # the checkpoint's own state at the layer, once
        first = fresh.padded[0]
        resume = h_u if resume_matches(unl.model, first[0], first[1], layer) else None
        direction = [steering_direction(sae, fact[b], "inject", h, h_o)  # one direction per alpha grid
                     for b, h, h_o in zip(fresh.batches, h_u, fresh.h_orig, strict=True)]
        out = []
        for alpha in ALPHAS:  # each pass starts above the steered block
            p, _, _ = run_split(unl.model, layer, fresh, lambda b, a=alpha: lambda h: h + a * direction[b], resume)
            out.append(p)
        return torch.stack(out)  # [alphas, items]

    def naive() -> torch.Tensor:
        one = split("forget", 1)
        out = torch.zeros(len(ALPHAS), len(one.enc))
        for j, alpha in enumerate(ALPHAS):
            for b in one.batches:
                single = Split([one.enc[b[0]]], 1, pad, "cpu")
                _, _, single.h_orig = run_split(orig.model, layer, single)  # the original, again, for this item
                p, _, _ = run_split(unl.model, layer, single,
                               lambda _b, s=single, k=b[0], a=alpha: steer(sae, fact[[k]], "inject", a,
                                                                                 s.h_orig[0]))
                out[j, b[0]] = p[0]
        return out

    times, results = {}, {}
    for name, fn in (("batched", batched), ("naive", naive)):
        fn()  # warm-up
        t = time.perf_counter()
        for _ in range(args.repeat):
            results[name] = fn()
        times[name] = (time.perf_counter() - t) / args.repeat
    diff = float((results["batched"] - results["naive"]).abs().max())
    print(f"{len(forget.enc)} forget items x {len(ALPHAS)} alphas, layer {layer}, SAE {sae.cfg.d_sae} features, "
          f"{m} per fact, checkpoint {args.checkpoint}, torch threads {torch.get_num_threads()}")
    print(f"batched  {times['batched'] * 1e3:9.1f} ms")
    print(f"naive    {times['naive'] * 1e3:9.1f} ms")
    print(f"ratio    {times['naive'] / times['batched']:9.1f}x   max |diff p~| {diff:.2e}")


if __name__ == "__main__":
    main()
