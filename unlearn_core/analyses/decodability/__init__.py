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

Real models answer in sentences about invented entities, where no forget answer's token is a retain answer's: a
classifier over retain classes cannot name them (p = 0 for every checkpoint). There the readout is a tuned lens
(Belrose et al. 2023, fitted in closed form): per block an affine map to the last block's states, ridge-fitted on
every position of the retain facts and shrunk towards the identity, read through the checkpoint's own final norm and
unembedding, so any token can come out; at the last block it is the model's own output. On sentences the decoded
token is where the answer parts from its perturbed answers (the fact), not the sentence's first token.

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
from dataclasses import dataclass, field, fields, replace

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
METRIC = "key answer token p"
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
    # nothing of the fact); "first_distinct" = the first token at which the answer parts from the perturbed answer
    # closest to it (perturbed answers change the fact and keep the sentence: " glass" of "works as a glassblower"
    # against "works as a cartographer"; first_new also read "works", a word of the template); "auto" =
    # "first_distinct" for answers of SENTENCE_WORDS words or more that have perturbed answers, "first_new" for other
    # sentences, else "first" (a short answer is the value itself: its first token is the fact's first piece)
    target: str = field(default="auto", metadata={"choices": ("auto", "first_distinct", "first_new", "first")})
    # how the probe reads a token out of a block's states: "classes" = the logistic regression over the retain
    # answers' target tokens; "vocab" = a tuned-lens translator (an affine map from the block's states to the last
    # block's, fitted by ridge regression on every position of the retain facts, shrunk towards the identity) read
    # through the checkpoint's own final norm and unembedding: any token of the vocabulary can come out;
    # "auto" = "classes" when most forget and holdout target tokens are retain classes, else "vocab" (a classifier
    # gives 0 to a class it never saw: on invented sentence answers few forget targets are retain classes; "auto" keeps
    # the classifier when at least half of the forget and holdout targets are retain classes, resolve_readout)
    readout: str = field(default="auto", metadata={"choices": ("auto", "classes", "vocab")})
    ridge_grid: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)  # translator penalties, x the mean feature variance
    vocab_rows: int = 4096  # retain positions the translator is fitted on (an even subsample when there are more)

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
        for f in fields(self):  # the closed sets the fields declare (the pages offer them as a pick list)
            if "choices" in f.metadata and getattr(self, f.name) not in f.metadata["choices"]:
                raise ValueError(f"{f.name} must be one of {', '.join(map(repr, f.metadata['choices']))}, "
                                 f"got {getattr(self, f.name)!r}")
        if not isinstance(self.ridge_grid, tuple) or not self.ridge_grid or any(
                isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a) or a <= 0
                for a in self.ridge_grid):
            raise ValueError(f"ridge_grid must be a non-empty tuple of numbers > 0, got {self.ridge_grid!r}")
        if isinstance(self.vocab_rows, bool) or not isinstance(self.vocab_rows, int) or self.vocab_rows < 16:
            raise ValueError(f"vocab_rows must be an int >= 16, got {self.vocab_rows!r}")
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
    n_classes: dict[str, int]  # distinct target tokens of the retain set (the classifier), or the vocabulary (the lens)
    original: str
    model_hashes: dict[str, str]
    data_hash: str
    config: DecodabilityConfig
    prior: dict[str, dict[str, np.ndarray]]
    readout: str = "classes"  # the readout that ran ("classes" or "vocab": config.readout "auto" resolved)

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
        kind = "linear probe" if self.readout == "classes" else "tuned lens (vocabulary)"
        attack = f"retain-trained {kind} at block " + (
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


def key_encodings(tokenizer, prompts: list[str], answers: list[str], target: str = "first",
                  perturbed: list[list[str]] | None = None) -> list[Encoded]:
    """Each item encoded so that its answer starts at the token the probe decodes (config.target): the answer's
    tokens before it are moved into the prompt."""
    enc = encode(tokenizer, prompts, answers)
    if target == "first":
        return enc
    out = []
    for i, (e, a) in enumerate(zip(enc, answers)):
        rule = target
        if target == "auto":
            rule = "first" if len(a.split()) < SENTENCE_WORDS else (
                "first_distinct" if perturbed is not None and perturbed[i] else "first_new")
        if rule == "first_distinct":
            wrong = [tuple(x) for x in tokenizer(list(perturbed[i]), add_special_tokens=False)["input_ids"]] \
                if perturbed is not None and perturbed[i] else []
            e = distinct_token_split(e, wrong, tokenizer)
        elif rule == "first_new":
            e = key_token_split(e, tokenizer)
        out.append(e)
    return out


@torch.no_grad()
def last_token_states(lm: LoadedModel, prompts: list[str], answers: list[str], batch_size: int,
                      target: str = "first", perturbed: list[list[str]] | None = None):
    """(states [L, n, d] float32 at the position that predicts the target token, for every block output, own p of the
    target token [n], target token ids [n]). One forward per batch; the default batch holds every item of an audit.
    target: see DecodabilityConfig.target (perturbed: each item's perturbed answers, formatted as its answer)."""
    model, tok = lm.model, lm.tokenizer
    enc = key_encodings(tok, prompts, answers, target, perturbed)
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


def distinct_token_split(e: Encoded, wrong: list[tuple[int, ...]], tokenizer) -> Encoded:
    """The encoding split at the first answer token that differs from the perturbed answer sharing the longest
    prefix with it (perturbed answers keep the sentence and change the fact); first_new's split when there is none
    or the answer is a prefix of one."""
    k = max((_common_prefix(e.answer_ids, w) for w in wrong), default=-1)
    if k < 0 or k >= len(e.answer_ids):
        return key_token_split(e, tokenizer)
    return Encoded(tuple(e.prompt_ids) + tuple(e.answer_ids[:k]), tuple(e.answer_ids[k:]))


def _common_prefix(a, b) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


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


def resolve_readout(readout: str, retain_targets: np.ndarray, test_targets: np.ndarray) -> str:
    """config.readout "auto": the classifier when it can name most (at least half) of the forget and holdout targets,
    else the lens. Answers from a closed set shared across splits (the small labs' values: 94-100 % of targets are
    retain classes) keep the classifier, which scores the rest 0 on both splits alike; invented sentence answers
    (the SmolLM2 lab, TOFU: none or few) get a readout that can name them."""
    if readout != "auto":
        return readout
    known = np.isin(test_targets, retain_targets)
    return "classes" if len(known) and known.mean() >= 0.5 else "vocab"


@torch.no_grad()
def retain_positions(lm: LoadedModel, enc: list[Encoded], batch_size: int, rows: int, seed: int):
    """(states [L, N, d] float32 at positions of the retain facts, prompt and answer, but never a sequence's first
    (a BOS state is an outlier of the residual stream); item of each row [N]): what the lens translators are fitted
    on. At most `rows` positions, an even random choice made before any forward pass (fixed seed), and batches of at
    most ~1 GiB of captured states, so a large retain set of a wide model stays in memory."""
    model, tok = lm.model, lm.tokenizer
    L = arch.n_layers(model)
    seqs = [e.ids for e in enc]
    where = [(i, t) for i, x in enumerate(seqs) for t in range(1, len(x))]
    if len(where) > rows:
        where = [where[k] for k in np.sort(np.random.default_rng(seed).choice(len(where), rows, replace=False))]
    wanted: dict[int, list[int]] = {}
    for i, t in where:
        wanted.setdefault(i, []).append(t)
    d = int(model.get_output_embeddings().weight.shape[1])
    max_tokens = max(256, 2**30 // (4 * d * L))
    chunks: list[list[np.ndarray]] = [[] for _ in range(L)]
    items: list[np.ndarray] = []
    todo = sorted(wanted)
    for batch in length_batches([len(seqs[i]) for i in todo], batch_size, max_tokens):
        rows_of = [todo[b] for b in batch]
        ids, mask = right_pad([seqs[i] for i in rows_of], pad_id_of(tok), input_device(model))
        keep = torch.zeros_like(mask, dtype=torch.bool)
        for r, i in enumerate(rows_of):
            keep[r, wanted[i]] = True
        captured = capture_block_outputs(model, ids, mask)
        for li in range(L):
            chunks[li].append(captured[li][keep].float().cpu().numpy())
        items.append(np.repeat(np.array(rows_of), [len(wanted[i]) for i in rows_of]))
    return np.stack([np.concatenate(c) for c in chunks]), np.concatenate(items)


class _Readout:
    """The checkpoint's own output head: final norm, then unembedding (a lens reads a block's translated states
    through it)."""

    def __init__(self, model):
        self.norm = arch.final_norm(model)
        self.head = model.get_output_embeddings()
        self.device, self.dtype = self.head.weight.device, self.head.weight.dtype

    @torch.no_grad()
    def normed(self, h: torch.Tensor) -> torch.Tensor:
        h = h.to(self.device, self.dtype)
        return (self.norm(h) if self.norm is not None else h).float()

    @torch.no_grad()
    def true_p(self, h: torch.Tensor, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(y):
            return np.zeros(0), np.zeros(0, bool)
        logits = self.head(self.normed(h).to(self.dtype)).float()
        probs = torch.softmax(logits, -1)
        gold = torch.as_tensor(y, device=probs.device)
        p = probs.gather(1, gold[:, None])[:, 0].double().cpu().numpy()
        return p, (probs.argmax(1) == gold).cpu().numpy()


def _ridge_maps(x: torch.Tensor, y: torch.Tensor, alphas: tuple[float, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(A, b) per alpha of y ~ x + x A + b, ridge on A (shrunk towards the identity map): penalty alpha x the mean
    eigenvalue of the centred x'x, so one grid fits every width and scale."""
    mx, r = x.mean(0), y - x
    mr = r.mean(0)
    xc, rc = x - mx, r - mr
    e, v = torch.linalg.eigh(xc.T @ xc)
    g = v.T @ (xc.T @ rc)
    scale = float(e.clamp_min(0).mean())
    out = []
    for a in alphas:
        A = v @ (g / (e.clamp_min(0) + a * scale + 1e-12)[:, None])
        out.append((A, mr - mx @ A))
    return out


def fit_lens_layer(x: np.ndarray, y: np.ndarray, item: np.ndarray, key_retain: np.ndarray, retain_targets: np.ndarray,
                   tests: dict[str, tuple[np.ndarray, np.ndarray]], readout: _Readout, folds,
                   cfg: DecodabilityConfig) -> tuple[float, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """One block's tuned-lens translator: alpha chosen by the folds' error of the translated states after the final
    norm (held-out retain items, never their key positions' labels), out-of-fold (p, hits) of the retain key tokens
    at that alpha, then refitted on every retain position and applied to the test splits' key states."""
    X, Y = torch.from_numpy(x).double(), torch.from_numpy(y).double()
    K = torch.from_numpy(key_retain).double()
    err = np.zeros(len(cfg.ridge_grid))
    oof = [torch.zeros_like(K) for _ in cfg.ridge_grid]
    for tr_items, te_items in folds:
        tr, te = np.isin(item, tr_items), np.isin(item, te_items)
        if not tr.any() or not te.any():
            continue
        target = readout.normed(Y[te])
        for k, (A, b) in enumerate(_ridge_maps(X[tr], Y[tr], cfg.ridge_grid)):
            err[k] += float(((readout.normed(X[te] + X[te] @ A + b) - target) ** 2).sum())
            kt = torch.from_numpy(te_items)
            oof[k][kt] = K[kt] + K[kt] @ A + b
    best = int(np.argmin(err))
    out = {"retain": readout.true_p(oof[best], retain_targets)}
    A, b = _ridge_maps(X, Y, (cfg.ridge_grid[best],))[0]
    for split, (xs, ys) in tests.items():
        T = torch.from_numpy(xs).double()
        out[split] = readout.true_p(T + T @ A + b, ys)
    return float(cfg.ridge_grid[best]), out


def _lens_inputs(lm: LoadedModel, prompts: list[str], answers: list[str], perturbed: list[list[str]],
                 cfg: DecodabilityConfig):
    """(retain states at every position [L, N, d], item per row, folds over retain items, the output head)."""
    from sklearn.model_selection import KFold

    enc = key_encodings(lm.tokenizer, prompts, answers, cfg.target, perturbed)
    xs, row_item = retain_positions(lm, enc, cfg.batch_size, cfg.vocab_rows, cfg.seed)
    n = len(enc)
    folds = list(KFold(min(cfg.cv_folds, n), shuffle=True, random_state=cfg.seed).split(np.arange(n)))
    return xs, row_item, folds, _Readout(lm.model)


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
    items = [it for s in SPLITS for it in getattr(data, s)]
    pairs = {s: [fmt.pair(it) for it in getattr(data, s)] for s in SPLITS}
    bounds = np.cumsum([0] + [len(pairs[s]) for s in SPLITS])
    prompts = [p for s in SPLITS for p, _ in pairs[s]]
    answers = [a for s in SPLITS for _, a in pairs[s]]
    perturbed = [[fmt.pair(it, w)[1] for w in it.perturbed_answers] for it in items]
    sl = {s: slice(bounds[i], bounds[i + 1]) for i, s in enumerate(SPLITS)}
    checkpoints = list(models.all().values())
    roles, plain, probe, correct, layer, Cs, n_classes, prior = {}, {}, {}, {}, {}, {}, {}, {}
    readout = None
    for mi, lm in enumerate(checkpoints):
        if progress is not None:
            progress(mi / len(checkpoints), f"{lm.name}: hidden states and probes")
        states, own, first = last_token_states(lm, prompts, answers, config.batch_size, config.target, perturbed)
        yr = first[sl["retain"]]
        if readout is None:  # one readout for every checkpoint (one tokenizer: check_compatible)
            readout = resolve_readout(config.readout, yr, np.concatenate([first[sl["forget"]], first[sl["holdout"]]]))
        per = {s: ([], []) for s in SPLITS}
        Cs[lm.name] = []
        if readout == "classes":
            n_classes[lm.name] = len(np.unique(yr))
            if n_classes[lm.name] < 2:
                raise ValueError("the retain set's answers start with fewer than 2 distinct tokens: nothing to "
                                 "classify (readout='vocab' reads any token)")
        else:
            n_classes[lm.name] = int(lm.model.get_output_embeddings().weight.shape[0])
            lens = _lens_inputs(lm, prompts[sl["retain"]], answers[sl["retain"]], perturbed[sl["retain"]], config)
        for li in range(states.shape[0]):
            tests = {s: (states[li, sl[s]], first[sl[s]]) for s in ("forget", "holdout")}
            with _blas_threads(states[li, sl["retain"]].size):
                if readout == "classes":
                    C, out = fit_layer(states[li, sl["retain"]], yr, tests, config)
                else:
                    xs, row_item, folds, head = lens
                    C, out = fit_lens_layer(xs[li], xs[-1], row_item, states[li, sl["retain"]], yr, tests, head,
                                            folds, config)
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
                              {n: m.hash for n, m in models.all().items()}, data.hash, config, prior,
                              readout or "classes")


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
                       axis="recoverable", level="probe p of the answer's key token"),),
    evidence_items=lambda r: r.evidence_items(),
    page_title="Decodability probe",
    icon=":material/manage_search:",
    plots=_plots,
    cost_rank=10,
    scope=Scope("whether the answer's key token (the first, or on sentences the first that tells the fact from its "
                "perturbed answers) is linearly decodable from the checkpoint's own hidden states",
                "anything about later answer tokens, or a non-linear encoding"),
    default_evidence=True,
    needs=decodability_needs,
    restrict=lambda r, names: r.restrict(names),
)
