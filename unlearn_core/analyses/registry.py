"""The one registry of analyses, used by the CLI, the dashboard and the tests alike.

An analysis is registered by naming its package here; the package declares `SPEC` (analyses.spec), and every
list the dashboard and the CLI need (navigation, default evidence, the workers' order, the charts) is read from the
specs. Packages are imported on first use, so importing the registry stays cheap. The merge of every analysis's
flat scores is defined here and nowhere else.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable

from unlearn_core.analyses.spec import AnalysisSpec, Evidence, Shape

# The one list of analyses: each name is a package under unlearn_core.analyses whose __init__ declares SPEC. The order
# is the order of the CLI help, the navigation and of score merging.
ANALYSES: tuple[str, ...] = (
    "scorecard",
    "attribution",
    "keyword_recovery",
    "decodability",
    "sae_restoration",
    "patching",
    "concept_vectors",
    "quantization",
    "prompt_variants",
    "update_revert",
    "relearning",
    "representation",
    "perturbation",
    "extraction",
)


def names() -> list[str]:
    return list(ANALYSES)


def get_spec(name: str) -> AnalysisSpec:
    if name not in ANALYSES:
        raise ValueError(f"unknown analysis {name!r}; available: {', '.join(ANALYSES)}")
    spec = importlib.import_module(f"unlearn_core.analyses.{name}").SPEC
    if spec.name != name:
        raise RuntimeError(f"unlearn_core.analyses.{name} declares SPEC {spec.name!r}")
    return spec


def specs() -> list[AnalysisSpec]:
    return [get_spec(n) for n in ANALYSES]


def default_evidence_set() -> tuple[str, ...]:
    """The evidence the headline page runs first and the CLI runs by default (SPEC.default_evidence)."""
    return tuple(s.name for s in specs() if s.default_evidence)


def more_evidence() -> tuple[str, ...]:
    """Analyses that provide verdict evidence beyond the default set: what the headline page offers next."""
    return tuple(s.name for s in specs() if s.evidence and not s.default_evidence)


def default_counted() -> tuple[str, ...]:
    """Evidence keys that count under the default rule (Evidence.counted), in registry order."""
    return tuple(ev.key for s in specs() for ev in s.evidence if ev.counted)


def cannot_run(analyses: Iterable[str], data, configs: dict[str, object] | None = None) -> dict[str, str]:
    """{analysis: why it cannot run on these items} for those whose data needs are not met."""
    out = {}
    for name in analyses:
        spec = get_spec(name)
        if spec.needs is not None:
            config = (configs or {}).get(name) or spec.default_config()
            why = spec.needs(data, config)
            if why:
                out[name] = why
    return out


def longest_first(analyses: Iterable[str]) -> list[str]:
    """By SPEC.cost_rank, longest first (the fallback order of workers when no timing is recorded); a name outside
    the registry goes first (its length is unknown)."""
    return sorted(analyses, key=lambda a: -get_spec(a).cost_rank if a in ANALYSES else -math.inf)


def __getattr__(name: str):
    if name == "DEFAULT_EVIDENCE_SET":  # computed from the specs on first use (importing them is not free)
        return default_evidence_set()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def all_evidence() -> dict[str, tuple[str, Evidence]]:
    """evidence key -> (analysis name, Evidence) for every registered analysis (imports them all)."""
    out: dict[str, tuple[str, Evidence]] = {}
    for name in ANALYSES:
        for ev in get_spec(name).evidence:
            if ev.key in out:
                raise RuntimeError(f"evidence {ev.key!r} declared by both {out[ev.key][0]} and {name}")
            out[ev.key] = (name, ev)
    return out


def resolve_config(name: str, config, shape: Shape):
    """The config with its automatic defaults resolved for these models and data (unchanged if it has none)."""
    spec = get_spec(name)
    return spec.resolve(config, shape) if spec.resolve is not None else config




def collect_scores(results: Iterable[tuple[str, object]], model_names: Iterable[str]) -> dict[str, dict[str, float]]:
    """Flat scores per checkpoint from (analysis name, result) pairs. A score name two analyses both report keeps
    the value of the analysis registered first (registry order, whatever order the results come in)."""
    ordered = sorted(results, key=lambda nr: ANALYSES.index(nr[0]))
    out: dict[str, dict[str, float]] = {m: {} for m in model_names}
    evidence = all_evidence()
    for name, result in ordered:
        spec = get_spec(name)
        for m in out:
            for k, v in spec.scores(result, m).items():
                if k in evidence:  # report.json would carry two numbers under one name
                    raise RuntimeError(f"{name} reports a score named like the verdict evidence {k!r}")
                out[m].setdefault(k, v)
    return out


def collect_evidence_items(results: Iterable[tuple[str, object]]) -> dict[str, tuple[Evidence, object]]:
    """evidence key -> (Evidence, calibration.ProbeItems) from whichever results provide them."""
    out: dict[str, tuple[Evidence, object]] = {}
    for name, result in results:
        spec = get_spec(name)
        if spec.evidence_items is None:
            continue
        items = spec.evidence_items(result)
        for ev in spec.evidence:
            if ev.key in items:
                out[ev.key] = (ev, items[ev.key])
    return out
