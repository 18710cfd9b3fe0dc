"""Data check before any audit: does the original actually know what the audit assumes it knows?

Why: an audit of a forget set the original never knew (or a prompt template that does not match its fine-tuning
format) still produces numbers, and every checkpoint then "looks forgotten". This check reads the original (and the
retain-only reference, if any) on every item, with the prompt rendered exactly as the model sees it, and turns what
it finds into specific warnings before anything else runs:
  - forget set: the original must answer it (else there is nothing to unlearn: the verdict says "nothing to audit");
  - retain set: the original should answer it (else utility and the retain-trained probe measure little);
  - holdout set: the original should NOT answer it (it is the control of facts never learned);
  - the retain-only reference should not answer the forget set (else it is no deletion reference);
  - answers too long for the greedy budget of ROUGE-L or empty (no tokens to score);
  - forget questions that also appear in the retain or holdout set (contradictory goals, a leaking control).

"Known" is the scorecard's accuracy: teacher-forced argmax reproduces every answer token (= greedy decoding gives
the answer). Passages (text items) count as known when at least half their continuation tokens are reproduced.
A pure function (models, data, config) -> DataCheckResult, stored in the results store like an analysis (SPEC).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import pandas as pd

from unlearn_core.analyses.spec import AnalysisSpec
from unlearn_core.data.items import QAItem
from unlearn_core.model.scoring import encode, greedy_generate, pad_id_of, score_encoded
from unlearn_core.store.codec import register_result
from unlearn_core.types import AuditData, LoadedModel, ModelSet

LEVELS = ("error", "warning", "info")  # error: the audit cannot mean anything; warning: part of it cannot
PASSAGE_KNOWN_TOKEN_ACC = 0.5


@register_result
@dataclass(frozen=True)
class DataCheckConfig:
    """min_known: share of forget/retain items the original must answer; max_holdout_known / max_reference_known:
    share of holdout items the original, and of forget items the reference, may answer; max_answer_tokens: the
    scorecard's greedy budget (longer answers can never be generated in full); show_generated: how many items per
    split get the original's greedy answer (generation is the slow part)."""

    batch_size: int = 32
    min_known: float = 0.5
    max_holdout_known: float = 0.2
    max_reference_known: float = 0.2
    max_answer_tokens: int = 24
    show_generated: int = 32

    def __post_init__(self):
        for name in ("min_known", "max_holdout_known", "max_reference_known"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        for name in ("batch_size", "max_answer_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if isinstance(self.show_generated, bool) or not isinstance(self.show_generated, int) or self.show_generated < 0:
            raise ValueError(f"show_generated must be an int >= 0, got {self.show_generated!r}")


@register_result
@dataclass(frozen=True)
class ItemCheck:
    split: str
    item: int  # index in the split
    line: int  # line/row in the source file
    prompt: str  # exactly the tokens the model is given, decoded (special tokens included)
    answer: str  # the continuation that is scored, as tokenised
    answer_tokens: int
    p: float  # exp(mean answer log-prob) under the original
    token_acc: float
    known: bool  # the original reproduces the answer (see module docstring)
    generated: str | None  # the original's greedy answer (first show_generated items per split)
    reference_known: bool | None  # forget items: does the retain-only reference answer it too


@register_result
@dataclass(frozen=True)
class SplitCheck:
    split: str
    n: int
    n_known: int
    mean_p: float
    median_answer_tokens: float
    max_answer_tokens: int


@register_result
@dataclass(frozen=True)
class DataWarning:
    level: str  # one of LEVELS
    code: str  # stable id for tests and scripts, e.g. "forget_unknown"
    message: str


@register_result
@dataclass(frozen=True)
class DataCheckResult:
    model: str  # the checkpoint the check reads (the original)
    reference: str | None
    template: str
    items: tuple[ItemCheck, ...]
    splits: tuple[SplitCheck, ...]
    warnings: tuple[DataWarning, ...]
    config: DataCheckConfig

    @property
    def nothing_to_audit(self) -> str | None:
        """The reason there is nothing to audit (the original knows none of the forget set), else None."""
        return next((w.message for w in self.warnings if w.code in ("forget_unknown", "forget_empty")), None)

    @property
    def ok(self) -> bool:
        return not any(w.level in ("error", "warning") for w in self.warnings)

    def split(self, name: str) -> SplitCheck | None:
        return next((s for s in self.splits if s.split == name), None)

    def items_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(i) for i in self.items], columns=[f for f in ItemCheck.__dataclass_fields__])

    def splits_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(s) for s in self.splits], columns=list(SplitCheck.__dataclass_fields__))

    def warnings_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(w) for w in self.warnings], columns=["level", "code", "message"])

    def to_frame(self) -> pd.DataFrame:
        """data_check.csv: one row per item with its split's warnings' codes beside it."""
        return self.items_frame()


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def _key(it: QAItem) -> str:
    return _norm(it.question) if it.question else _norm(it.text or it.answer)


