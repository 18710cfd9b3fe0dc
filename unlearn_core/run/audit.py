"""Headless audit: run the requested analyses over a workspace, serve repeats from the results store, calibrate the
recovery evidence against its controls and write report.json, verdicts.csv, evidence.csv and one CSV per table.

The dashboard's headline page calls `verdict_from_results` on the results it reads from the same store, so the CLI
and the dashboard give one verdict for one workspace.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

from unlearn_core.analyses import registry
from unlearn_core.analyses.settings import as_record
from unlearn_core.analyses.spec import AnalysisSpec, Shape
from unlearn_core.evidence.units import Units, entity_labels, units_for
from unlearn_core.evidence.verdict import VerdictConfig, VerdictResult, calibrate_all, compute_verdict
from unlearn_core.run import timing
from unlearn_core.run.jobs import (
    ResultsStore,
    checkpoints_to_compute,
    plan,
    plan_for,
    run_or_serve,
    shape_of,
    stored,
)
from unlearn_core.types import AuditData, ModelSet, Progress

__all__ = ["ResultsStore", "get_analysis", "plan", "plan_for", "result_key", "run_analysis", "run_audit",
           "run_or_serve", "shape_of", "store_key", "verdict_from_results"]

def get_analysis(name: str) -> AnalysisSpec:
    return registry.get_spec(name)


def store_key(name: str, checkpoint_hashes: dict[str, str], data_hash: str, config, shape: Shape) -> str:
    """The results-store key of one computation: content hashes and the RESOLVED config (jobs.plan)."""
    return plan(name, checkpoint_hashes, data_hash, config, shape).key


def result_key(analysis: str, models: ModelSet, data: AuditData, config) -> str:
    return plan_for(analysis, models, data, config).key


def run_analysis(analysis: AnalysisSpec, models: ModelSet, data: AuditData, store: ResultsStore | None,
                 config=None, progress: Progress | None = None) -> tuple[object, bool]:
    """(result, served_from_store). Results are computed at most once per (checkpoints, data, resolved config)."""
    return run_or_serve(plan_for(analysis, models, data, config), models, data, store, progress)


def cost_estimates(analyses: list, models: ModelSet, data: AuditData, store: ResultsStore,
                   configs: dict[str, object] | None = None, work: timing.Workload | None = None,
                   device: str | None = None) -> dict[str, timing.Estimate | None]:
    """Per analysis the store does not hold yet: its estimated wall time here, None without a timing record. work and
    device: the workload's size and device when the models are not loaded (planned_seconds), else read from them."""
    jobs = [plan_for(name, models, data, (configs or {}).get(name)) for name in analyses]
    todo = [job for job in jobs if not stored(job, store)]
    if not todo:  # everything stored: nothing to estimate, and no model read (one not loaded stays so)
        return {}
    work = work or timing.workload(models, data)
    device = device or timing.device_of(models)
    return {job.name: timing.estimate_for(store, job.name, replace(work, n_checkpoints=checkpoints_to_compute(
        job, store)), device, job.config_hash) for job in todo}


def planned_seconds(spec, models: ModelSet, data: AuditData, store: ResultsStore, analyses: list,
                    configs: dict[str, object] | None = None) -> dict[str, float]:
    """cost_estimates' seconds without loading a checkpoint (parameter counts from the safetensors headers; {} where
    they cannot be read): the CLI plans its processes, and the split of the longest analysis, from them while this
    process loads the checkpoints. An analysis without a timing record is left out."""
    from unlearn_core.checkpoints.memory import pick_device

    work = timing.workload_from_spec(spec, data)
    if work is None:
        return {}
    device = pick_device(spec.device, spec.max_memory)[0].type
    return {name: e.seconds for name, e in cost_estimates(analyses, models, data, store, configs, work, device).items()
            if e is not None}


