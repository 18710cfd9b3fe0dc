"""Headless audit: run the requested analyses over a workspace, serve repeats from the results store, and write
report.json plus one CSV per table. The CLI and the dashboard share this registry of analyses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from unlearn_core.hashing import hash_config
from unlearn_core.store import ResultsStore, make_key
from unlearn_core.threads import few_threads, model_params
from unlearn_core.types import AuditData, ModelSet

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Analysis:
    name: str
    title: str
    default_config: Callable[[], object]
    compute: Callable[..., object]  # (models, data, config, progress=None) -> result
    tables: Callable[[object], dict[str, object]]  # result -> {table name: DataFrame}
    scores: Callable[[object, str], dict[str, float]]  # (result, checkpoint name) -> scores for report.json


def _scorecard() -> Analysis:
    from unlearn_core.analyses.behaviour import ScorecardConfig, compute_scorecard

    return Analysis(
        "scorecard", "Behavioural scorecard", ScorecardConfig, compute_scorecard,
        lambda r: {"scorecard_summary": r.to_frame(), "scorecard_items": r.items_frame(),
                   "scorecard_roc": r.roc_frame()},
        lambda r, name: r.scores(name),
    )


def _from_module(module: str) -> Callable[[], Analysis]:
    """Analyses live in their own modules and expose analysis_spec(); imported only when asked for."""

    def factory() -> Analysis:
        import importlib

        return importlib.import_module(f"unlearn_core.analyses.{module}").analysis_spec()

    return factory


REGISTRY: dict[str, Callable[[], Analysis]] = {
    "scorecard": _scorecard,
    "attribution": _from_module("attribution"),
    "keyword_recovery": _from_module("keyword_emphasis"),
    "sae_restoration": _from_module("sae_restoration"),
    "patching": _from_module("patching"),
    "concept_vectors": _from_module("concept_vectors"),
    "quantization": _from_module("quantization"),
    "relearning": _from_module("relearning"),
    "representation": _from_module("representation"),
    "perturbation": _from_module("perturbation"),
    "extraction": _from_module("extraction"),
}

# verdict evidence name -> the score key an analysis reports it under (first present wins). Concept-vector cosine is
# deliberately not evidence: it is parametric similarity, not recoverability, and a retain-only model trained
# separately has unaligned columns (cosine ~0.7 by construction), which would read as "retained".
VERDICT_EVIDENCE: dict[str, tuple[str, ...]] = {
    "keyword_recovery": ("kw_recovery_p",),
    "quantization_recovery": ("quantization_recovery_4bit",),
    "perturbation_recovery": ("perturbation_recovery_sigma0.3",),
}


def verdict_scores(scores: dict[str, float]) -> dict[str, float]:
    out = dict(scores)
    for evidence, keys in VERDICT_EVIDENCE.items():
        for k in keys:
            if k in scores and evidence not in out:
                out[evidence] = scores[k]
    return out


def get_analysis(name: str) -> Analysis:
    if name not in REGISTRY:
        raise ValueError(f"unknown analysis {name!r}; available: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]()


def result_key(analysis: str, models: ModelSet, data: AuditData, config) -> str:
    return make_key(analysis, {n: m.hash for n, m in models.all().items()}, data.hash, hash_config(config))


def run_analysis(analysis: Analysis, models: ModelSet, data: AuditData, store: ResultsStore | None,
                 config=None, progress: Progress | None = None) -> tuple[object, bool]:
    """(result, served_from_store). Results are computed at most once per (checkpoints, data, config)."""
    config = config if config is not None else analysis.default_config()

    def compute():
        with few_threads(model_params(models)):
            return analysis.compute(models, data, config, progress=progress)

    if store is None:
        return compute(), False
    key = result_key(analysis.name, models, data, config)
    return store.get_or_compute(
        key, compute, analysis=analysis.name,
        checkpoints={n: m.hash for n, m in models.all().items()}, data_hash=data.hash,
        config_hash=hash_config(config),
    )


def behaviour_status(scores: dict[str, float], original: dict[str, float]) -> str:
    """Behavioural reading only: whether the forget-set answers are gone relative to the original."""
    f, f0 = scores.get("forget_acc"), original.get("forget_acc")
    if f is None or f0 is None:
        return "unknown"
    return "looks forgotten" if f <= 0.5 * f0 else "not forgotten"


def run_audit(models: ModelSet, data: AuditData, analyses: list[str], out: Path, store: ResultsStore | None,
              progress: Progress | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"checkpoints": {}, "analyses": {}, "data_hash": data.hash,
                    "n_items": {"forget": len(data.forget), "retain": len(data.retain), "holdout": len(data.holdout)}}
    names = list(models.all())
    scores: dict[str, dict[str, float]] = {n: {} for n in names}
    for i, name in enumerate(analyses):
        analysis = get_analysis(name)

        def sub(frac: float, msg: str, i=i, title=analysis.title) -> None:
            if progress:
                progress((i + frac) / len(analyses), f"{title}: {msg}")

        result, cached = run_analysis(analysis, models, data, store, progress=sub)
        report["analyses"][name] = {"from_store": cached, "tables": []}
        for tname, df in analysis.tables(result).items():
            df.to_csv(out / f"{tname}.csv", index=False)
            report["analyses"][name]["tables"].append(f"{tname}.csv")
        for n in names:
            scores[n].update(analysis.scores(result, n))
    from unlearn_core.analyses.verdict import compute_verdict

    verdicts = compute_verdict({n: verdict_scores(scores[n]) for n in names}, original=models.original.name)
    report["verdict_rule"] = verdicts.rule
    verdicts.to_frame().to_csv(out / "verdicts.csv", index=False)
    for n in names:
        role = models.all()[n].role
        entry = {"role": role, "path": models.all()[n].path, "hash": models.all()[n].hash, "scores": scores[n]}
        if role != "original":
            v = verdicts.get(n)
            entry["behaviour"] = behaviour_status(scores[n], scores[models.original.name])
            entry.update(verdict=v.verdict, verdict_reason=v.reason, retention=v.retention,
                         retention_from=v.retention_from, evidence=v.evidence)
        report["checkpoints"][n] = entry
    report = _json_safe(report)
    (out / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    return report


def _json_safe(obj):
    """Strict JSON: NaN/inf (a metric that does not apply) become null; numpy scalars become floats."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, bool | str) or obj is None:
        return obj
    if isinstance(obj, int | float) or hasattr(obj, "item"):
        x = float(obj)
        return x if math.isfinite(x) else None
    return obj
