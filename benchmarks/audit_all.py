"""The whole audit of a demo lab: one process (the baseline) vs N processes (the audit's own and N - 1 workers), same
run, same numbers.

    python benchmarks/audit_all.py                         # default lab, every analysis, 1 vs 2 processes
    python benchmarks/audit_all.py --analyses default --jobs 2 --lab DIR
    python benchmarks/audit_all.py --unlearned ga,graddiff,npo,rmu,suppressed_head --forget-items 20
                                   # the workload issue 14 set its target on: 5 unlearned + reference, 20 forget

Each side writes to its own fresh results store and, unless --reuse-sae, trains its own SAE in a fresh cache folder
(UNLEARN_AUDIT_CACHE), so nothing is served from a cache: the time a new user's first audit takes. The verdicts and
evidence tables of both sides are compared cell by cell. Time it on an otherwise idle machine: two torch processes
beside another job slow each other down (unlearn_core/threads.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _run(lab: Path, out: Path, analyses: str, jobs: int, extra: list[str], cache: Path | None) -> float:
    env = dict(os.environ, UNLEARN_AUDIT_CACHE=str(cache)) if cache is not None else None
    cmd = [sys.executable, "-m", "unlearn_core", "audit", "--lab", str(lab), "--out", str(out), "--jobs", str(jobs),
           *extra]
    if analyses != "default":
        cmd += ["--analyses", analyses]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _analysis_seconds(store_path: Path) -> dict[str, float]:
    """Each analysis' own compute time, as the store recorded it (not loading, not the verdict)."""
    from unlearn_core.analyses.registry import ANALYSES
    from unlearn_core.store.results import ResultsStore

    store = ResultsStore(store_path)
    return {name: recs[0].seconds for name in ANALYSES if (recs := store.timings(name))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lab", type=Path, help="a built demo lab (default: the default config, built if missing)")
    p.add_argument("--analyses", default="all", help="'all', 'default' (the headline evidence set) or a list")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--unlearned", help="comma-separated checkpoint names of the lab to audit (default: all)")
    p.add_argument("--forget-items", type=int, help="audit only the first N forget items")
    p.add_argument("--reuse-sae", action="store_true",
                   help="use the SAE cache in place: an SAE trained before is loaded, not trained again")
    args = p.parse_args()
    lab = args.lab
    if lab is None:
        from unlearn_core.lab.build import build_lab
        from unlearn_core.lab.config import get_config

        cfg = get_config("default")
        lab = ROOT / ".lab" / "test" / f"lab-{cfg.name}-{cfg.hash}"
        build_lab(lab, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        extra = []
        if args.unlearned:
            cps = json.loads((lab / "lab.json").read_text())["checkpoints"]
            extra += [a for n in args.unlearned.split(",") for a in ("--unlearned", f"{n}={lab / cps[n]['path']}")]
        if args.forget_items:
            lines = (lab / "data" / "forget.jsonl").read_text().splitlines()[: args.forget_items]
            (tmp / "forget.jsonl").write_text("\n".join(lines) + "\n")
            extra += ["--forget", str(tmp / "forget.jsonl")]
        caches = {side: None if args.reuse_sae else tmp / f"cache-{side}" for side in ("serial", "parallel")}
        serial = _run(lab, tmp / "serial", args.analyses, 1, extra, caches["serial"])
        parallel = _run(lab, tmp / "parallel", args.analyses, args.jobs, extra, caches["parallel"])
        same = all(pd.read_csv(tmp / "serial" / f"{t}.csv").equals(pd.read_csv(tmp / "parallel" / f"{t}.csv"))
                   for t in ("verdicts", "evidence"))
        per = {side: _analysis_seconds(tmp / side / "results.sqlite") for side in ("serial", "parallel")}
    print(f"lab {lab.name}, analyses: {args.analyses}, unlearned: {args.unlearned or 'all'}, forget items: "
          f"{args.forget_items or 'all'}, SAE: {'cache reused' if args.reuse_sae else 'trained by each side'}")
    print(f"{'analysis':<20}{'one process':>14}{f'{args.jobs} processes':>14}")
    for name in sorted(per["serial"], key=lambda n: -per["serial"][n]):
        print(f"{name:<20}{per['serial'][name]:12.1f} s{per['parallel'].get(name, float('nan')):12.1f} s")
    print(f"{'one process (baseline)':<28}{serial:8.1f} s")
    print(f"{f'{args.jobs} processes ({args.jobs - 1} workers)':<28}{parallel:8.1f} s   x{serial / parallel:.2f}")
    print(f"verdicts and evidence identical: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
