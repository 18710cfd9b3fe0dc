"""What an analysis is, declared once: the leaf every analysis module imports (it imports no analysis back).

Each analysis module ends with `SPEC = AnalysisSpec(...)`; `unlearn_core.registry` finds it by name. The spec
names the verdict evidence the analysis provides and the CONTROL each piece of evidence can be calibrated against
(methods.md section 6), so the calibrated verdict needs no per-analysis code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# How a probe's recovery can be told apart from the false recovery the same attack produces on a deletion:
#   "reference+holdout": a self-contained attack (it is given no forget answers): calibrated against the retain-only
#       reference run on the same items, or, without a reference, against the holdout split of the same checkpoint
#   "reference": the probe copies the ORIGINAL's states or logits into the checkpoint, so any model that can read
#       them "recovers": only the retain-only reference is a control; without one the number does not count
CONTROLS = ("reference+holdout", "reference")


@dataclass(frozen=True)
class Evidence:
    key: str  # verdict evidence name, e.g. "quantization_recovery"
    label: str  # how the page and report name it
    control: str  # one of CONTROLS

    def __post_init__(self):
        if self.control not in CONTROLS:
            raise ValueError(f"control must be one of {CONTROLS}, got {self.control!r}")


@dataclass(frozen=True)
class Shape:
    """What a config's model-dependent defaults are resolved against, known before any model is loaded."""

    n_layers: int  # decoder blocks of the original
    n_forget: int  # forget items


@dataclass(frozen=True)
class AnalysisSpec:
    name: str
    title: str
    default_config: Callable[[], object]  # the config class (a frozen dataclass with defaults)
    compute: Callable[..., object]  # (models, data, config, progress=None) -> result
    tables: Callable[[object], dict[str, object]]  # result -> {table name: DataFrame}
    scores: Callable[[object, str], dict[str, float]]  # (result, checkpoint name) -> flat scores for report.json
    evidence: tuple[Evidence, ...] = ()  # verdict evidence this analysis provides
    # result -> {evidence key: calibration.ProbeItems}: the per-item numbers the calibrated verdict reads
    evidence_items: Callable[[object], dict[str, object]] | None = None
    # (config, Shape) -> the same config with its automatic defaults made explicit (layer=None -> the layer it
    # means), so one computation has one store key whether the user left the default or typed its value
    resolve: Callable[[object, Shape], object] | None = None

    def __post_init__(self):
        if self.evidence and self.evidence_items is None:
            raise ValueError(f"{self.name}: an analysis that provides verdict evidence must give evidence_items")


# The pre-spec name, kept so older notebooks importing `Analysis` still work.
Analysis = AnalysisSpec
