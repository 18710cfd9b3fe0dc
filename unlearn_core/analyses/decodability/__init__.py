"""Decodability probe: is the forgotten answer still linearly readable inside the checkpoint (issue 17, item 2)?

Probes that inject the ORIGINAL's states (SAE steering, patching) transplant the answer into any model that can read
it, so they cannot tell a retrained model from a suppressed one. This probe uses nothing from the original: for each
checkpoint separately and each decoder block output, a multinomial logistic regression is fitted on the checkpoint's
OWN hidden states of RETAIN facts, read at the last prompt token (the position that predicts the first answer
token), to predict that first answer token (classes = the first answer tokens seen in the retain set; features
standardised; L2 strength chosen by cross-validated log-loss on retain only; fixed seed). It is then applied to the
forget and holdout facts: per item, the probe's probability of the correct first token (0 when that token is not a
class). A suppressed checkpoint still carries the answer in a form the same readout that works for retain facts can
decode; a deleted one decodes forget facts no better than holdout facts it never learned.

Headline layer (no forget labels): per checkpoint, the block below the last whose probe has the highest
cross-validated retain accuracy (ties go to the deeper block). The last block output is excluded because that is
where the model's own readout lives: a head-only suppression rewrites exactly that, and the probe is meant to look
past it. The evidence is attacked = the probe's p of the true first token, its baseline ("plain") the uninformed
probe (the token's frequency among retain answers), and the ceiling of recovery the probe on the ORIGINAL
(calibration.ProbeItems.ceiling = "attacked"): 100% = as decodable as in the original, whatever the probe's own
accuracy. The model's own output p is not the baseline: a model is confidently wrong on facts it never learned, so
"probe minus output" is positive on holdout facts too (benchmarks/MEASUREMENTS.md).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from unlearn_core.analyses.spec import AnalysisSpec, Evidence, Scope
from unlearn_core.evidence.calibration import ProbeItems
from unlearn_core.evidence.recovery import recovery_rate
from unlearn_core.model import arch
from unlearn_core.model.hooks import capture_block_outputs
from unlearn_core.model.scoring import (
    Encoded,
    encode,
    input_device,
    last_prompt_mask,
    length_batches,
    pad_id_of,
    right_pad,
)
from unlearn_core.store.codec import register_result
from unlearn_core.types import AuditData, LoadedModel, ModelSet, Progress

SPLITS = ("forget", "retain", "holdout")
EVIDENCE_KEY = "decodability"
METRIC = "first answer token p"
LAYER_COLUMNS = ("model", "role", "layer", "headline", "C", "n_classes", "retain_cv_acc", "retain_cv_p",
                 "forget_acc", "forget_p", "holdout_acc", "holdout_p")
SUMMARY_COLUMNS = ("model", "role", "layer", "forget_plain_p", "forget_probe_p", "forget_attacked_p",
                   "holdout_plain_p", "holdout_probe_p", "holdout_attacked_p", "retain_cv_acc", "forget_acc",
                   "holdout_acc", "recovery_p")


@register_result
@dataclass(frozen=True)
class DecodabilityConfig:
    """c_grid: inverse L2 strengths tried (chosen per checkpoint and block by cross-validated retain log-loss);
    cv_folds: folds of that cross-validation; seed: fold shuffling; batch_size: prompts per forward pass (the
    default holds a whole lab in one pass); layer: headline block (negative counts from the end), None = per
    checkpoint the block below the last with the best cross-validated retain accuracy. solver, tol: sklearn's
    optimiser and its stopping tolerance. The probe is the optimum of a strictly convex objective, so the fit must
    reach it: sklearn's default (lbfgs at tol 1e-4) stopped early at the weak penalties, and on the default lab's
    npo the chosen C of one block and the probe's p (by up to 0.25) moved with the tolerance; newton-cg at 1e-6 gives
    the p of 1e-7 and of lbfgs run to 1e-8 within 0.008, in a third of the time lbfgs takes to get there (the whole
    analysis on the default lab: 17.7-18.2 s vs 16.2 s for the old fit that stopped short)."""

    c_grid: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)
    cv_folds: int = 5
    seed: int = 0
    batch_size: int = 512
    layer: int | None = None
    max_iter: int = 1000
    solver: str = "newton-cg"
    tol: float = 1e-6
    # which answer token is decoded: "first" = the first answer token; "first_new" = the first answer token that is
    # a word piece not already in the prompt, read at the position before it with the answer's words before it given
    # (on sentence answers, "Mira Vos works as a glassblower", the first token repeats the question's name and says
    # nothing of the fact); "auto" = "first_new" for answers of SENTENCE_WORDS words or more, else "first" (a short
    # answer is the value itself: its first token is the fact's first piece)
    target: str = "auto"

    def __post_init__(self):
        if not isinstance(self.c_grid, tuple) or not self.c_grid:
            raise ValueError(f"c_grid must be a non-empty tuple, got {self.c_grid!r}")
        for c in self.c_grid:
            if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or c <= 0:
                raise ValueError(f"c_grid values must be finite numbers > 0, got {c!r}")
        for name, lo in (("cv_folds", 2), ("batch_size", 1), ("max_iter", 10), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        if self.target not in ("auto", "first_new", "first"):
            raise ValueError(f"target must be 'auto', 'first_new' or 'first', got {self.target!r}")
        if self.layer is not None and (isinstance(self.layer, bool) or not isinstance(self.layer, int)):
            raise ValueError(f"layer must be an int or None, got {self.layer!r}")
        if self.solver not in ("newton-cg", "lbfgs"):
            raise ValueError(f"solver must be 'newton-cg' or 'lbfgs', got {self.solver!r}")
        if isinstance(self.tol, bool) or not isinstance(self.tol, (int, float)) or not 0 < self.tol < 1:
            raise ValueError(f"tol must be a number in (0, 1), got {self.tol!r}")


@register_result
@dataclass(frozen=True)
class DecodabilityResult:
    """Per checkpoint m: plain[m][split] = own output p of the first answer token [n_split]; probe[m][split] =
    probe p of it per block [L, n_split] (retain: out-of-fold); correct[m][split] = probe argmax hits [L, n_split];
    layer[m] = headline block; C[m] = chosen strength per block; prior[m][split] = the uninformed probe's p of the
    true first token (its frequency among the retain set's first answer tokens): the baseline of recovery."""

    roles: dict[str, str]
    plain: dict[str, dict[str, np.ndarray]]
    probe: dict[str, dict[str, np.ndarray]]
    correct: dict[str, dict[str, np.ndarray]]
    layer: dict[str, int]
    C: dict[str, tuple[float, ...]]
    n_classes: dict[str, int]  # distinct first answer tokens of the retain set (per tokenizer)
    original: str
    model_hashes: dict[str, str]
    data_hash: str
    config: DecodabilityConfig
    prior: dict[str, dict[str, np.ndarray]]

    def restrict(self, names) -> DecodabilityResult:
        """These checkpoints only: each one's probe is fitted on its own states, so its numbers are as computed."""
        from unlearn_core.analyses.common.subset import check_keeps, keep_keys

        keep = check_keeps(names, self.original)
        return replace(self, **{f: keep_keys(getattr(self, f), keep) for f in (
            "roles", "plain", "probe", "correct", "layer", "C", "n_classes", "model_hashes", "prior")})

    def attacked(self, model: str, split: str) -> np.ndarray:
        """The probe's p of the correct first answer token at the model's headline block."""
        return self.probe[model][split][self.layer[model]]

    def layers_frame(self) -> pd.DataFrame:
        rows = []
        for m, role in self.roles.items():
            for layer in range(self.probe[m]["forget"].shape[0]):
                row = {"model": m, "role": role, "layer": layer, "headline": layer == self.layer[m],
                       "C": self.C[m][layer], "n_classes": self.n_classes[m]}
                for split, col in (("retain", "retain_cv"), ("forget", "forget"), ("holdout", "holdout")):
                    row[f"{col}_acc"] = _mean(self.correct[m][split][layer])
                    row[f"{col}_p"] = _mean(self.probe[m][split][layer])
                rows.append(row)
        return pd.DataFrame(rows, columns=list(LAYER_COLUMNS))

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for m, role in self.roles.items():
            li = self.layer[m]
            row = {"model": m, "role": role, "layer": li,
                   "retain_cv_acc": _mean(self.correct[m]["retain"][li]),
                   "forget_acc": _mean(self.correct[m]["forget"][li]),
                   "holdout_acc": _mean(self.correct[m]["holdout"][li])}
            for split in ("forget", "holdout"):
                row[f"{split}_plain_p"] = _mean(self.plain[m][split])
                row[f"{split}_probe_p"] = _mean(self.probe[m][split][li])
                row[f"{split}_attacked_p"] = _mean(self.attacked(m, split))
            row["recovery_p"] = self._recovery(m)
            rows.append(row)
        return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))

    def _recovery(self, m: str) -> float:
        if m == self.original:
            return math.nan
        return recovery_rate(_mean(self.attacked(m, "forget")), _mean(self.prior[m]["forget"]),
                             _mean(self.attacked(self.original, "forget")))

    def scores(self, model_name: str) -> dict[str, float]:
        if model_name not in self.roles:
            return {}
        out = {"decodability_recovery": self._recovery(model_name),
               "decodability_layer": float(self.layer[model_name])}
        for split, col in (("forget", "forget"), ("holdout", "holdout"), ("retain", "retain_cv")):
            for layer, hits in enumerate(self.correct[model_name][split]):
                out[f"decodability_{col}_acc_L{layer}"] = _mean(hits)
        return out

    def evidence_items(self) -> dict[str, ProbeItems]:
        layers = sorted(set(self.layer.values()))
        attack = "retain-trained linear probe at block " + (
            str(layers[0]) if len(layers) == 1 else "chosen per checkpoint (" + ", ".join(
                f"{m}: {li}" for m, li in self.layer.items()) + ")")
        return {EVIDENCE_KEY: ProbeItems(
            key=EVIDENCE_KEY, attack=attack, metric=METRIC,
            forget_plain={m: self.prior[m]["forget"] for m in self.roles},
            forget_attacked={m: self.attacked(m, "forget") for m in self.roles},
            holdout_plain={m: self.prior[m]["holdout"] for m in self.roles},
            holdout_attacked={m: self.attacked(m, "holdout") for m in self.roles}, ceiling="attacked")}


