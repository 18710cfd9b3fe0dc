"""Guided extraction decoding with a KV cache vs recomputing the whole prefix at every step, same run, same tokens.

    python benchmarks/extraction.py [--lab DIR] [--retain 40] [--max-new-tokens 16]

For every unlearned checkpoint and the retain-only reference: plain greedy decoding and decoding guided by the
original (w = 1), over the forget prompts and the first --retain retain prompts, both ways. Prints both times, the
ratio, and how many generations differ (they should not: the cache only saves recomputation).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unlearn_core.analyses.extraction import guided_greedy  # noqa: E402
from unlearn_core.run.workspace import lab_workspace  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", type=Path, help="demo lab folder (default: the default lab, built if missing)")
    ap.add_argument("--retain", type=int, default=40)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)  # the audit's policy for models this small (unlearn_core/threads.py)
    if args.lab is None:
        from unlearn_core.lab.build import build_lab
        from unlearn_core.lab.config import get_config

        cfg = get_config("default")
        args.lab = ROOT / ".lab" / "test" / f"lab-{cfg.name}-{cfg.hash}"
        build_lab(args.lab, cfg)
    ws = lab_workspace(args.lab)
    models, data = ws.load_models(), ws.load_data()
    fmt, o = data.prompt_format, models.original
    prompts = [fmt.pair(it)[0] for it in (*data.forget, *data.retain[: args.retain])]
    seconds, differ, total = {True: 0.0, False: 0.0}, 0, 0
    targets = [*models.unlearned.values(), *([models.retain_only] if models.retain_only else [])]
    for lm in targets:
        for unl, w in ((None, 0.0), (lm.model, 1.0)):
            base = lm.model if unl is None else o.model
            out = {}
            for kv in (False, True):
                t0 = time.perf_counter()
                out[kv] = guided_greedy(base, unl, o.tokenizer, prompts, w, 5.0, args.max_new_tokens, args.batch_size,
                                        kv_cache=kv)
                seconds[kv] += time.perf_counter() - t0
            differ += sum(a != b for a, b in zip(out[False], out[True], strict=True))
            total += len(prompts)
    print(f"lab {args.lab.name}: {len(targets)} checkpoints x (plain, guided) x {len(prompts)} prompts, "
          f"{args.max_new_tokens} new tokens, torch threads {torch.get_num_threads()}")
    print(f"full prefix every step  {seconds[False]:8.1f} s")
    print(f"KV cache                {seconds[True]:8.1f} s   x{seconds[False] / seconds[True]:.1f}")
    print(f"generations that differ {differ} of {total}")


if __name__ == "__main__":
    main()
