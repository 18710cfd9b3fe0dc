"""Layer-wise activation patching and the unlearning depth score UDS (methods.md section 4).

Why: restoration copies the original's feature values into the unlearned model. Patching asks the converse
question per layer: take the hidden states a SOURCE model computes at layer l over the answer span and splice them
into the ORIGINAL model. If the original's answer survives, the source's layer-l states still carry whatever the
original needs; if the answer log-prob drops by D_l, they do not. The retain-only model (never saw the forget set)
gives the drop a true deletion causes (D1_l); the unlearned model gives D2_l. Then

    UDS = sum_l D1_l * clip(D2_l / D1_l, 0, 1) / sum_l D1_l    over layers with D1_l > threshold

is the D1-weighted share of layers at which the unlearned model's states are as knowledge-free as a model that never
learned it. Direction: UDS = 1 means "as deep as retraining" (deleted everywhere, e.g. the retain-only model
itself); UDS = 0 means every layer's states still carry the knowledge (suppression downstream of all patched
layers). A checkpoint that only changed its last block (`suppressed_head`) therefore gets about the D1 share of
the last layer, not 0: its last block output IS knowledge-free for the original's head. Evidence of retention for
the verdict is 1 - UDS.

Patched positions: the "answer span" in the teacher-forced sense, i.e. positions p-1 .. p+a-2 whose outputs predict
the answer tokens (prompt length p, answer length a). Block outputs are replaced there, prompt positions keep the
original's states. All checkpoints must share the original's tokenizer (same token positions).

Verdict evidence "patching_retention" (control "reference"), per forget item i:
    plain_u(i)    = p~ of checkpoint u's own answer (u's own forward pass),
    attacked_u(i) = sum_l w_l p~(original with u's block-l output over the answer span)(i), the UDS patch,
    w_l           = D1_l / sum D1 over the layers UDS counts (D1_l > threshold); uniform without a reference.
Through calibration.calibrate the recovery is (mean attacked - mean plain) / (mean p~_original - mean plain): the
share of the answer gap that the ORIGINAL's machinery (its blocks above l, its prompt-position states, its head)
reads back out of u's layer-l states, D1-weighted over layers as UDS is. For the original itself attacked = plain
(patching its own states is the identity). UDS itself is a ratio of per-layer mean drops against the retain-only
model, D2_l / D1_l, clipped per layer; that ratio has no per-item plain/attacked form (the reference sits inside the
denominator), so the per-item form keeps UDS's patch and layer weights but compares with the reference
afterwards: calibrate subtracts the same quantity computed for the retain-only model (paired over items). The
probe copies the original into the checkpoint, so a model that can read the original's states "recovers": without
the retain-only reference it does not count. The weights are chosen with the reference's own drops (as UDS does),
which slightly favours the reference's recovery being low.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from unlearn_core.analyses.spec import AnalysisSpec, Evidence, Scope
from unlearn_core.evidence.calibration import ProbeItems
from unlearn_core.model.arch import decoder_layers
from unlearn_core.model.forward import answer_scores, answer_span_mask
from unlearn_core.model.hooks import hooked
from unlearn_core.model.scoring import Encoded, encode, input_device, length_batches, pad_id_of, right_pad
from unlearn_core.store.codec import register_result
from unlearn_core.types import AuditData, ModelSet, Progress

EVIDENCE_KEY = "patching_retention"


@register_result
@dataclass(frozen=True)
class PatchingConfig:
    """threshold: layers with D1 <= threshold (nats of mean answer log-prob) carry no weight in UDS;
    batch_size: rows per forward pass."""

    threshold: float = 0.05
    batch_size: int = 32

    def __post_init__(self):
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) or self.threshold < 0:
            raise ValueError(f"threshold must be a number >= 0, got {self.threshold!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")


@register_result
@dataclass(frozen=True)
class PatchingResult:
    """drops[source][l] = D_l: mean over forget items of LP(original) - LP(original with source's layer-l states
    over the answer span). uds[name] per unlearned checkpoint (NaN without a retain-only model)."""

    layers: tuple[int, ...]
    drops: dict[str, tuple[float, ...]]
    uds: dict[str, float]
    reference: str | None  # name of the retain-only model (source of D1)
    original_lp: float  # mean answer log-prob of the unpatched original on the forget set
    n_items: int
    rule: str
    model_hashes: dict[str, str]
    data_hash: str
    config: PatchingConfig
    original: str
    own_p: dict[str, np.ndarray]  # every model (original included): p~ of its own answer per forget item [n]
    patched_p: dict[str, np.ndarray]  # source -> p~ of the original patched with its block-l states [n_layers, n]

    def restrict(self, names) -> PatchingResult:
        """These checkpoints only: each source's drops are its own patches into the original; UDS and the layer
        weights read the retain-only model's drops, so without it in the subset they are a run without one."""
        from unlearn_core.analyses.common.subset import check_keeps, keep_keys

        keep = check_keeps(names, self.original)
        ref = self.reference if self.reference in keep else None
        uds = keep_keys(self.uds, keep) if ref is not None else {n: math.nan for n in self.uds if n in keep}
        return replace(self, drops=keep_keys(self.drops, keep), uds=uds, reference=ref,
                       model_hashes=keep_keys(self.model_hashes, keep), own_p=keep_keys(self.own_p, keep),
                       patched_p=keep_keys(self.patched_p, keep))

    def layer_weights(self) -> np.ndarray:
        """w_l of the per-item evidence: D1_l over the layers UDS counts, normalised; uniform without a reference
        (or when no layer counts)."""
        n = len(self.layers)
        d1 = np.asarray(self.drops[self.reference], np.float64) if self.reference in self.drops else np.zeros(n)
        w = np.where(d1 > self.config.threshold, d1, 0.0)
        return w / w.sum() if w.sum() > 0 else np.full(n, 1.0 / n)

    def evidence_items(self) -> dict[str, ProbeItems]:
        """Per forget item p~ plain (the checkpoint's own) and attacked (the original reading its states, the
        D1-weighted mean over layers): see the module docstring."""
        w = self.layer_weights()
        attacked = {n: w @ p for n, p in self.patched_p.items()}
        attacked[self.original] = self.own_p[self.original]  # patching the original into itself: the identity
        label = ("original reads the checkpoint's block outputs over the answer span (UDS patch), "
                 + ("D1-weighted over layers" if self.reference in self.drops else "mean over layers"))
        return {EVIDENCE_KEY: ProbeItems(key=EVIDENCE_KEY, attack=label, metric="answer p~",
                                         forget_plain=dict(self.own_p), forget_attacked=attacked)}

    def to_frame(self) -> pd.DataFrame:
        """One row per (checkpoint, layer): D (=D2), D1, clipped ratio and whether the layer counts."""
        d1 = self.drops.get(self.reference) if self.reference else None
        rows = []
        for name, drops in self.drops.items():
            for i, layer in enumerate(self.layers):
                ref = d1[i] if d1 else math.nan
                counted = bool(d1) and ref > self.config.threshold
                ratio = min(max(drops[i] / ref, 0.0), 1.0) if counted else math.nan
                rows.append({"model": name, "layer": layer, "drop": drops[i], "drop_retain_only": ref,
                             "clipped_ratio": ratio, "counted": counted})
        return pd.DataFrame(rows, columns=["model", "layer", "drop", "drop_retain_only", "clipped_ratio", "counted"])

    def uds_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"model": n, "uds": u, "one_minus_uds": 1 - u if not math.isnan(u) else math.nan}
                             for n, u in self.uds.items()], columns=["model", "uds", "one_minus_uds"])

    def scores(self, name: str) -> dict[str, float]:
        if name not in self.uds:
            return {}
        u = self.uds[name]
        return {"uds": u, "one_minus_uds": 1 - u if not math.isnan(u) else math.nan}