def _mean(a: np.ndarray) -> float:
    return float(np.mean(a)) if len(a) else math.nan


@torch.no_grad()
def last_token_states(lm: LoadedModel, prompts: list[str], answers: list[str], batch_size: int,
                      target: str = "first"):
    """(states [L, n, d] float32 at the position that predicts the target token, for every block output, own p of the
    target token [n], target token ids [n]). One forward per batch; the default batch holds every item of an audit.
    target "first_new" (every answer) or "auto" (sentence answers): the answer's tokens before its first new token are
    moved into the prompt (key_token_split)."""
    model, tok = lm.model, lm.tokenizer
    enc = encode(tok, prompts, answers)
    if target != "first":
        enc = [key_token_split(e, tok) if target == "first_new" or len(a.split()) >= SENTENCE_WORDS else e
               for e, a in zip(enc, answers)]
    first = np.array([e.answer_ids[0] if e.answer_ids else -1 for e in enc], dtype=np.int64)
    n, L = len(enc), arch.n_layers(model)
    states = None
    plain = np.zeros(n, np.float64)
    for batch in length_batches([len(e.prompt_ids) for e in enc], batch_size):
        ids, mask = right_pad([list(enc[i].prompt_ids) for i in batch], pad_id_of(tok), input_device(model))
        last = last_prompt_mask([enc[i] for i in batch], ids.shape[1], ids.device)
        captured, logits = capture_block_outputs(model, ids, mask, with_logits=True, keep=last)  # [B, V]
        probs = torch.softmax(logits.float(), -1)
        gold = torch.tensor([max(int(first[i]), 0) for i in batch], device=ids.device)
        p = probs.gather(1, gold[:, None])[:, 0].cpu().double().numpy()
        plain[batch] = np.where(first[batch] >= 0, p, 0.0)
        for li in range(L):
            h = captured[li][last].float().cpu().numpy()  # [B, d]: one last prompt token per row
            if states is None:
                states = np.zeros((L, n, h.shape[1]), np.float32)
            states[li, batch] = h
    return states, plain, first


