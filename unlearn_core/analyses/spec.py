"""What an analysis is, declared once: the leaf every analysis module imports (it imports no analysis back).

Each analysis package ends its `__init__` with `SPEC = AnalysisSpec(...)`; `analyses.registry` lists the names.
Every fact keyed by an analysis name lives here as a field, and nowhere else: its page (title, icon), its default
charts, what it can and cannot tell, whether the headline page and the CLI run it first, the verdict evidence it
provides with its control, axis and whether it counts (and why not), and its place in the longest-first order.
Adding an analysis is then its folder, its page file `views/<name>.py`, and one registry line.
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
# What an attack needs to hold (methods.md section 7):
#   "recoverable": the checkpoint alone (never the original's weights, its states or the forget answers): whoever
#       holds the checkpoint gets the answers back; only this axis can call a checkpoint "suppressed"
#   "edit_of_original": the original's weights or states: shows that the checkpoint is a small edit of the original
#       (undoing it needs the original), which is partly lineage, so it gets a call of its own
AXES = ("recoverable", "edit_of_original")


@dataclass(frozen=True)
class Evidence:
    key: str  # verdict evidence name, e.g. "quantization_recovery"
    label: str  # how the page and report name it
    control: str  # one of CONTROLS
    axis: str = "recoverable"  # one of AXES
    counted: bool = True  # counts toward the verdict under the default rule
    why_not: str = ""  # why it does not count by default (required when counted is False)
    level: str = ""  # how the attack's level is read (e.g. "mean answer-token p after the attack")

    def __post_init__(self):
        if self.control not in CONTROLS:
            raise ValueError(f"control must be one of {CONTROLS}, got {self.control!r}")
        if self.axis not in AXES:
            raise ValueError(f"axis must be one of {AXES}, got {self.axis!r}")
        if not self.counted and not self.why_not:
            raise ValueError(f"evidence {self.key!r} is not counted by default: say why (why_not)")
        if self.axis == "edit_of_original" and self.control != "reference":
            raise ValueError(f"evidence {self.key!r} reads the original: only the retain-only reference controls it")


@dataclass(frozen=True)
class Scope:
    """What a probe can and cannot tell, in one line on its page, before any number is read."""

    can: str
    cannot: str
    uses_original: str = ""  # what it takes from the original ("" = self-contained)

    def line(self) -> str:
        src = (f"Uses the original's {self.uses_original}: only the retain-only reference under the same probe is a "
               "control. " if self.uses_original else "Self-contained (nothing from the original). ")
        return f"**Can tell:** {self.can}. **Cannot tell:** {self.cannot}. {src}"


@dataclass(frozen=True)
class Shape:
    """What a config's model-dependent defaults are resolved against, known before any model is loaded."""

    n_layers: int  # decoder blocks of the original
    n_forget: int  # forget items
    n_params: int = 0  # parameters of the original (0: unknown; rules that scale with size keep their base value)


@dataclass(frozen=True)
class AnalysisSpec:
    name: str
    title: str  # page title, CLI progress and report heading
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
    page_title: str = ""  # the page's short title in the navigation and its heading ("" = title)
    icon: str = ":material/analytics:"  # the page's icon in the navigation
    # result -> {chart name: plotly Figure}: the charts exported for papers and checked at every print preset,
    # with the page's default choices (the page may offer more); imports plotly only when called
    plots: Callable[[object], dict[str, object]] | None = None
    scope: Scope | None = None  # the page's can / cannot line
    default_evidence: bool = False  # in the set the headline page runs first and the CLI runs by default
    cost_rank: int = 0  # longest-first order for workers when no timing is recorded (higher = longer)
    # (result, checkpoint names) -> the result over those checkpoints only, equal to computing it on them: declared
    # only where one checkpoint's numbers do not depend on the others in the set, so an audit of a subset of a stored
    # set computes nothing (run.jobs.serve; a test holds each one equal to a fresh computation)
    restrict: Callable[[object, tuple[str, ...]], object] | None = None
    # (data, config) -> why this analysis cannot run on these items ("" when it can): the compute raises with the
    # same text, and the CLI asks before loading any model, so a missing retain set is said before minutes of probes
    needs: Callable[[object, object], str] | None = None

    def __post_init__(self):
        if self.evidence and self.evidence_items is None:
            raise ValueError(f"{self.name}: an analysis that provides verdict evidence must give evidence_items")

    @property
    def page(self) -> tuple[str, str, str]:
        """(page file relative to the app, navigation title, icon): every analysis has the page views/<name>.py."""
        return f"views/{self.name}.py", self.page_title or self.title, self.icon

    def scope_line(self) -> str:
        return self.scope.line() if self.scope else ""


# The pre-spec name, kept so older notebooks importing `Analysis` still work.
Analysis = AnalysisSpec
