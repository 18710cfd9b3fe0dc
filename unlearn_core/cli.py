"""python -m unlearn_core: build the demo lab, run an audit headless. Exit code 2 with a clear message on bad input."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unlearn_core.data import DataError
from unlearn_core.workspace import CheckpointError


def _parse_unlearned(values: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise argparse.ArgumentTypeError(f"--unlearned expects NAME=DIR, got {v!r}")
        out.append((name, path))
    return tuple(out)


def build_parser() -> argparse.ArgumentParser:
    from unlearn_core.audit import REGISTRY

    p = argparse.ArgumentParser(prog="python -m unlearn_core", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    lab = sub.add_parser("lab", help="the demo lab")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    b = lab_sub.add_parser("build", help="build (or reuse the cached) demo lab")
    b.add_argument("--out", required=True, type=Path)
    b.add_argument("--config", default="default")
    b.add_argument("--force", action="store_true", help="rebuild even if a build with this config hash exists")
    a = sub.add_parser("audit", help="run analyses and write OUT/report.json plus CSV tables")
    a.add_argument("--original", required=True)
    a.add_argument("--unlearned", required=True, action="append", metavar="NAME=DIR")
    a.add_argument("--retain-model")
    a.add_argument("--forget", required=True)
    a.add_argument("--retain")
    a.add_argument("--holdout")
    a.add_argument("--out", required=True, type=Path)
    a.add_argument("--analyses", default="scorecard",
                   help=f"comma-separated, or 'all'; available: {', '.join(REGISTRY)}")
    a.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    a.add_argument("--store", type=Path, help="results store (SQLite); default OUT/results.sqlite")
    a.add_argument("--prompt-template", default="Question: {question}\nAnswer:")
    a.add_argument("--accept-partial", action="store_true", help="keep the valid rows of a data file with bad rows")
    a.add_argument("--allow-pickle", action="store_true", help="allow pickle weight files (can run code)")
    a.add_argument("--trust-remote-code", action="store_true")
    return p


def _lab_build(args) -> int:
    from unlearn_core.lab.build import build_lab, scores_table

    meta = build_lab(args.out, args.config, force=args.force)
    print(scores_table(meta))
    print(f"built in {meta['build_seconds']} s -> {args.out}")
    return 0


def _audit(args) -> int:
    from unlearn_core.audit import REGISTRY, get_analysis, run_audit
    from unlearn_core.items import PromptFormat
    from unlearn_core.store import ResultsStore
    from unlearn_core.workspace import WorkspaceSpec

    analyses = [a.strip() for a in args.analyses.split(",") if a.strip()]
    if analyses == ["all"]:
        analyses = list(REGISTRY)
    for a in analyses:
        get_analysis(a)
    spec = WorkspaceSpec(
        original=args.original, unlearned=_parse_unlearned(args.unlearned), forget=args.forget,
        retain_only=args.retain_model, retain=args.retain, holdout=args.holdout, device=args.device,
        allow_pickle=args.allow_pickle, trust_remote_code=args.trust_remote_code,
        prompt_format=PromptFormat(args.prompt_template.replace("\\n", "\n")),
    )
    data = spec.load_data(accept_partial=args.accept_partial)
    models = spec.load_models()
    args.out.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(args.store or args.out / "results.sqlite")

    def progress(frac: float, msg: str) -> None:
        print(f"[{frac:6.1%}] {msg}", file=sys.stderr, flush=True)

    report = run_audit(models, data, analyses, args.out, store, progress)
    for name, c in report["checkpoints"].items():
        print(f"{name:<16} {c.get('verdict', c['role'])}")
    print(f"report: {args.out / 'report.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    args = build_parser().parse_args(argv)
    try:
        if args.command == "lab":
            return _lab_build(args)
        return _audit(args)
    except (DataError, CheckpointError, ValueError, argparse.ArgumentTypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: file not found: {exc.filename}", file=sys.stderr)
        return 2
