"""SAE restoration audit (methods.md section 4): are the forgotten facts' features still usable inside?

An SAE trained on the ORIGINAL model's residual stream at layer l gives a feature basis. Each unlearned checkpoint
is steered at layer l on forget prompts with a forward hook, for a feature set E:

    inject (needs the original):  h' = h_u + W_dec[E]^T (alpha * (z_o,E - z_u,E))
    scale  (self-contained):      h' = h_u + W_dec[E]^T (alpha * z_u,E)      (z_u,E -> (1 + alpha) z_u,E)

(z = SAE encoder activations of the original (o) / unlearned (u) hidden state at the same token; the additive
change is computed as decode(dz) - decode(0), so any SAE architecture's decoder scaling is respected), and

    restoration = clip((F(steered) - F(plain)) / (F(original) - F(plain)), 0, 1),  F = mean p~ (also accuracy)

Feature sets:
  fact     per item, its own expert features: the m features whose mean activation over that item's answer span
           most exceeds their mean over all items (original). The paper's experts are class-specific; a memorised
           fact is the class here. m = 2 x the SAE's L0 (TopK k=32 -> 64): the support of a 2-token answer span.
  concept  one set for the whole forget set (methods.md step 2): top-m by mean forget minus mean retain activation.
  random   per item, m random live features outside its fact set (the control: must restore much less).
The headline score is the fact-set injection, max over the alpha grid (or at `headline_alpha`), reported with the
retain-set side effect of the same steering (an edit that breaks everything proves nothing).

A checkpoint that only suppressed the answer keeps the machinery that reads these features, so putting the
original's feature values back restores the answer; a model that never had the knowledge gains nothing.

Layer choice (reported in the result): residual stream = OUTPUT of decoder block l (hooked, not HF hidden_states,
whose last entry has the final norm applied). Default l = min(n_layers - 1, round(2/3 * n_layers)). A checkpoint
can only be restored at a layer where its states differ from the original's: in the demo lab's `suppressed_head`
everything below the last block is byte-identical to the original (z_o = z_u, so injection there is a no-op), and
for the lab's 3-4 block models the 2/3 rule lands on the last block's output, where the change is visible. For
other models run `layer_sweep` and read the restoration per layer.

Read the layer sweep, not only the default layer: at the last block an injection is close to an edit of the logits,
and any checkpoint fine-tuned from the original can read the original's answer features there (measurements per
lab and layer: benchmarks/MEASUREMENTS.md).

Verdict evidence "sae_restoration" (control "reference"): per forget item, the answer p~ plain and under fact-feature
injection at the alpha of each model's own headline restoration (the same max-over-alpha rule for every model,
the retain-only reference included), plus the original's plain p~ (the denominator). Injection copies the
ORIGINAL's feature values, so any model that can read them "recovers": only the retain-only reference run through
the same injection is a control, and without one the number does not count.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from unlearn_core.analyses.sae_training import (
    SAEQuality,
    SAETrainConfig,
    get_sae,
    load_sae,
    sae_quality,
    training_texts,
)
from unlearn_core.arch import decoder_layers
from unlearn_core.calibration import ProbeItems
from unlearn_core.codec import register_result
from unlearn_core.forward import answer_logprobs, answer_span_mask, hooked
from unlearn_core.recovery import recovery_rate
from unlearn_core.scoring import Encoded, encode, length_batches, model_device, pad_id_of, right_pad
from unlearn_core.spec import AnalysisSpec, Evidence, Shape
from unlearn_core.types import AuditData, ModelSet

Progress = Callable[[float, str], None]
VARIANTS = ("inject", "scale")
FEATURE_SETS = ("fact", "concept", "random")
SPLITS = ("forget", "retain")
EVIDENCE_KEY = "sae_restoration"
PLAIN = "plain"
ROW_COLUMNS = ["model", "role", "variant", "features", "alpha", "split", "p", "acc", "delta_p", "delta_acc",
               "restoration_p", "restoration_acc"]


def setting(variant: str, feats: str, alpha: float) -> str:
    """Key of one steering setting in RestorationResult.item_p, e.g. "inject/fact/2"."""
    return f"{variant}/{feats}/{alpha:g}"


def default_layer(n_layers: int) -> int:
    return min(n_layers - 1, round(2 * n_layers / 3))


def default_n_expert(n_forget: int) -> int:
    """m = max(16, 2 * number of forget items): the paper's 16, grown with the forget set."""
    return max(16, 2 * n_forget)