SENTENCE_WORDS = 4  # an answer of this many words or more is a sentence (TOFU), not a value


def key_token_split(e: Encoded, tokenizer) -> Encoded:
    """The encoding with the answer's tokens before its first new one (a token id absent from the prompt that holds
    a letter or digit) moved into the prompt; unchanged when the first answer token is new or none is."""
    seen = set(e.prompt_ids)
    for k, t in enumerate(e.answer_ids):
        if t not in seen and any(ch.isalnum() for ch in tokenizer.decode([t])):
            return e if k == 0 else Encoded(tuple(e.prompt_ids) + tuple(e.answer_ids[:k]), tuple(e.answer_ids[k:]))
    return e


def _fit(x: np.ndarray, y: np.ndarray, C: float, cfg: DecodabilityConfig):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=cfg.max_iter, solver=cfg.solver,
                                                             tol=cfg.tol))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings on tiny folds: the CV score already judges the fit
        clf.fit(x, y)
    return clf


def _true_p(clf, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probe p of each item's true class (0 when the class was not among the fit's classes) and argmax hits."""
    classes = clf.classes_
    proba = clf.predict_proba(x)
    col = np.searchsorted(classes, y)
    known = (col < len(classes)) & (classes[np.minimum(col, len(classes) - 1)] == y)
    p = np.where(known, proba[np.arange(len(y)), np.minimum(col, len(classes) - 1)], 0.0)
    return p, classes[proba.argmax(1)] == y


def _oof_path(xr: np.ndarray, yr: np.ndarray, folds, cfg: DecodabilityConfig) -> dict[float, tuple]:
    """Out-of-fold (p, hits) of every C of the grid. Within a fold the fits run from the strongest penalty to the
    weakest, each starting from the previous solution (warm start): the objective is strictly convex, so the
    optimum is the same and only the number of L-BFGS iterations falls (the fits were most of this analysis)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    out = {C: (np.zeros(len(yr)), np.zeros(len(yr), bool)) for C in cfg.c_grid}
    for tr, te in folds:
        if len(np.unique(yr[tr])) < 2:
            continue
        scaler = StandardScaler().fit(xr[tr])
        x_tr, x_te = scaler.transform(xr[tr]), scaler.transform(xr[te])
        clf = LogisticRegression(max_iter=cfg.max_iter, warm_start=True, solver=cfg.solver, tol=cfg.tol)
        for C in sorted(set(cfg.c_grid)):
            clf.set_params(C=C)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence warnings on tiny folds: the CV score judges the fit
                clf.fit(x_tr, yr[tr])
            out[C][0][te], out[C][1][te] = _true_p(clf, x_te, yr[te])
    return out