def _lines(items: list[QAItem], limit: int = 5) -> str:
    shown = ", ".join(str(it.line) for it in items[:limit])
    return f"line{'s' if len(items) > 1 else ''} {shown}{', ...' if len(items) > limit else ''}"


def _score(lm: LoadedModel, items: tuple[QAItem, ...], data: AuditData, cfg: DataCheckConfig):
    pairs = [data.prompt_format.pair(it) for it in items]
    enc = encode(lm.tokenizer, [p for p, _ in pairs], [a for _, a in pairs])
    sc = score_encoded(lm.model, enc, pad_id_of(lm.tokenizer), cfg.batch_size)
    known = []
    for it, c in zip(items, sc.correct, strict=True):
        if not c.numel():
            known.append(False)
        elif it.is_passage:
            known.append(float(c.float().mean()) >= PASSAGE_KNOWN_TOKEN_ACC)
        else:
            known.append(bool(c.all()))
    return pairs, enc, sc, known


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def compute_data_check(models: ModelSet, data: AuditData, config: DataCheckConfig | None = None,
                       progress=None) -> DataCheckResult:
    """Score every item under the original (and the forget set under the reference) and word what is wrong."""
    cfg = config or DataCheckConfig()
    orig, ref = models.original, models.retain_only
    splits = [(s, getattr(data, s)) for s in ("forget", "retain", "holdout") if getattr(data, s)]
    items_out: list[ItemCheck] = []
    summaries: list[SplitCheck] = []
    warnings: list[DataWarning] = []
    known_by_split: dict[str, list[bool]] = {}
    ref_known: list[bool] = []
    if ref is not None and data.forget:
        ref_known = _score(ref, data.forget, data, cfg)[3]
    for k, (split, items) in enumerate(splits):
        if progress:
            progress(k / max(len(splits), 1), f"reading the {split} set with {orig.name}")
        pairs, enc, sc, known = _score(orig, items, data, cfg)
        known_by_split[split] = known
        n_gen = min(cfg.show_generated, len(items))
        budget = max(4, min(max((len(e.answer_ids) for e in enc[:n_gen]), default=1) + 4, cfg.max_answer_tokens))
        generated = greedy_generate(orig.model, orig.tokenizer, [p for p, _ in pairs[:n_gen]], budget,
                                    cfg.batch_size) if n_gen else []
        ps = []
        for i, (it, e) in enumerate(zip(items, enc, strict=True)):
            lp = sc.logprobs[i]
            p = math.exp(float(lp.mean())) if lp.numel() else math.nan
            ps.append(p)
            items_out.append(ItemCheck(
                split, i, it.line, orig.tokenizer.decode(list(e.prompt_ids), skip_special_tokens=False),
                pairs[i][1], len(e.answer_ids), p,
                float(sc.correct[i].float().mean()) if sc.correct[i].numel() else math.nan, known[i],
                generated[i].strip() if i < n_gen else None,
                ref_known[i] if split == "forget" and ref_known else None))
        lengths = sorted(len(e.answer_ids) for e in enc)
        finite = [p for p in ps if not math.isnan(p)]
        summaries.append(SplitCheck(split, len(items), sum(known), sum(finite) / len(finite) if finite else math.nan,
                                    float(pd.Series(lengths).median()), lengths[-1]))
        warnings += _length_warnings(split, items, enc, cfg)
    warnings = _knowledge_warnings(data, known_by_split, ref_known, orig.name, ref.name if ref else None, cfg) \
        + warnings + _overlap_warnings(data)
    if progress:
        progress(1.0, "done")
    order = {lv: i for i, lv in enumerate(LEVELS)}
    warnings.sort(key=lambda w: order[w.level])
    return DataCheckResult(orig.name, ref.name if ref else None, data.prompt_format.template, tuple(items_out),
                           tuple(summaries), tuple(warnings), cfg)