def uds_score(d1: list[float], d2: list[float], threshold: float = 0.05) -> float:
    """UDS = sum_l D1_l * clip(D2_l / D1_l, 0, 1) / sum_l D1_l over layers with D1_l > threshold (NaN if none)."""
    num = den = 0.0
    for a, b in zip(d1, d2, strict=True):
        if a > threshold:
            num += a * min(max(b / a, 0.0), 1.0)
            den += a
    return num / den if den > 0 else math.nan


@torch.no_grad()
def _states_and_lp(model, ids, mask, batch: list[Encoded]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Block outputs of every layer (list of [B, T, d]) and the model's own answer log-prob [B], one forward pass."""
    n = len(decoder_layers(model))
    store: list = [None] * n
    with ExitStack() as stack:
        for layer in range(n):
            stack.enter_context(hooked(model, layer, lambda h, layer=layer: store.__setitem__(layer, h)))
        lp = answer_scores(model, batch, ids, mask)[0]
    return store, lp


@torch.no_grad()
def _patched_lp(model, layer: int, ids, mask, span: torch.Tensor, source: torch.Tensor, batch) -> torch.Tensor:
    """[B] answer log-prob of `model` with block `layer`'s output over the answer span taken from `source`."""
    with hooked(model, layer, lambda h: torch.where(span[..., None], source.to(h.dtype), h)):  # [B, T, d]
        return answer_scores(model, batch, ids, mask)[0]


def compute_patching(models: ModelSet, data: AuditData, config: PatchingConfig = PatchingConfig(),
                     progress: Progress | None = None) -> PatchingResult:
    """D_l for every non-original checkpoint as source (the retain-only model's drops are D1) and UDS per checkpoint.

    Cost per length batch: 1 + n_sources * (1 + n_layers) forward passes of the original / sources.
    """
    if not isinstance(config, PatchingConfig):
        raise TypeError(f"config must be a PatchingConfig, got {type(config).__name__}")
    orig = models.original
    sources = {n: lm for n, lm in models.all().items() if n != orig.name}
    n_layers = len(decoder_layers(orig.model))
    for n, lm in sources.items():
        if len(decoder_layers(lm.model)) != n_layers:
            raise ValueError(f"{n} has {len(decoder_layers(lm.model))} blocks, the original {n_layers}")
    items = [it for it in data.forget]
    pairs = [data.prompt_format.pair(it) for it in items]
    enc = [e for e in encode(orig.tokenizer, [p for p, _ in pairs], [a for _, a in pairs]) if e.answer_ids]
    pad, device = pad_id_of(orig.tokenizer), input_device(orig.model)
    sums = {n: [0.0] * n_layers for n in sources}
    own_lp = {n: torch.zeros(len(enc)) for n in models.all()}
    patched_lp = {n: torch.zeros(n_layers, len(enc)) for n in sources}
    base_sum = 0.0
    batches = length_batches([len(e.ids) for e in enc], config.batch_size)
    for b, idx in enumerate(batches):
        if progress:
            progress(b / max(1, len(batches)), f"patching batch {b + 1}/{len(batches)}")
        batch = [enc[i] for i in idx]
        ids, mask = right_pad([e.ids for e in batch], pad, device)
        span = answer_span_mask(batch, ids.shape[1], device)
        base = answer_scores(orig.model, batch, ids, mask)[0]  # [B]
        base_sum += float(base.sum())
        own_lp[orig.name][idx] = base
        for n, lm in sources.items():
            src, own_lp[n][idx] = _states_and_lp(lm.model, ids.to(input_device(lm.model)),
                                                 mask.to(input_device(lm.model)), batch)
            for layer in range(n_layers):
                lp = _patched_lp(orig.model, layer, ids, mask, span, src[layer].to(device), batch)
                sums[n][layer] += float((base - lp).sum())
                patched_lp[n][layer, idx] = lp
    n = max(1, len(enc))
    drops = {name: tuple(v / n for v in s) for name, s in sums.items()}
    ref = models.retain_only.name if models.retain_only is not None else None
    uds = {name: (uds_score(list(drops[ref]), list(d), config.threshold) if ref else math.nan)
           for name, d in drops.items()}
    if progress:
        progress(1.0, "patching done")
    return PatchingResult(
        layers=tuple(range(n_layers)), drops=drops, uds=uds, reference=ref, original_lp=base_sum / n,
        n_items=len(enc),
        rule=f"UDS = sum_l D1_l clip(D2_l/D1_l, 0, 1) / sum_l D1_l over layers with D1_l > {config.threshold:g}; "
             "D_l = drop of the original's mean answer log-prob when block l's output over the answer span comes "
             "from the source (D1: retain-only, D2: this checkpoint). 1 = deleted at every layer, 0 = still "
             "present at every layer; retention evidence = 1 - UDS.",
        model_hashes={name: lm.hash for name, lm in models.all().items()}, data_hash=data.hash, config=config,
        original=orig.name, own_p={k: v.exp().double().numpy() for k, v in own_lp.items()},
        patched_p={k: v.exp().double().numpy() for k, v in patched_lp.items()},
    )


def _plots(r) -> dict:
    """The charts exported for papers, with the page's default choices."""
    from unlearn_core.analyses.patching.plots import plot_patching

    return {"patching": plot_patching(r)}


SPEC = AnalysisSpec(
    name="patching", title="Layer-wise patching (UDS)", default_config=PatchingConfig, compute=compute_patching,
    tables=lambda r: {"patching_layers": r.to_frame(), "patching_uds": r.uds_frame()},
    scores=lambda r, name: r.scores(name),
    evidence=(Evidence(EVIDENCE_KEY, "the original reads the answer back from the checkpoint's states (patching)",
                       "reference", axis="edit_of_original",
                       level="share of the answer log-prob drop the checkpoint's states undo"),),
    evidence_items=lambda r: r.evidence_items(),
    page_title="Activation patching",
    icon=":material/swap_horiz:",
    plots=_plots,
    cost_rank=1,
    scope=Scope("in which layers the knowledge still flows when the original's activations are patched in",
                "recovery by the checkpoint alone", "activations (patched in)"),
    default_evidence=True,
    restrict=lambda r, names: r.restrict(names),
)
