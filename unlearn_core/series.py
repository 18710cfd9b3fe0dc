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
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from unlearn_core.adapters import checkpoint_hash
from unlearn_core.analyses.verdict import VerdictConfig
from unlearn_core.arch import n_layers_from_config
from unlearn_core.audit import behaviour_status, get_analysis, run_analysis, verdict_from_results
from unlearn_core.placement import remaining
from unlearn_core.registry import store_key
from unlearn_core.spec import Shape
from unlearn_core.types import ModelSet
from unlearn_core.workspace import (
    CheckpointError,
    check_compatible,
    check_memory,
    inspect_checkpoint,
    load_model,
    pick_device,
)

STEP_DIR = re.compile(r"checkpoint-(\d+)")
SERIES_COLUMNS = ["series", "step", "checkpoint", "forget_acc", "retain_acc", "original_forget_acc", "behaviour",
                  "retention", "retention_lo", "retention_hi", "retention_from", "control", "verdict",
                  "first_looks_forgotten", "reading", "from_store", "seconds", "path"]
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class SeriesStep:
    series: str
    step: int
    path: str

    @property
    def name(self) -> str:
        return f"{self.series}@{self.step}"


def list_steps(folder: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every `checkpoint-N/` subfolder, sorted by N as a number (checkpoint-10 after -9)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: series folder not found")
    out = sorted((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := STEP_DIR.fullmatch(p.name)))
    if not out:
        raise CheckpointError(f"{folder}: no checkpoint-N subfolders; a series is a training run's output folder "
                              "(Hugging Face Trainer layout: checkpoint-500/, checkpoint-1000/, ...)")
    return out


def is_series_folder(folder: str | Path) -> bool:
    p = Path(folder).expanduser()
    return p.is_dir() and any(q.is_dir() and STEP_DIR.fullmatch(q.name) for q in p.iterdir())


def pick_steps(steps: list[int], every: int = 1) -> list[int]:
    """Every k-th step from the first, and always the last (where the run ended is the point of the run)."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    steps = sorted(steps)
    out = steps[::every]
    if steps and out[-1] != steps[-1]:
        out.append(steps[-1])
    return out


def expand_series(name: str, folder: str | Path, every: int = 1) -> list[SeriesStep]:
    """The picked steps of one series as checkpoints named `<name>@<step>`."""
    if not name or "@" in name:
        raise ValueError(f"series name must be non-empty and without '@': {name!r}")
    found = dict(list_steps(folder))
    return [SeriesStep(name, s, str(found[s])) for s in pick_steps(list(found), every)]


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
        self._shape = Shape(n_layers_from_config(cfg), len(data.forget))  # what run_analysis resolves against

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

    def _keys(self, step: SeriesStep) -> dict[str, str]:
        """The store key of every analysis for this step, from file hashes alone (audit.result_key's)."""
        hashes = {**self._hashes, step.name: checkpoint_hash(step.path, self.spec.original)}
        return {a: store_key(a, hashes, self.data.hash, self.configs.get(a) or get_analysis(a).default_config(),
                             self._shape) for a in self.analyses}

    def audit_step(self, step: SeriesStep, progress: Progress | None = None, stored_only: bool = False) -> dict | None:
        """One row of the series table; results come from the store when all are there (no model loaded).
        stored_only: None instead of computing a step the store does not fully have (a page opening instantly)."""
        t0 = time.perf_counter()
        results, from_store = [], True
        stored = {}
        if self.store is not None:
            for a, key in self._keys(step).items():
                try:
                    stored[a] = self.store.get_obj(key)
                except Exception:  # noqa: BLE001 - an undecodable old payload is recomputed below
                    stored[a] = None
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
                    result, cached = run_analysis(get_analysis(a), models, self.data, self.store,
                                                  config=self.configs.get(a), progress=progress)
                    results.append((a, result))
                    from_store = from_store and cached
            finally:
                del models, model
                gc.collect()
        roles = {"original": "original", step.name: "unlearned"}
        if "retain_only" in self.infos:
            roles["retain_only"] = "retain_only"
        verdicts, scores = verdict_from_results(results, roles, self.rule)
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