def behaviour_status(scores: dict[str, float], original: dict[str, float]) -> str:
    """Behavioural reading only: whether the forget-set answers are gone relative to the original."""
    f, f0 = scores.get("forget_acc"), original.get("forget_acc")
    if f is None or f0 is None:
        return "unknown"
    return "looks forgotten" if f <= 0.5 * f0 else "not forgotten"


def resolve_rule(rule: VerdictConfig) -> VerdictConfig:
    """The rule with the evidence the analyses declare counted made explicit (so the rule text names them)."""
    return replace(rule, counted=registry.default_counted()) if rule.counted is None else rule


def data_units(data: AuditData | None) -> dict[str, Units] | None:
    """How each split is resampled: entities (the items' own entity field, else their concept, else the rule in
    evidence.units), then items within them."""
    if data is None:
        return None
    out = {}
    for split in ("forget", "holdout"):
        items = getattr(data, split)
        labels, _how = entity_labels(items)
        out[split] = units_for(labels, len(items))
    return out


def verdict_from_results(results: list[tuple[str, object]], models: ModelSet | dict[str, str],
                         rule: VerdictConfig = VerdictConfig(), data: AuditData | None = None
                         ) -> tuple[VerdictResult, dict[str, dict[str, float]]]:
    """The verdict and the flat scores from (analysis name, result) pairs: the one path CLI and dashboard share.

    models: a ModelSet, or {checkpoint name: role} when the models are not loaded (the dashboard reading the store).
    data: the audit's items, whose entities the intervals resample (without it, items are resampled).
    """
    rule = resolve_rule(rule)
    roles = {n: m.role for n, m in models.all().items()} if isinstance(models, ModelSet) else dict(models)
    original = next(n for n, r in roles.items() if r == "original")
    reference = next((n for n, r in roles.items() if r == "retain_only"), None)
    scores = registry.collect_scores(results, list(roles))
    items = registry.collect_evidence_items(results)
    evidence = calibrate_all(items, list(roles), original, reference, rule, data_units(data))
    return compute_verdict(scores, evidence, rule, original=original, reference=reference), scores