@register_result
@dataclass(frozen=True)
class RestorationConfig:
    """layer: block whose output is steered (None = default_layer; negative counts from the end); sae_path: a
    sae-lens folder to use instead of training; n_fact_features: m per fact (None = 2 x the SAE's L0); n_expert: m of
    the concept set (None = max(16, 2 * number of forget items)); alphas: steering strengths; headline_alpha: the
    alpha of the headline score (None = the max over alphas: the most the steering brings back); seed: the
    random-feature control."""

    layer: int | None = None
    sae: SAETrainConfig = field(default_factory=SAETrainConfig)
    sae_path: str | None = None
    n_fact_features: int | None = None
    n_expert: int | None = None
    alphas: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)
    headline_alpha: float | None = None
    seed: int = 0
    batch_size: int = 32

    def __post_init__(self):
        if self.layer is not None and (isinstance(self.layer, bool) or not isinstance(self.layer, int)):
            raise ValueError(f"layer must be an int or None, got {self.layer!r}")
        if not isinstance(self.sae, SAETrainConfig):
            raise TypeError(f"sae must be a SAETrainConfig, got {type(self.sae).__name__}")
        for name in ("n_fact_features", "n_expert", "batch_size"):
            v = getattr(self, name)
            if v is None and name != "batch_size":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))
        if not self.alphas or any(not (math.isfinite(a) and a > 0) for a in self.alphas):
            raise ValueError(f"alphas must be positive finite numbers, got {self.alphas!r}")
        if self.headline_alpha is not None and float(self.headline_alpha) not in self.alphas:
            raise ValueError(f"headline_alpha {self.headline_alpha} must be one of alphas {self.alphas}")


@register_result
@dataclass(frozen=True)
class RestorationResult:
    """rows: one per (checkpoint, variant, features, alpha, split) plus alpha=0 plain rows; features: the concept
    set with forget/retain mean activations and top activating prompts; fact_features: per forget item its own
    feature set and how much of the item's activation mass that set holds."""

    layer: int
    n_layers: int
    layer_note: str
    sae_source: str
    sae_quality: SAEQuality
    n_fact_features: int
    expert_features: tuple[int, ...]  # the concept set
    features: tuple[dict, ...]
    fact_features: tuple[dict, ...]
    rows: tuple[dict, ...]
    original_scores: dict[str, float]  # forget_p, forget_acc, retain_p, retain_acc
    rule: str
    model_hashes: dict[str, str]
    data_hash: str
    config: RestorationConfig
    # model -> setting(variant, features, alpha) or "plain" -> per forget item p~ [n_forget] (the original: plain only)
    item_p: dict[str, dict[str, np.ndarray]]
    original: str

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows), columns=ROW_COLUMNS)

    def evidence_items(self) -> dict[str, ProbeItems]:
        """Per forget item p~ plain and under fact-feature injection at each model's headline alpha (the alpha the
        headline score uses: configured, or the max over alphas, for every model alike). The original's attacked =
        its plain: injecting its own feature values into it changes nothing (z_o - z_u = 0)."""
        plain, attacked = {}, {}
        for name, by_setting in self.item_p.items():
            plain[name] = by_setting[PLAIN]
            if name == self.original:
                attacked[name] = by_setting[PLAIN]
                continue
            a = self.headline_alpha(name)
            if math.isnan(a):  # nothing to restore at any alpha (it never forgot): its strongest setting
                a = max(self.config.alphas)
            attacked[name] = by_setting[setting("inject", "fact", a)]
        label = ("fact-feature injection, " + ("max over alpha per model" if self.config.headline_alpha is None
                                               else f"alpha={self.config.headline_alpha:g}")
                 + f", block {self.layer} output")
        return {EVIDENCE_KEY: ProbeItems(key=EVIDENCE_KEY, attack=label, metric="answer p~",
                                         forget_plain=plain, forget_attacked=attacked)}

    def features_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.features))

    def fact_features_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.fact_features))

    def summary_frame(self) -> pd.DataFrame:
        names = list(dict.fromkeys(r["model"] for r in self.rows))
        return pd.DataFrame([{"model": n, **self.scores(n)} for n in names])

    def _pick(self, name, variant, feats, alpha, split, col) -> float:
        for r in self.rows:
            if (r["model"], r["variant"], r["features"], r["split"]) == (name, variant, feats, split) \
                    and r["alpha"] == alpha:
                return float(r[col])
        return math.nan

    def curve(self, name: str, variant: str = "inject", feats: str = "fact", split: str = "forget",
              col: str = "restoration_p") -> list[float]:
        return [self._pick(name, variant, feats, a, split, col) for a in self.config.alphas]

    def headline_alpha(self, name: str, variant: str = "inject", feats: str = "fact") -> float:
        """The configured alpha, or the alpha of the largest forget restoration (NaN when nothing is restorable)."""
        if self.config.headline_alpha is not None:
            return float(self.config.headline_alpha)
        curve = self.curve(name, variant, feats)
        live = [(c, a) for c, a in zip(curve, self.config.alphas, strict=True) if not math.isnan(c)]
        return max(live)[1] if live else math.nan

    def scores(self, name: str) -> dict[str, float]:
        """Headline numbers for one checkpoint (report.json / verdict); {} for the original."""
        if not any(r["model"] == name for r in self.rows):
            return {}
        out = {}
        for key, variant, feats in (("sae_restoration", "inject", "fact"),
                                    ("sae_restoration_concept", "inject", "concept"),
                                    ("sae_restoration_random", "inject", "random"),
                                    ("sae_restoration_scale", "scale", "fact")):
            a = self.headline_alpha(name, variant, feats)
            out[key] = self._pick(name, variant, feats, a, "forget", "restoration_p")
            if key == "sae_restoration":
                out.update(sae_restoration_alpha=a,
                           sae_restoration_acc=self._pick(name, variant, feats, a, "forget", "restoration_acc"),
                           sae_retain_delta_p=self._pick(name, variant, feats, a, "retain", "delta_p"))
        out["sae_layer"] = float(self.layer)
        return out


