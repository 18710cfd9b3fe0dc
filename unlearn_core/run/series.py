"""Checkpoint series: a training run's `checkpoint-N/` folders (Hugging Face Trainer layout, full models or LoRA
adapters) audited step by step, to see when the model starts to look forgotten and whether the knowledge inside
falls with it (deletion) or stays (suppression).

Each step is an ordinary checkpoint named `<series>@<step>`, audited in its OWN model set (original, the step,
the retain-only reference): the results store keys by every checkpoint hash of a set, so one set per step is what
makes a stored series re-open without loading a step and makes one more step compute only that step.
"""

from __future__ import annotations

import gc
import json
import math
import time
from pathlib import Path

import pandas as pd

from unlearn_core.analyses.spec import Shape
from unlearn_core.checkpoints.adapters import checkpoint_hash
from unlearn_core.checkpoints.inspect import check_compatible, inspect_checkpoint
from unlearn_core.checkpoints.load import load_model
from unlearn_core.checkpoints.memory import check_memory, pick_device
from unlearn_core.checkpoints.placement import remaining
from unlearn_core.checkpoints.series_layout import SeriesStep
from unlearn_core.evidence.verdict import VerdictConfig
from unlearn_core.model.arch import n_layers_from_config
from unlearn_core.run.audit import behaviour_status, verdict_from_results
from unlearn_core.run.jobs import Job, plan, run_or_serve, serve
from unlearn_core.types import ModelSet, Progress

SERIES_COLUMNS = ["series", "step", "checkpoint", "forget_acc", "retain_acc", "original_forget_acc", "behaviour",
                  "retention", "retention_lo", "retention_hi", "retention_from", "control", "verdict",
                  "first_looks_forgotten", "reading", "from_store", "seconds", "path"]


def first_looks_forgotten(rows: pd.DataFrame) -> float:
    """The first step whose behaviour reads "looks forgotten" (NaN if none): where unlearning starts to show."""
    hit = rows[rows["behaviour"] == "looks forgotten"]
    return float(hit["step"].min()) if len(hit) else math.nan


def reading(rows: pd.DataFrame, rule) -> str:
    """From the first forgotten step on: does the retention evidence fall with behaviour (deletion) or stay?"""
    first = first_looks_forgotten(rows)
    if math.isnan(first):
        return "never looks forgotten"
    after = rows[rows["step"] >= first]
    lo, hi = after["retention_lo"], after["retention_hi"]
    if (lo >= rule.suppressed_at).any():
        return "suppression: retention stays while behaviour falls"
    if hi.notna().all() and (hi < rule.suppressed_at).all():
        return "deletion: retention falls with behaviour"
    return "inconclusive"


