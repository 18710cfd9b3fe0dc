"""The one registry of analyses, used by the CLI, the dashboard and the tests alike.

An analysis is registered by naming its module here; the module declares `SPEC` (unlearn_core.spec). Modules are
imported on first use, so importing the registry stays cheap. Store keys and the merge of every analysis's flat
scores are defined here and nowhere else.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from unlearn_core.hashing import hash_config
from unlearn_core.spec import AnalysisSpec, Evidence, Shape
from unlearn_core.store import make_key

# analysis name -> module under unlearn_core.analyses; the order is the order of the CLI help and of score merging
ANALYSES: dict[str, str] = {
    "scorecard": "behaviour",
    "attribution": "attribution",
    "keyword_recovery": "keyword_emphasis",
    "decodability": "decodability",
    "sae_restoration": "sae_restoration",
    "patching": "patching",
    "concept_vectors": "concept_vectors",
    "quantization": "quantization",
    "update_revert": "update_revert",
    "relearning": "relearning",
    "representation": "representation",
    "perturbation": "perturbation",
    "extraction": "extraction",
}

# The evidence the headline page runs first and the CLI runs by default: the behavioural half and the probes that
# separate the demo lab's planted controls (unlearn_core.validity), in seconds on the demo lab.
DEFAULT_EVIDENCE_SET: tuple[str, ...] = ("scorecard", "decodability", "patching", "relearning", "update_revert")


def names() -> list[str]:
    return list(ANALYSES)


def get_spec(name: str) -> AnalysisSpec:
    if name not in ANALYSES:
        raise ValueError(f"unknown analysis {name!r}; available: {', '.join(ANALYSES)}")
    spec = importlib.import_module(f"unlearn_core.analyses.{ANALYSES[name]}").SPEC
    if spec.name != name:
        raise RuntimeError(f"module {ANALYSES[name]} declares SPEC {spec.name!r}, registered as {name!r}")
    return spec


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


def store_key(name: str, checkpoint_hashes: dict[str, str], data_hash: str, config, shape: Shape) -> str:
    """The results-store key of one computation: content hashes and the RESOLVED config."""
    return make_key(name, checkpoint_hashes, data_hash, hash_config(resolve_config(name, config, shape)))


def collect_scores(results: Iterable[tuple[str, object]], model_names: Iterable[str]) -> dict[str, dict[str, float]]:
    """Flat scores per checkpoint from (analysis name, result) pairs. A score name two analyses both report keeps
    the value of the analysis registered first (registry order, whatever order the results come in)."""
    ordered = sorted(results, key=lambda nr: list(ANALYSES).index(nr[0]))
    out: dict[str, dict[str, float]] = {m: {} for m in model_names}
    for name, result in ordered:
        spec = get_spec(name)
        for m in out:
            for k, v in spec.scores(result, m).items():
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