def _knowledge_warnings(data: AuditData, known: dict[str, list[bool]], ref_known: list[bool], orig: str,
                        ref: str | None, cfg: DataCheckConfig) -> list[DataWarning]:
    out: list[DataWarning] = []
    f = known.get("forget", [])
    n, k = len(f), sum(f)
    if n == 0:
        out.append(DataWarning("error", "forget_empty", "the forget set is empty: nothing to audit"))
    elif k == 0:
        out.append(DataWarning(
            "error", "forget_unknown",
            f"the {orig} model answers 0 of {_plural(n, 'forget question')}: nothing to unlearn, so nothing to "
            f"audit; check that this is the forget set it was trained on and that the prompt template "
            f"{data.prompt_format.template!r} matches its fine-tuning format"))
    elif k < cfg.min_known * n:
        out.append(DataWarning(
            "warning", "forget_partly_known",
            f"the {orig} model answers only {k} of {_plural(n, 'forget question')}: forgetting is measured "
            f"against those {k}; the other {n - k} were never known (check the data and that the prompt template "
            f"{data.prompt_format.template!r} matches its fine-tuning format)"))
    r = known.get("retain", [])
    if r and sum(r) < cfg.min_known * len(r):
        out.append(DataWarning(
            "warning", "retain_unknown",
            f"the {orig} model answers only {sum(r)} of {_plural(len(r), 'retain question')}: retain accuracy "
            "(utility) and the retain-trained decodability probe measure little; check the retain set and the "
            "prompt template"))
    h = known.get("holdout", [])
    if h and sum(h) > cfg.max_holdout_known * len(h):
        out.append(DataWarning(
            "warning", "holdout_known",
            f"the {orig} model answers {sum(h)} of {_plural(len(h), 'holdout question')}: the holdout split must "
            "be facts it never learned (it is the control without a retain-only reference)"))
    if ref is not None and ref_known and sum(ref_known) > cfg.max_reference_known * len(ref_known):
        asked = _plural(len(ref_known), "forget question")
        out.append(DataWarning(
            "warning", "reference_knows_forget",
            f"the retain-only reference {ref!r} answers {sum(ref_known)} of {asked}: it was not "
            "trained without these facts, so it is no deletion reference for this forget set"))
    return out


def _length_warnings(split: str, items: tuple[QAItem, ...], enc, cfg: DataCheckConfig) -> list[DataWarning]:
    empty = [it for it, e in zip(items, enc, strict=True) if not e.answer_ids]
    long = [it for it, e in zip(items, enc, strict=True) if len(e.answer_ids) > cfg.max_answer_tokens]
    out = []
    if empty:
        out.append(DataWarning("error" if len(empty) == len(items) else "warning", f"{split}_empty_answers",
                               f"{_plural(len(empty), split + ' answer')} tokenise to nothing ({_lines(empty)}): "
                               "no answer tokens to score"))
    if long:
        out.append(DataWarning(
            "warning", f"{split}_long_answers",
            f"{_plural(len(long), split + ' answer')} exceed {cfg.max_answer_tokens} tokens ({_lines(long)}): "
            "exact-match accuracy needs every token right and greedy ROUGE-L stops at the scorecard's budget, so "
            "they read as 'forgotten' too easily; shorten them or raise max_new_tokens"))
    return out


def _overlap_warnings(data: AuditData) -> list[DataWarning]:
    out = []
    forget = {_key(it): it for it in data.forget}
    for split, why in (("retain", "unlearning and keeping the same fact are contradictory goals"),
                       ("holdout", "the holdout control then contains facts the original was trained on")):
        both = [forget[_key(it)] for it in getattr(data, split) if _key(it) in forget]
        if both:
            out.append(DataWarning("warning", f"forget_{split}_overlap",
                                   f"{_plural(len(both), 'forget question')} also appear in the {split} set "
                                   f"(forget {_lines(both)}): {why}"))
    return out


def _tables(result: DataCheckResult) -> dict[str, pd.DataFrame]:
    return {"data_check": result.items_frame(), "data_check_splits": result.splits_frame(),
            "data_check_warnings": result.warnings_frame()}


def _scores(result: DataCheckResult, model: str) -> dict[str, float]:
    if model != result.model:
        return {}
    return {f"{s.split}_known_share": s.n_known / s.n for s in result.splits if s.n}


def verdict_before_audit(result: DataCheckResult, names: list[str], reference: str | None, rule=None):
    """The verdict the data check alone already decides: "nothing to audit" for every checkpoint when the original
    knows none of the forget set (through compute_verdict, so the page shows the same state and reason the audit
    gives later), else None."""
    from unlearn_core.evidence.verdict import VerdictConfig, compute_verdict

    forget = result.split("forget")
    if result.nothing_to_audit is None or forget is None:
        return None
    behaviour: dict[str, dict[str, float]] = {n: {} for n in names}
    behaviour[result.model] = {"forget_acc": forget.n_known / forget.n if forget.n else 0.0}
    return compute_verdict(behaviour, {}, rule or VerdictConfig(), original=result.model, reference=reference)


# Not in the registry's ANALYSES (it is no evidence and runs before them); a SPEC so that it reads like one.
SPEC = AnalysisSpec(name="data_check", title="Data check", default_config=DataCheckConfig,
                    compute=compute_data_check, tables=_tables, scores=_scores)