class _Split:
    """One split's encoded items in length batches, with the original's hidden states at the layer (on device)."""

    def __init__(self, enc: list[Encoded], batch_size: int, pad: int, device):
        self.enc = enc
        self.batches = length_batches([len(e.ids) for e in enc], batch_size)
        self.padded = [right_pad([enc[i].ids for i in b], pad, device) for b in self.batches]
        self.h_orig: list[torch.Tensor] = []  # per batch [B, T, d]


@torch.no_grad()
def _run(model, layer: int, split: _Split, steer_for_batch=None) -> tuple[torch.Tensor, torch.Tensor, list]:
    """(p~ [n], acc [n], captured block-`layer` outputs per batch). steer_for_batch(b) -> fn(h) -> new h, or None
    to capture the block output instead."""
    n = len(split.enc)
    lp, acc = torch.zeros(n), torch.zeros(n)
    captured = []
    for b, (idx, (ids, mask)) in enumerate(zip(split.batches, split.padded, strict=True)):
        store = {}
        fn = steer_for_batch(b) if steer_for_batch else (lambda h, store=store: store.__setitem__("h", h))
        with hooked(model, layer, fn):
            logits = model(input_ids=ids.to(model_device(model)), attention_mask=mask.to(model_device(model))).logits
        captured.append(store.get("h"))
        batch = [split.enc[i] for i in idx]
        lp[idx] = answer_logprobs(logits, batch)
        for r, e in enumerate(batch):
            p, a = len(e.prompt_ids), len(e.answer_ids)
            pred = logits[r, p - 1 : p + a - 1].argmax(-1).cpu()
            acc[idx[r]] = float(bool((pred == torch.tensor(e.answer_ids)).all()))
    return lp.exp(), acc, captured


def _steer(sae, mask: torch.Tensor, variant: str, alpha: float, h_orig: torch.Tensor | None):
    """fn(h) adding W_dec^T dz at every position of the block output h [B, T, d]; mask [B, d_sae] (1 = steered
    feature, one row per item, so every item can have its own feature set)."""
    zero = None

    def fn(h):
        nonlocal zero
        z_u = sae.encode(h.float())  # [B, T, d_sae]
        if variant == "inject":
            dz = alpha * (sae.encode(h_orig.float()) - z_u) * mask[:, None, :]
        else:
            dz = alpha * z_u * mask[:, None, :]
        if zero is None:
            zero = sae.decode(torch.zeros_like(z_u[:1, :1]))  # [1, 1, d]
        delta = sae.decode(dz) - zero  # [B, T, d]: the linear part only
        return h + delta.to(h.dtype)

    return fn


