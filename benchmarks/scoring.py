"""The scorecard's teacher-forced pass, batched vs one item at a time, same model, same items, same run.

    python benchmarks/scoring.py [--lab DIR] [--repeat 3]

Every audit stands on score_encoded (answer-token log-probs in length-sorted batches). The naive way runs one forward
pass per item. Prints both times, the ratio, and the largest disagreement (they compute the same numbers).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unlearn_core.model.scoring import encode, pad_id_of, score_encoded  # noqa: E402
from unlearn_core.run.workspace import lab_workspace  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lab", type=Path, help="demo lab folder (default: the tiny test lab, built if missing)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.lab is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from conftest import lab_path

        args.lab = lab_path("tiny")
    spec = lab_workspace(args.lab, unlearned=["npo"])
    lm = spec.load_models().original
    data = spec.load_data()
    items = data.forget + data.retain + data.holdout
    pairs = [data.prompt_format.pair(it) for it in items]
    enc = encode(lm.tokenizer, [p for p, _ in pairs], [a for _, a in pairs])
    pad = pad_id_of(lm.tokenizer)

    def batched():
        return score_encoded(lm.model, enc, pad, batch_size=64)

    def naive():
        return [score_encoded(lm.model, [e], pad, batch_size=1) for e in enc]

    times = {}
    for name, fn in (("batched", batched), ("naive", naive)):
        fn()  # warm-up
        t = time.perf_counter()
        for _ in range(args.repeat):
            out = fn()
        times[name] = (time.perf_counter() - t) / args.repeat
        if name == "batched":
            b = out
        else:
            n = out
    diff = max(float((b.logprobs[i] - n[i].logprobs[0]).abs().max()) for i in range(len(enc)))
    print(f"{len(enc)} items, model {sum(p.numel() for p in lm.model.parameters()) / 1e6:.2f}M params, "
          f"torch threads {torch.get_num_threads()}")
    print(f"batched  {times['batched'] * 1e3:9.1f} ms")
    print(f"naive    {times['naive'] * 1e3:9.1f} ms")
    print(f"ratio    {times['naive'] / times['batched']:9.1f}x   max |diff| {diff:.2e}")


if __name__ == "__main__":
    main()