def run_audit(models: ModelSet, data: AuditData, analyses: list[str], out: Path, store: ResultsStore | None,
              progress: Progress | None = None, rule: VerdictConfig = VerdictConfig(),
              truth: dict[str, str] | None = None, configs: dict[str, object] | None = None,
              weights: dict[str, float] | None = None, command: list[str] | None = None) -> dict:
    """truth: {checkpoint: "suppressed" | "deleted"} for planted controls (the demo lab's lab.json): adds the
    probe-validity table. configs: analysis name -> config for those not run with their defaults. weights: each
    analysis' share of the progress fraction (timing.progress_weights: its estimated seconds), so the time left
    read from the fraction holds when one probe takes five times another; equal shares without. command: the
    command line, recorded in report.json's provenance (also written to OUT/provenance.json beside the CSVs)."""
    from unlearn_core.run.provenance import provenance, utility, with_utility

    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"provenance": provenance(models, data, command), "checkpoints": {}, "analyses": {},
                    "data_hash": data.hash,
                    "n_items": {"forget": len(data.forget), "retain": len(data.retain), "holdout": len(data.holdout)},
                    # every analysis's settings as it ran (defaults resolved for this model): a settings file
                    # (--settings) that reproduces the audit
                    "settings": {}}
    names = list(models.all())
    results: list[tuple[str, object]] = []
    shares = [float((weights or {}).get(a, 1.0)) for a in analyses]
    if sum(shares) <= 0:
        shares = [1.0] * len(analyses)
    starts = [sum(shares[:i]) / sum(shares) for i in range(len(analyses))]
    for i, name in enumerate(analyses):
        analysis = get_analysis(name)

        def sub(frac: float, msg: str, start=starts[i], share=shares[i] / sum(shares), title=analysis.title) -> None:
            if progress:
                progress(start + frac * share, f"{title}: {msg}")

        job = plan_for(analysis, models, data, (configs or {}).get(name))
        result, cached = run_or_serve(job, models, data, store, sub)
        results.append((name, result))
        report["analyses"][name] = {"from_store": cached, "tables": [], "store_key": job.key}
        report["settings"][name] = as_record(job.config)
        for tname, df in analysis.tables(result).items():
            df.to_csv(out / f"{tname}.csv", index=False)
            report["analyses"][name]["tables"].append(f"{tname}.csv")
    verdicts, scores = verdict_from_results(results, models, rule, data)
    report["verdict_rule"] = verdicts.rule
    report["reference"] = verdicts.reference
    labels, how = entity_labels(data.forget)
    units = units_for(labels, len(data.forget))
    report["units"] = {"forget": {"unit": units.unit, "n_units": units.n_units, "entities_from": how,
                                  "reason": units.reason}}
    with_utility(verdicts.to_frame(), scores, models.original.name).to_csv(out / "verdicts.csv", index=False)
    verdicts.evidence_frame().to_csv(out / "evidence.csv", index=False)
    if truth:
        from unlearn_core.evidence.validity import probe_validity

        items = registry.collect_evidence_items(results)
        validity = probe_validity(items, truth, models.original.name, verdicts.reference, resolve_rule(rule),
                                  data_units(data))
        validity.to_csv(out / "probe_validity.csv", index=False)
        report["probe_validity"] = validity.to_dict(orient="records")
    for n in names:
        role = models.all()[n].role
        entry = {"role": role, "path": models.all()[n].path, "hash": models.all()[n].hash, "scores": scores[n]}
        if role == "unlearned":
            v = verdicts.get(n)
            entry["behaviour"] = behaviour_status(scores[n], scores[models.original.name])
            entry["utility"] = utility(scores[n], scores[models.original.name])
            entry.update(verdict=v.verdict, verdict_reason=v.reason, deciding_axis=v.deciding_axis,
                         retention=v.retention, retention_lo=v.retention_lo, retention_hi=v.retention_hi,
                         retention_lo_level=v.retention_level, retention_from=v.retention_from,
                         control=v.control, unit=v.unit, counted=list(v.counted), not_counted=v.not_counted,
                         units_for_definite_call=None if math.isnan(v.items_for_call) else int(v.items_for_call),
                         call_with_more_units=v.call_if_more_items or None,
                         projection=v.projection() or None,
                         evidence={e.key: {"axis": e.axis, "control": e.control, "raw_level": e.raw,
                                           "control_level": e.control_value, "excess": e.excess, "ci_low": e.lo,
                                           "ci_high": e.hi, "unit": e.unit, "n_units": e.n_units,
                                           "n_items": e.n_items, "n_control": e.n_control, "n_seeds": e.n_seeds,
                                           "unit_reason": e.unit_reason, "attack": e.attack, "metric": e.metric}
                                   for e in v.evidence})
        report["checkpoints"][n] = entry
    deferred = getattr(models.original, "deferred", None)
    report["provenance"]["models_loaded"] = deferred is None or deferred.loaded  # False: every number was stored
    if deferred is not None and deferred.loaded:  # loaded during the run: where they actually are
        from unlearn_core.run.provenance import model_placement

        report["provenance"].update(model_placement(models))
    report = _json_safe(report)
    (out / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    sidecar = {**report["provenance"], "covers": ["report.json", "verdicts.csv", "evidence.csv"] + [
        t for a in report["analyses"].values() for t in a["tables"]], "settings": report["settings"],
        "store_keys": {a: r["store_key"] for a, r in report["analyses"].items()}, "data_hash": data.hash}
    (out / "provenance.json").write_text(json.dumps(sidecar, indent=2, allow_nan=False))
    return report


def _json_safe(obj):
    """Strict JSON: NaN/inf (a metric that does not apply) become null; numpy scalars become floats."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, bool | str | int) or obj is None:  # an int stays an int (settings read back as given)
        return obj
    if hasattr(obj, "item") and not isinstance(obj.item(), float):
        return obj.item()
    if isinstance(obj, float) or hasattr(obj, "item"):
        x = float(obj)
        return x if math.isfinite(x) else None
    return obj