class SeriesAuditor:
    """Audits series steps against one original and reference, loaded once; a step's model is loaded only when one
    of its results is not in the store, and released after its step."""

    def __init__(self, spec, data, analyses: list[str], store, rule: VerdictConfig | None = None,
                 configs: dict | None = None, loaded: ModelSet | None = None):
        """spec: a WorkspaceSpec (its original, retain_only and loading options are used); loaded: that spec's
        models when already loaded (the original and reference are then not loaded twice)."""
        self.spec, self.data, self.analyses, self.store = spec, data, list(analyses), store
        self.rule = rule or VerdictConfig()
        self.configs = configs or {}
        self.device, self.dtype = pick_device(spec.device, spec.max_memory)
        self.infos = {"original": inspect_checkpoint(spec.original, spec.allow_pickle)}
        if spec.retain_only:
            self.infos["retain_only"] = inspect_checkpoint(spec.retain_only, spec.allow_pickle, original=spec.original)
            check_compatible(self.infos["original"], {"retain_only": self.infos["retain_only"]})
        self._fixed: dict = {}
        if loaded is not None:
            self._fixed = {"original": loaded.original}
            if loaded.retain_only is not None:
                self._fixed["retain_only"] = loaded.retain_only
        self._hashes = {n: checkpoint_hash(i.path, spec.original) for n, i in self.infos.items()}
        orig = self.infos["original"]
        cfg = json.loads((Path(orig.adapter.base_path if orig.adapter else orig.path) / "config.json").read_text())
        # what run_analysis resolves against
        self._shape = Shape(n_layers_from_config(cfg), len(data.forget), orig.n_params)

    def fixed(self) -> dict:
        """The original and the reference, loaded on first need (a fully stored series needs only their hashes)."""
        if set(self._fixed) != set(self.infos):
            for n, info in self.infos.items():
                if n not in self._fixed:
                    self._fixed[n] = load_model(info, n, n, self.device, self.dtype, self.spec.trust_remote_code,
                                                self._budget(self._fixed.values()))
        return self._fixed

    def _budget(self, resident):
        """The max_memory budget left after the resident models (placement.remaining), None without one."""
        budget = self.spec.max_memory
        return remaining(budget, [lm.model for lm in resident]) if budget else None

    def _jobs(self, step: SeriesStep) -> dict[str, Job]:
        """The job of every analysis for this step, planned once from file hashes alone."""
        hashes = {**self._hashes, step.name: checkpoint_hash(step.path, self.spec.original)}
        return {a: plan(a, hashes, self.data.hash, self.configs.get(a), self._shape) for a in self.analyses}

    def audit_step(self, step: SeriesStep, progress: Progress | None = None, stored_only: bool = False) -> dict | None:
        """One row of the series table; results come from the store when all are there (no model loaded).
        stored_only: None instead of computing a step the store does not fully have (a page opening instantly)."""
        t0 = time.perf_counter()
        results, from_store = [], True
        jobs = self._jobs(step)
        stored = {a: serve(job, self.store) for a, job in jobs.items()} if self.store is not None else {}
        if self.store is not None and all(v is not None for v in stored.values()):
            results = [(a, stored[a]) for a in self.analyses]
        elif stored_only:
            return None
        else:
            info = inspect_checkpoint(step.path, self.spec.allow_pickle, original=self.spec.original)
            check_compatible(self.infos["original"], {step.name: info})
            check_memory({**self.infos, step.name: info}, self.device, self.dtype, max_memory=self.spec.max_memory)
            fixed = self.fixed()
            model = load_model(info, step.name, "unlearned", self.device, self.dtype,
                               self.spec.trust_remote_code, self._budget(fixed.values()))
            models = ModelSet(fixed["original"], {step.name: model}, fixed.get("retain_only"))
            try:
                for a in self.analyses:
                    result, cached = run_or_serve(jobs[a], models, self.data, self.store, progress)
                    results.append((a, result))
                    from_store = from_store and cached
            finally:
                del models, model
                gc.collect()
        roles = {"original": "original", step.name: "unlearned"}
        if "retain_only" in self.infos:
            roles["retain_only"] = "retain_only"
        verdicts, scores = verdict_from_results(results, roles, self.rule, self.data)
        v = verdicts.get(step.name)
        s = scores[step.name]
        return {"series": step.series, "step": step.step, "checkpoint": step.name,
                "forget_acc": s.get("forget_acc", math.nan), "retain_acc": s.get("retain_acc", math.nan),
                "original_forget_acc": scores["original"].get("forget_acc", math.nan),
                "behaviour": behaviour_status(s, scores["original"]), "retention": v.retention,
                "retention_lo": v.retention_lo, "retention_hi": v.retention_hi, "retention_from": v.retention_from,
                "control": v.control, "verdict": v.verdict, "from_store": from_store,
                "seconds": round(time.perf_counter() - t0, 3), "path": step.path}

    def audit(self, steps: list[SeriesStep], progress: Progress | None = None) -> pd.DataFrame:
        """The series table: one row per step, with the first forgotten step and the reading per series."""
        rows = []
        for i, step in enumerate(steps):
            def sub(frac: float, msg: str, i=i, step=step) -> None:
                if progress:
                    progress((i + frac) / len(steps), f"{step.name}: {msg}")

            rows.append(self.audit_step(step, sub))
        return series_table(rows, self.rule)


def series_table(rows: list[dict], rule) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=[c for c in SERIES_COLUMNS if c not in ("first_looks_forgotten", "reading")])
    df = df.sort_values(["series", "step"], kind="stable").reset_index(drop=True)
    df["first_looks_forgotten"] = math.nan
    df["reading"] = ""
    for _name, part in df.groupby("series", sort=False):
        df.loc[part.index, "first_looks_forgotten"] = first_looks_forgotten(part)
        df.loc[part.index, "reading"] = reading(part, rule)
    return df[SERIES_COLUMNS]