def fit_layer(xr: np.ndarray, yr: np.ndarray, tests: dict[str, tuple[np.ndarray, np.ndarray]],
              cfg: DecodabilityConfig) -> tuple[float, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Choose C by cross-validated retain log-loss, report out-of-fold retain (p, hits), refit on all retain and
    apply to the test splits. Everything here sees retain labels only; test labels only score the fixed probe."""
    from sklearn.model_selection import KFold

    folds = list(KFold(min(cfg.cv_folds, len(yr)), shuffle=True, random_state=cfg.seed).split(xr))
    path = _oof_path(xr, yr, folds, cfg)
    best = None
    for C in cfg.c_grid:
        p_oof, hit_oof = path[C]
        loss = -np.log(np.clip(p_oof, 1e-6, 1.0)).mean()
        if best is None or loss < best[0] - 1e-12:
            best = (loss, C, p_oof, hit_oof)
    _, C, p_oof, hit_oof = best
    clf = _fit(xr, yr, C, cfg)
    out = {"retain": (p_oof, hit_oof)}
    for split, (x, y) in tests.items():
        out[split] = _true_p(clf, x, y) if len(y) else (np.zeros(0), np.zeros(0, bool))
    return C, out


def headline_layer(retain_cv_acc: np.ndarray, layer: int | None) -> int:
    """The configured block, or the block below the last with the best CV retain accuracy (ties: deeper)."""
    L = len(retain_cv_acc)
    if layer is not None:
        if not -L <= layer < L:
            raise ValueError(f"layer {layer} out of range for a model with {L} blocks")
        return layer % L
    if L == 1:
        return 0
    cand = retain_cv_acc[: L - 1]
    return int(np.flatnonzero(cand >= cand.max() - 1e-12)[-1])


def _blas_threads(n_values: int, limit: int = 2**22):
    """One BLAS thread for small probe fits: on the default lab (160 retain x 128 features) two threads were slower
    (28.7 s vs 25.2 s) and, beside another worker, ran the analysis at 73 s."""
    from contextlib import nullcontext

    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1) if n_values <= limit else nullcontext()


def decodability_needs(data: AuditData, config: DecodabilityConfig) -> str:
    if len(data.retain) < 2 * config.cv_folds:
        return (f"the decodability probe needs at least {2 * config.cv_folds} retain items to fit and "
                f"cross-validate, got {len(data.retain)}")
    return ""


def compute_decodability(models: ModelSet, data: AuditData, config: DecodabilityConfig = DecodabilityConfig(),
                         progress: Progress | None = None) -> DecodabilityResult:
    if not isinstance(config, DecodabilityConfig):
        raise TypeError(f"config must be a DecodabilityConfig, got {type(config).__name__}")
    why = decodability_needs(data, config)
    if why:
        raise ValueError(why)
    fmt = data.prompt_format
    pairs = {s: [fmt.pair(it) for it in getattr(data, s)] for s in SPLITS}
    bounds = np.cumsum([0] + [len(pairs[s]) for s in SPLITS])
    prompts = [p for s in SPLITS for p, _ in pairs[s]]
    answers = [a for s in SPLITS for _, a in pairs[s]]
    checkpoints = list(models.all().values())
    roles, plain, probe, correct, layer, Cs, n_classes, prior = {}, {}, {}, {}, {}, {}, {}, {}
    for mi, lm in enumerate(checkpoints):
        if progress is not None:
            progress(mi / len(checkpoints), f"{lm.name}: hidden states and probes")
        states, own, first = last_token_states(lm, prompts, answers, config.batch_size, config.target)
        sl = {s: slice(bounds[i], bounds[i + 1]) for i, s in enumerate(SPLITS)}
        yr = first[sl["retain"]]
        n_classes[lm.name] = len(np.unique(yr))
        if n_classes[lm.name] < 2:
            raise ValueError("the retain set's answers start with fewer than 2 distinct tokens: nothing to classify")
        per = {s: ([], []) for s in SPLITS}
        Cs[lm.name] = []
        for li in range(states.shape[0]):
            tests = {s: (states[li, sl[s]], first[sl[s]]) for s in ("forget", "holdout")}
            with _blas_threads(states[li, sl["retain"]].size):
                C, out = fit_layer(states[li, sl["retain"]], yr, tests, config)
            Cs[lm.name].append(float(C))
            for s in SPLITS:
                per[s][0].append(out[s][0])
                per[s][1].append(out[s][1])
        roles[lm.name] = lm.role
        plain[lm.name] = {s: own[sl[s]] for s in SPLITS}
        vals, counts = np.unique(yr, return_counts=True)
        freq = dict(zip(vals.tolist(), (counts / counts.sum()).tolist(), strict=True))
        prior[lm.name] = {s: np.array([freq.get(int(y), 0.0) for y in first[sl[s]]], np.float64) for s in SPLITS}
        probe[lm.name] = {s: np.stack(per[s][0]).astype(np.float64) for s in SPLITS}
        correct[lm.name] = {s: np.stack(per[s][1]).astype(bool) for s in SPLITS}
        layer[lm.name] = headline_layer(correct[lm.name]["retain"].mean(1), config.layer)
        Cs[lm.name] = tuple(Cs[lm.name])
    if progress is not None:
        progress(1.0, "decodability done")
    return DecodabilityResult(roles, plain, probe, correct, layer, Cs, n_classes, models.original.name,
                              {n: m.hash for n, m in models.all().items()}, data.hash, config, prior)


def _plots(r) -> dict:
    """The charts exported for papers, with the page's default choices."""
    from unlearn_core.analyses.decodability.plots import plot_decodability_layers, plot_decodability_summary

    return {"decodability_layers": plot_decodability_layers(r, "forget_acc"),
            "decodability_summary": plot_decodability_summary(r)}


SPEC = AnalysisSpec(
    name="decodability", title="Decodability probe (retain-trained linear probe)",
    default_config=DecodabilityConfig, compute=compute_decodability,
    tables=lambda r: {"decodability_summary": r.to_frame(), "decodability_layers": r.layers_frame()},
    scores=lambda r, name: r.scores(name),
    evidence=(Evidence(EVIDENCE_KEY, "answer decodable by a retain-trained linear probe", "reference+holdout",
                       axis="recoverable", level="probe p of the answer's first token"),),
    evidence_items=lambda r: r.evidence_items(),
    page_title="Decodability probe",
    icon=":material/manage_search:",
    plots=_plots,
    cost_rank=10,
    scope=Scope("whether the answer's first token is linearly decodable from the checkpoint's own "
                "hidden states", "anything about later answer tokens, or a non-linear encoding"),
    default_evidence=True,
    needs=decodability_needs,
    restrict=lambda r, names: r.restrict(names),
)
