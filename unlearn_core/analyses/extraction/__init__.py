"""Guided extraction probe (methods.md section 5, after "Unlearned but Not Forgotten").

Whoever holds both the original and the unlearned checkpoint can amplify exactly what unlearning removed: decode
greedily with  s = s_orig + w (s_orig - s_unl)  (s = next-token logits), restricted to the tokens the original
itself finds plausible (s_orig > max s_orig - tau, tau = 5; all others are excluded). F = ROUGE-L recall of the
generated continuation against the gold forget answer (rouge_score, Porter stemmer), compared with greedy
decoding from either model alone. The retain-only model is run through the same guided decoder as the reference.

Reading: the guided decoder always contains the original, so a high score says the difference between the two
checkpoints points at the forget answers (the unlearning update is a targeted edit that can be reversed by whoever
has both), not that the unlearned model alone still knows them; compare with the retain-only row.

Decoding is batched (left padding, explicit position ids), and each model keeps a KV cache: after the prompt, a step
feeds one token per row. Both models see exactly the same tokens. On the demo labs the cached decoder gives the
uncached one's generations token for token (tests/core/test_extraction.py) at 1/4 to 1/6 of the time
(benchmarks/extraction.py).

Verdict evidence "extraction_recovery" (control "reference"): per forget QA item, ROUGE-L recall plain (the model's
own greedy answer) and guided (at each model's best guidance weight: the same max-over-weights rule for every model,
the retain-only reference included), plus the original's plain (the denominator). The guided decoder contains the
original, so any model "recovers" under it: only the retain-only reference decoded the same way is a control, and
without one the number does not count. The original's attacked = its plain (guiding it by itself is greedy
decoding: s_orig - s_orig = 0 and the argmax is always inside the tau window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from unlearn_core.analyses.common.probes import check_int
from unlearn_core.analyses.spec import AnalysisSpec, Evidence, Scope
from unlearn_core.evidence.calibration import ProbeItems
from unlearn_core.evidence.recovery import recovery_rate
from unlearn_core.model.scoring import input_device, kept_forward, length_batches, pad_id_of
from unlearn_core.store.codec import register_result
from unlearn_core.types import AuditData, LoadedModel, ModelSet, Progress

EVIDENCE_KEY = "extraction_recovery"
PLAIN = "plain"
COLUMNS = ("model", "role", "attack", "forget_rougeL", "retain_rougeL", "recovery_rougeL", "retain_rougeL_delta")


def guided_logits(s_orig: torch.Tensor, s_unl: torch.Tensor | None, w: float, tau: float) -> torch.Tensor:
    """s_orig + w (s_orig - s_unl) on tokens with s_orig > max s_orig - tau, -inf elsewhere. [B, V] float32."""
    s_orig = s_orig.float()
    if s_unl is None:
        return s_orig
    s = s_orig + w * (s_orig - s_unl.float())
    keep = s_orig > s_orig.max(-1, keepdim=True).values - tau
    return s.masked_fill(~keep, float("-inf"))


class _Stepper:
    """Last-position logits of one model over a batch that grows by one column per step. With a KV cache (when
    the model hands one back) only the new columns are fed; the mask and positions always cover the whole prefix."""

    def __init__(self, model, kv_cache: bool):
        self.model, self.kv_cache, self.dev = model, kv_cache, input_device(model)
        self.cache, self.seen = None, 0

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        ids, mask, pos = ids.to(self.dev), mask.to(self.dev), pos.to(self.dev)
        start = 0 if self.cache is None else self.seen  # without a cache every step feeds the whole prefix
        last = torch.zeros((ids.shape[0], ids.shape[1] - start), dtype=torch.bool, device=self.dev)
        last[:, -1] = True
        extra = {"use_cache": self.kv_cache} if self.cache is None else {"cache": self.cache, "use_cache": True}
        logits, out = kept_forward(self.model, last, input_ids=ids[:, start:], attention_mask=mask,
                                   position_ids=pos[:, start:], **extra)  # [B, V]
        self.cache = getattr(out, "cache", None) if self.kv_cache else None  # None: the next step feeds it all
        self.seen = ids.shape[1]
        return logits


@torch.no_grad()
def guided_greedy(orig, unl, tokenizer, prompts: list[str], w: float, tau: float, max_new_tokens: int,
                  batch_size: int, kv_cache: bool = True) -> list[str]:
    """Greedy continuations under guided_logits; `unl=None` decodes from `orig` alone (plain greedy). kv_cache:
    each model keeps its keys and values, so a step feeds one new token instead of the whole prefix."""
    device = input_device(orig)
    pad, eos = pad_id_of(tokenizer), tokenizer.eos_token_id
    enc = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    out: list = [None] * len(prompts)
    for batch in length_batches([len(e) for e in enc], batch_size):
        width = max(len(enc[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long, device=device)
        mask = torch.zeros_like(ids)
        for r, i in enumerate(batch):  # left padding: every row's next token sits at the last column
            ids[r, width - len(enc[i]):] = torch.tensor(enc[i], device=device)
            mask[r, width - len(enc[i]):] = 1
        done = torch.zeros(len(batch), dtype=torch.bool, device=device)
        new = []
        step_o = _Stepper(orig, kv_cache)
        step_u = _Stepper(unl, kv_cache) if unl is not None else None
        for _ in range(max_new_tokens):
            pos = (mask.cumsum(-1) - 1).clamp_min(0)  # [B, T]
            s_o = step_o(ids, mask, pos)  # [B, V]
            s_u = None if step_u is None else step_u(ids, mask, pos).to(s_o.device)
            nxt = guided_logits(s_o, s_u, w, tau).argmax(-1)  # [B]
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            new.append(nxt)
            if eos is not None:
                done |= nxt == eos
            ids = torch.cat([ids, nxt[:, None]], 1)
            mask = torch.cat([mask, (~done | (nxt == eos)).long()[:, None]], 1) if eos is not None else \
                torch.cat([mask, torch.ones_like(nxt)[:, None]], 1)
            if bool(done.all()):
                break
        gen = torch.stack(new, 1).tolist()  # [B, steps]
        for r, i in enumerate(batch):
            toks = gen[r]
            if eos is not None and eos in toks:
                toks = toks[: toks.index(eos)]
            out[i] = tokenizer.decode(toks, skip_special_tokens=True)
    return out


@register_result
@dataclass(frozen=True)
class ExtractionConfig:
    """weights: guidance strengths w; tau: plausibility window on the original's logits; retain: also decode the
    retain set (side effect), at most max_retain_items of it."""

    weights: tuple[float, ...] = (1.0,)
    tau: float = 5.0
    max_new_tokens: int = 16
    retain: bool = True
    max_retain_items: int = 32
    rouge_stemmer: bool = True
    batch_size: int = 32

    def __post_init__(self):
        if not isinstance(self.weights, tuple) or not self.weights:
            raise ValueError(f"weights must be a non-empty tuple, got {self.weights!r}")
        for v in (*self.weights, self.tau):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"weights and tau must be finite numbers, got {v!r}")
        if self.tau <= 0:
            raise ValueError(f"tau must be > 0, got {self.tau!r}")
        check_int("max_new_tokens", self.max_new_tokens)
        check_int("max_retain_items", self.max_retain_items)
        check_int("batch_size", self.batch_size)
        for name in ("retain", "rouge_stemmer"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool")


@register_result
@dataclass(frozen=True)
class ExtractionResult:
    summary: tuple[dict, ...]  # COLUMNS rows; attack "plain" = the model alone, "w<w>" = guided decoding
    generations: tuple[dict, ...]  # (model, attack, split, item, gold, generated, rougeL)
    model_hashes: dict[str, str]
    data_hash: str
    config: ExtractionConfig
    original: str
    # model -> attack ("plain" or "w<w>") -> ROUGE-L recall per forget QA item [n] (the original: plain only)
    forget_rouge: dict[str, dict[str, np.ndarray]]

    def headline_attack(self, model_name: str) -> str:
        """The guidance weight with the largest forget recovery for this model (the first weight if none is finite)."""
        rows = [r for r in self.summary if r["model"] == model_name and r["attack"] != PLAIN]
        live = [r for r in rows if not math.isnan(r["recovery_rougeL"])]
        return max(live, key=lambda r: r["recovery_rougeL"])["attack"] if live else f"w{self.config.weights[0]:g}"

    def evidence_items(self) -> dict[str, ProbeItems]:
        plain = {n: by[PLAIN] for n, by in self.forget_rouge.items()}
        attacked = {n: (by[PLAIN] if n == self.original else by[self.headline_attack(n)])
                    for n, by in self.forget_rouge.items()}
        label = (f"guided decoding s_orig + w (s_orig - s_unl), tau {self.config.tau:g}, "
                 + ("best w per model" if len(self.config.weights) > 1 else f"w={self.config.weights[0]:g}"))
        return {EVIDENCE_KEY: ProbeItems(key=EVIDENCE_KEY, attack=label, metric="ROUGE-L recall",
                                         forget_plain=plain, forget_attacked=attacked)}

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.summary), columns=list(COLUMNS))

    def generations_frame(self) -> pd.DataFrame:
        cols = ["model", "attack", "split", "item", "gold", "generated", "rougeL"]
        return pd.DataFrame(list(self.generations), columns=cols)

    def scores(self, model_name: str) -> dict[str, float]:
        out = {}
        for r in self.summary:
            if r["model"] == model_name and r["attack"] != "plain":
                out[f"extraction_recovery_{r['attack']}"] = float(r["recovery_rougeL"])
                out[f"extraction_retain_rougeL_delta_{r['attack']}"] = float(r["retain_rougeL_delta"])
        return out


def compute_extraction(models: ModelSet, data: AuditData, config: ExtractionConfig = ExtractionConfig(),
                       progress: Progress | None = None) -> ExtractionResult:
    if not isinstance(config, ExtractionConfig):
        raise TypeError(f"config must be a ExtractionConfig, got {type(config).__name__}")
    fmt = data.prompt_format
    from rouge_score import rouge_scorer  # nltk + scipy.stats (~1 s): only when scoring, not to read results

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=config.rouge_stemmer)
    splits = {"forget": [it for it in data.forget if not it.is_passage]}
    if config.retain:
        splits["retain"] = [it for it in data.retain if not it.is_passage][: config.max_retain_items]
    o = models.original
    targets = list(models.unlearned.values()) + ([models.retain_only] if models.retain_only else [])
    total = 1 + len(targets) * (1 + len(config.weights))
    count = 0
    generations: list[dict] = []
    forget_rouge: dict[str, dict[str, np.ndarray]] = {}

    def run(lm: LoadedModel, unl, attack: str, w: float) -> dict[str, float]:
        nonlocal count
        if progress is not None:
            progress(count / total, f"{lm.name}: {attack} decoding")
        count += 1
        means = {}
        for split, items in splits.items():
            if not items:
                means[split] = math.nan
                continue
            # guided decoding feeds one token sequence to both models: their tokenizers must agree
            if unl is not None and o.tokenizer(["a b"])["input_ids"] != lm.tokenizer(["a b"])["input_ids"]:
                raise ValueError(f"{lm.name} and the original tokenise differently; guided decoding needs one vocab")
            base = lm.model if unl is None else o.model
            gens = guided_greedy(base, unl, lm.tokenizer, [fmt.pair(it)[0] for it in items], w, config.tau,
                                 config.max_new_tokens, config.batch_size)
            vals = []
            for i, (it, g) in enumerate(zip(items, gens)):
                gold = fmt.pair(it)[1].strip()
                v = float(scorer.score(gold, g)["rougeL"].recall)
                vals.append(v)
                generations.append({"model": lm.name, "attack": attack, "split": split, "item": i, "gold": gold,
                                    "generated": g, "rougeL": v})
            means[split] = sum(vals) / len(vals)
            if split == "forget":
                forget_rouge.setdefault(lm.name, {})[attack] = np.asarray(vals, dtype=np.float64)
        return means

    orig = run(o, None, "plain", 0.0)
    rows = [{"model": o.name, "role": o.role, "attack": "plain", "forget_rougeL": orig["forget"],
             "retain_rougeL": orig.get("retain", math.nan), "recovery_rougeL": math.nan,
             "retain_rougeL_delta": math.nan}]
    for lm in targets:
        plain = run(lm, None, "plain", 0.0)
        rows.append({"model": lm.name, "role": lm.role, "attack": "plain", "forget_rougeL": plain["forget"],
                     "retain_rougeL": plain.get("retain", math.nan), "recovery_rougeL": math.nan,
                     "retain_rougeL_delta": math.nan})
        for w in config.weights:
            att = run(lm, lm.model, f"w{w:g}", float(w))
            rows.append({"model": lm.name, "role": lm.role, "attack": f"w{w:g}", "forget_rougeL": att["forget"],
                         "retain_rougeL": att.get("retain", math.nan),
                         "recovery_rougeL": recovery_rate(att["forget"], plain["forget"], orig["forget"]),
                         "retain_rougeL_delta": att.get("retain", math.nan) - plain.get("retain", math.nan)})
    if progress is not None:
        progress(1.0, "extraction done")
    return ExtractionResult(tuple(rows), tuple(generations), {n: m.hash for n, m in models.all().items()},
                            data.hash, config, o.name, forget_rouge)


def _plots(r) -> dict:
    """The charts exported for papers, with the page's default choices."""
    from unlearn_core.analyses.extraction.plots import plot_extraction

    return {"extraction": plot_extraction(r)}


SPEC = AnalysisSpec(
    name="extraction", title="Guided extraction probe", default_config=ExtractionConfig, compute=compute_extraction,
    tables=lambda r: {"extraction_summary": r.to_frame(), "extraction_generations": r.generations_frame()},
    scores=lambda r, name: r.scores(name),
    evidence=(Evidence(EVIDENCE_KEY, "extracted by decoding guided with the original", "reference",
                       axis="edit_of_original", counted=False, level="forget ROUGE-L recall of guided decoding",
                       why_not="guided decoding recovers every forget answer from every checkpoint, the deletion "
                       "reference included (ROUGE-L 1.0): no separation left to measure"),),
    evidence_items=lambda r: r.evidence_items(),
    page_title="Extraction",
    icon=":material/travel_explore:",
    plots=_plots,
    cost_rank=3,
    scope=Scope("whether the difference between the original and the checkpoint points at the forget "
                "answers (guided decoding)", "that the checkpoint alone still knows them: the retrained "
                "model 'recovers' too", "next-token logits (decoding is guided by them)"),
)