def _fact_sets(mean: torch.Tensor, grand: torch.Tensor, m: int, live: torch.Tensor, gen: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per item [n, d_sae] 0/1 masks: its top-m features by (item mean - grand mean) and m random live features
    outside that set."""
    n, d_sae = mean.shape
    fact = torch.zeros(n, d_sae)
    fact.scatter_(1, torch.topk(mean - grand, m, dim=1).indices, 1.0)
    rand = torch.zeros(n, d_sae)
    for i in range(n):
        pool = live[fact[i, live] == 0]
        rand[i, pool[torch.randperm(len(pool), generator=gen)[:m]]] = 1.0
    return fact, rand


@torch.no_grad()
def _feature_stats(sae, split: _Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Per item: mean and max SAE activation over the answer-span positions (p-1 .. p+a-2, whose outputs predict the
    answer), each [n_items, d_sae] (CPU). The span, not the whole sequence: the prompt template is shared by both
    splits and would dominate a whole-sequence mean with features that say nothing about the forgotten facts."""
    n, d_sae = len(split.enc), sae.cfg.d_sae
    mean, mx = torch.zeros(n, d_sae), torch.zeros(n, d_sae)
    for idx, (ids, _), h in zip(split.batches, split.padded, split.h_orig, strict=True):
        span = answer_span_mask([split.enc[i] for i in idx], ids.shape[1], h.device)  # [B, T]
        z = sae.encode(h.float()) * span[..., None]  # [B, T, d_sae]
        mean[idx] = (z.sum(1) / span.sum(1, keepdim=True)).cpu()
        mx[idx] = z.max(1).values.cpu()
    return mean, mx


def resolve_restoration(config: RestorationConfig, shape: Shape) -> RestorationConfig:
    """layer None / negative -> the block index it means; n_expert None -> its value for this forget set."""
    n = shape.n_layers
    layer = default_layer(n) if config.layer is None else config.layer
    layer = layer + n if layer < 0 else layer
    n_expert = default_n_expert(shape.n_forget) if config.n_expert is None else config.n_expert
    return replace(config, layer=layer, n_expert=n_expert)


def compute_restoration(models: ModelSet, data: AuditData, config: RestorationConfig = RestorationConfig(),
                        progress: Progress | None = None) -> RestorationResult:
    if not isinstance(config, RestorationConfig):
        raise TypeError(f"config must be a RestorationConfig, got {type(config).__name__}")
    if not data.forget or not data.retain:
        raise ValueError("SAE restoration needs forget and retain items (expert features contrast the two)")
    say = progress or (lambda f, m: None)
    orig = models.original
    n_layers = len(decoder_layers(orig.model))
    layer = default_layer(n_layers) if config.layer is None else config.layer
    layer = layer + n_layers if layer < 0 else layer
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer {config.layer} out of range for {n_layers} blocks")
    tok, pad, device = orig.tokenizer, pad_id_of(orig.tokenizer), model_device(orig.model)

    say(0.0, f"SAE at block {layer} output")
    if config.sae_path:
        sae, source = load_sae(config.sae_path, orig.model.config.hidden_size), config.sae_path
    else:
        pairs = training_texts(data)
        train_enc = encode(tok, [p for p, _ in pairs], [a for _, a in pairs])
        sae, quality, source = get_sae(orig.model, train_enc, layer, config.sae, pad, orig.hash, data.hash)
    sae = sae.to(device).eval()

    splits = {}
    for name in SPLITS:
        items = getattr(data, name)
        pairs = [data.prompt_format.pair(it) for it in items]
        enc = [e for e in encode(tok, [p for p, _ in pairs], [a for _, a in pairs]) if e.answer_ids]
        splits[name] = _Split(enc, config.batch_size, pad, device)
    say(0.1, "original model")
    base = {}
    item_p: dict[str, dict[str, np.ndarray]] = {}
    for name, sp in splits.items():
        p, acc, sp.h_orig = _run(orig.model, layer, sp)
        base[name] = (float(p.mean()), float(acc.mean()))
        if name == "forget":
            item_p[orig.name] = {PLAIN: _np(p)}
    if config.sae_path:
        quality = sae_quality(sae, torch.cat([h[m.bool()] for sp in splits.values()
                                              for h, (_, m) in zip(sp.h_orig, sp.padded, strict=True)]).cpu())

    # concept set (methods.md step 2): mean activation on forget minus retain; fact sets: per item vs the grand mean
    f_mean, f_max = _feature_stats(sae, splits["forget"])
    r_mean, r_max = _feature_stats(sae, splits["retain"])
    n_expert = default_n_expert(len(splits["forget"].enc)) if config.n_expert is None else config.n_expert
    m = min(n_expert, sae.cfg.d_sae)
    expert = torch.topk(f_mean.mean(0) - r_mean.mean(0), m).indices
    everything = torch.cat([f_mean, r_mean])
    live = torch.nonzero(everything.mean(0) > 0).flatten()
    m_fact = config.n_fact_features or max(1, round(2 * quality.l0))
    m_fact = min(m_fact, len(live) // 2 or 1)
    gen = torch.Generator().manual_seed(config.seed)
    grand = everything.mean(0)
    masks = {}
    for sname, mean in (("forget", f_mean), ("retain", r_mean)):
        fact, rand = _fact_sets(mean, grand, m_fact, live, gen)
        concept = torch.zeros_like(fact)
        concept[:, expert] = 1.0
        masks[sname] = {"fact": fact, "concept": concept, "random": rand}
    features = _feature_rows(expert, f_mean, r_mean, f_max, r_max, data)
    fact_rows = _fact_rows(splits["forget"], masks["forget"]["fact"], f_mean, tok)

    rows = []
    ckpts = {n: lm for n, lm in models.all().items() if n != orig.name}
    total = len(ckpts) * (1 + len(VARIANTS) * len(FEATURE_SETS) * len(config.alphas))
    done = 0
    for cname, lm in ckpts.items():
        say(0.1 + 0.9 * done / total, f"{cname}: plain")
        plain = {}
        for sname, sp in splits.items():
            p, acc, _ = _run(lm.model, layer, sp)
            plain[sname] = (float(p.mean()), float(acc.mean()))
            rows.append(_row(cname, lm.role, "none", "none", 0.0, sname, plain[sname], plain[sname], base[sname]))
            if sname == "forget":
                item_p[cname] = {PLAIN: _np(p)}
        done += 1
        for variant in VARIANTS:
            for fname in FEATURE_SETS:
                for alpha in config.alphas:
                    say(0.1 + 0.9 * done / total, f"{cname}: {variant} {fname} alpha={alpha:g}")
                    for sname, sp in splits.items():
                        batch_masks = [masks[sname][fname][b].to(device) for b in sp.batches]
                        p, acc, _ = _run(lm.model, layer, sp, lambda b, sp=sp, bm=batch_masks, variant=variant,
                                         alpha=alpha: _steer(sae, bm[b], variant, alpha, sp.h_orig[b]))
                        rows.append(_row(cname, lm.role, variant, fname, alpha, sname,
                                         (float(p.mean()), float(acc.mean())), plain[sname], base[sname]))
                        if sname == "forget":
                            item_p[cname][setting(variant, fname, alpha)] = _np(p)
                    done += 1
    say(1.0, "restoration done")
    note = (f"steered the output of decoder block {layer} of {n_layers} (residual stream before the next block"
            f"{' / the final norm' if layer == n_layers - 1 else ''}); "
            + (f"the default layer, round(2/3 * {n_layers}) capped at the last block"
               if layer == default_layer(n_layers) else "a chosen layer (default: "
               f"{default_layer(n_layers)})")
            + ". Restoration at layer l only sees changes made at or below l: a checkpoint whose edits all sit above "
              "l (or whose states at l equal the original's) cannot be restored there; use a layer sweep.")
    headline = "max over alphas" if config.headline_alpha is None else f"alpha={config.headline_alpha:g}"
    return RestorationResult(
        layer=layer, n_layers=n_layers, layer_note=note, sae_source=source, sae_quality=quality,
        n_fact_features=m_fact, expert_features=tuple(int(i) for i in expert), features=tuple(features),
        fact_features=tuple(fact_rows), rows=tuple(rows),
        original_scores={"forget_p": base["forget"][0], "forget_acc": base["forget"][1],
                         "retain_p": base["retain"][0], "retain_acc": base["retain"][1]},
        rule="restoration = clip((F(steered) - F(plain)) / (F(original) - F(plain)), 0, 1), F = mean p~ (or "
             "accuracy) of the gold answer on forget prompts; inject: h' = h_u + W_dec[E]^T alpha (z_o,E - z_u,E); "
             "scale: h' = h_u + W_dec[E]^T alpha z_u,E; fact: E = per item its top-m features by answer-span "
             f"activation minus the mean over all items (m={m_fact}); concept: E = top-{m} features by mean "
             "forget - retain activation; random: per item m random live features outside its fact set "
             f"(all in the original); headline = inject, fact, {headline}.",
        model_hashes={n: lm.hash for n, lm in models.all().items()}, data_hash=data.hash, config=config,
        item_p=item_p, original=orig.name,
    )


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy().copy()


def _row(model, role, variant, feats, alpha, split, now, plain, orig) -> dict:
    return {"model": model, "role": role, "variant": variant, "features": feats, "alpha": alpha, "split": split,
            "p": now[0], "acc": now[1], "delta_p": now[0] - plain[0], "delta_acc": now[1] - plain[1],
            "restoration_p": recovery_rate(now[0], plain[0], orig[0]),
            "restoration_acc": recovery_rate(now[1], plain[1], orig[1])}


def _feature_rows(expert, f_mean, r_mean, f_max, r_max, data: AuditData, top: int = 3) -> list[dict]:
    """Expert features with their top activating prompts (by max activation over tokens, both splits)."""
    items = [("forget", it) for it in data.forget if it.answer] + [("retain", it) for it in data.retain if it.answer]
    mx = torch.cat([f_max, r_max])  # [n_forget + n_retain, d_sae]
    out = []
    for rank, f in enumerate(expert.tolist()):
        order = torch.argsort(mx[:, f], descending=True)[:top].tolist()
        row = {"rank": rank + 1, "feature": f, "mean_forget": float(f_mean[:, f].mean()),
               "mean_retain": float(r_mean[:, f].mean()),
               "share_forget_in_top": sum(items[i][0] == "forget" for i in order) / max(1, len(order))}
        for j, i in enumerate(order):
            split, it = items[i]
            row[f"top{j + 1}"] = f"[{split}] {it.question} -> {it.answer} ({float(mx[i, f]):.2f})"
        out.append(row)
    return out


def _fact_rows(split: _Split, fact: torch.Tensor, mean: torch.Tensor, tok, top: int = 8) -> list[dict]:
    """Per forget item: its answer, its strongest fact features and the share of its mean answer-span activation
    mass that the fact set holds (how much of the item the steering can touch)."""
    out = []
    for i, e in enumerate(split.enc):
        feats = torch.nonzero(fact[i]).flatten()
        order = feats[torch.argsort(mean[i, feats], descending=True)][:top]
        total = float(mean[i].sum())
        out.append({"item": i, "prompt": tok.decode(e.prompt_ids).strip().replace("\n", " "),
                    "answer": tok.decode(e.answer_ids).strip(), "n_features": len(feats),
                    "mass_share": float(mean[i, feats].sum()) / total if total > 0 else math.nan,
                    "top_features": " ".join(f"#{int(f)}:{float(mean[i, f]):.2f}" for f in order)})
    return out


def sweep_configs(config: RestorationConfig, n_layers: int) -> list[RestorationConfig]:
    """One config per block output, everything else equal: each is an ordinary stored restoration run."""
    return [replace(config, layer=layer) for layer in range(n_layers)]


def sweep_frame(results: list[RestorationResult]) -> pd.DataFrame:
    """Headline scores per (layer, checkpoint) from restoration runs at different layers."""
    frames = [r.summary_frame().assign(layer=r.layer, explained_variance=r.sae_quality.explained_variance)
              for r in results]
    return pd.concat(frames, ignore_index=True).sort_values(["layer", "model"], kind="stable", ignore_index=True)


def layer_sweep(models: ModelSet, data: AuditData, config: RestorationConfig = RestorationConfig(),
                progress: Progress | None = None) -> pd.DataFrame:
    """Restoration at every block output (one SAE per layer, cached on disk): where can the knowledge be put back?
    A checkpoint changed only above layer l equals the original at l and cannot be restored there."""
    configs = sweep_configs(config, len(decoder_layers(models.original.model)))
    results = []
    for i, cfg in enumerate(configs):
        def sub(f, m, i=i, layer=cfg.layer):
            if progress:
                progress((i + f) / len(configs), f"layer {layer}: {m}")

        results.append(compute_restoration(models, data, cfg, sub))
    return sweep_frame(results)


SPEC = AnalysisSpec(
    name="sae_restoration", title="SAE restoration", default_config=RestorationConfig, compute=compute_restoration,
    tables=lambda r: {"restoration_curves": r.to_frame(), "restoration_summary": r.summary_frame(),
                      "restoration_features": r.features_frame(),
                      "restoration_fact_features": r.fact_features_frame()},
    scores=lambda r, name: r.scores(name),
    evidence=(Evidence(EVIDENCE_KEY, "restored by injecting the original's fact features (SAE)", "reference"),),
    evidence_items=lambda r: r.evidence_items(),
    resolve=resolve_restoration,
)
