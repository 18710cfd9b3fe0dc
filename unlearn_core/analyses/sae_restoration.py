"""SAE restoration audit (methods.md section 4): are the forgotten concept's features still usable inside?

An SAE trained on the ORIGINAL model's residual stream at layer l gives a feature basis. Expert features E are the
m features whose mean activation on forget prompts most exceeds that on retain prompts (original model). Each
unlearned checkpoint is then steered at layer l on forget prompts with a forward hook:

    inject (needs the original):  h' = h_u + W_dec[E]^T (alpha * (z_o,E - z_u,E))
    scale  (self-contained):      h' = h_u + W_dec[E]^T (alpha * z_u,E)      (z_u,E -> (1 + alpha) z_u,E)

(z = SAE encoder activations of the original (o) / unlearned (u) hidden state at the same token; the additive
change is computed as decode(dz) - decode(0), so any SAE architecture's decoder scaling is respected), and

    restoration = clip((F(steered) - F(plain)) / (F(original) - F(plain)), 0, 1),  F = mean p~ (also accuracy)

A checkpoint that only suppressed the answer keeps the machinery that reads these features, so putting the
original's feature values back restores the answer; a model that never had the knowledge (retain-only) gains
little. Controls: m random live features (restoration must be much lower) and the same steering on retain prompts
(an edit that breaks everything proves nothing).

Layer choice (reported in the result): residual stream = OUTPUT of decoder block l (hooked, not HF hidden_states,
whose last entry has the final norm applied). Default l = min(n_layers - 1, round(2/3 * n_layers)). A checkpoint
can only be restored at a layer where its states differ from the original's: in the demo lab's `suppressed_head`
everything below the last block is byte-identical to the original (z_o = z_u, so injection there is a no-op), and
for the lab's 3-4 block models the 2/3 rule lands on the last block's output, where the change is visible. For
other models run `layer_sweep` and read the restoration per layer.

Known limit, measured on the tiny demo lab (3 blocks, 16 forget facts, default SAE: 1024 features, k 32, explained
variance ~0.94 on training tokens / ~0.90 on forget+retain answer spans; m = 32): at the last block's output an
injection is close to an edit of the logits, and a model trained from the same init on the same answer vocabulary
can read the original's state there. A FULL copy of the original's block-2 output restores 0.91 of suppressed_head's
forget probability but also 0.47 of retain_only's (a true deletion). The m-feature injection restores
suppressed_head only 0.02 / 0.04 / 0.09 / 0.29 at alpha 0.5 / 1 / 2 / 5 and retain_only 0.15 / 0.23 / 0.28 / 0.24,
so on this lab SAE restoration does NOT separate the planted suppression from the deletion reference; what holds is
expert >> random features and the dose-response. Neither a wider SAE (EV 0.96), m up to 128, per-item feature
choice (top |z_o - z_u| per prompt) nor adding the SAE error term (e_o - e_u) to the injection changed that
(all-features injection at alpha 1: suppressed_head 0.42, retain_only 0.48). Read it beside 1 - UDS (patching.py),
whose deletion reference is the retain-only model itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pandas as pd
import torch

from unlearn_core.analyses.patching import _answer_lp, _span_mask
from unlearn_core.analyses.sae_training import (
    SAEQuality,
    SAETrainConfig,
    block_output,
    get_sae,
    load_sae,
    replace_block_output,
    sae_quality,
    training_texts,
)
from unlearn_core.arch import decoder_layers
from unlearn_core.codec import register_result
from unlearn_core.recovery import recovery_rate
from unlearn_core.scoring import Encoded, encode, length_batches, model_device, pad_id_of, right_pad
from unlearn_core.types import AuditData, ModelSet

Progress = Callable[[float, str], None]
VARIANTS = ("inject", "scale")
FEATURE_SETS = ("expert", "random")
SPLITS = ("forget", "retain")
ROW_COLUMNS = ["model", "role", "variant", "features", "alpha", "split", "p", "acc", "delta_p", "delta_acc",
               "restoration_p", "restoration_acc"]


def default_layer(n_layers: int) -> int:
    return min(n_layers - 1, round(2 * n_layers / 3))


def default_n_expert(n_forget: int) -> int:
    """m = max(16, 2 * number of forget items): the paper's 16, grown with the forget set."""
    return max(16, 2 * n_forget)


@register_result
@dataclass(frozen=True)
class RestorationConfig:
    """layer: block whose output is steered (None = default_layer; negative counts from the end); sae_path: a
    sae-lens folder to use instead of training; n_expert: m (None = default_n_expert(number of forget items) =
    max(16, 2 * n_forget): memorised facts get fact-specific features, so a fixed 16 covers fewer facts the larger
    the forget set); alphas: steering strengths; headline_alpha: the alpha whose inject/expert restoration is THE
    restoration score; seed: random-feature control."""

    layer: int | None = None
    sae: SAETrainConfig = field(default_factory=SAETrainConfig)
    sae_path: str | None = None
    n_expert: int | None = None
    alphas: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)
    headline_alpha: float = 1.0
    seed: int = 0
    batch_size: int = 32

    def __post_init__(self):
        if self.layer is not None and (isinstance(self.layer, bool) or not isinstance(self.layer, int)):
            raise ValueError(f"layer must be an int or None, got {self.layer!r}")
        if not isinstance(self.sae, SAETrainConfig):
            raise TypeError(f"sae must be a SAETrainConfig, got {type(self.sae).__name__}")
        for name in ("n_expert", "batch_size"):
            v = getattr(self, name)
            if name == "n_expert" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))
        if not self.alphas or any(not (math.isfinite(a) and a > 0) for a in self.alphas):
            raise ValueError(f"alphas must be positive finite numbers, got {self.alphas!r}")
        if float(self.headline_alpha) not in self.alphas:
            raise ValueError(f"headline_alpha {self.headline_alpha} must be one of alphas {self.alphas}")


@register_result
@dataclass(frozen=True)
class RestorationResult:
    """rows: one per (checkpoint, variant, features, alpha, split) plus alpha=0 plain rows; features: the expert
    features with their forget/retain mean activations and top activating prompts."""

    layer: int
    n_layers: int
    layer_note: str
    sae_source: str
    sae_quality: SAEQuality
    expert_features: tuple[int, ...]
    random_features: tuple[int, ...]
    features: tuple[dict, ...]
    rows: tuple[dict, ...]
    original_scores: dict[str, float]  # forget_p, forget_acc, retain_p, retain_acc
    rule: str
    model_hashes: dict[str, str]
    data_hash: str
    config: RestorationConfig

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows), columns=ROW_COLUMNS)

    def features_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.features))

    def summary_frame(self) -> pd.DataFrame:
        names = list(dict.fromkeys(r["model"] for r in self.rows))
        return pd.DataFrame([{"model": n, **self.scores(n)} for n in names])

    def _pick(self, name, variant, feats, alpha, split, col) -> float:
        for r in self.rows:
            if (r["model"], r["variant"], r["features"], r["split"]) == (name, variant, feats, split) \
                    and r["alpha"] == alpha:
                return float(r[col])
        return math.nan

    def scores(self, name: str) -> dict[str, float]:
        """Headline numbers for one checkpoint (report.json / verdict); {} for the original."""
        if not any(r["model"] == name for r in self.rows):
            return {}
        a = self.config.headline_alpha
        curve = [self._pick(name, "inject", "expert", x, "forget", "restoration_p") for x in self.config.alphas]
        scale = [self._pick(name, "scale", "expert", x, "forget", "restoration_p") for x in self.config.alphas]
        rand = [self._pick(name, "inject", "random", x, "forget", "restoration_p") for x in self.config.alphas]
        return {
            "sae_restoration": self._pick(name, "inject", "expert", a, "forget", "restoration_p"),
            "sae_restoration_acc": self._pick(name, "inject", "expert", a, "forget", "restoration_acc"),
            "sae_restoration_max": max((c for c in curve if not math.isnan(c)), default=math.nan),
            "sae_restoration_scale_max": max((c for c in scale if not math.isnan(c)), default=math.nan),
            "sae_restoration_random": self._pick(name, "inject", "random", a, "forget", "restoration_p"),
            "sae_restoration_random_max": max((c for c in rand if not math.isnan(c)), default=math.nan),
            "sae_retain_delta_p": self._pick(name, "inject", "expert", a, "retain", "delta_p"),
            "sae_layer": float(self.layer),
        }


class _Split:
    """One split's encoded items in length batches, with the original's hidden states at the layer (on device)."""

    def __init__(self, enc: list[Encoded], batch_size: int, pad: int, device):
        self.enc = enc
        self.batches = length_batches([len(e.ids) for e in enc], batch_size)
        self.padded = [right_pad([enc[i].ids for i in b], pad, device) for b in self.batches]
        self.h_orig: list[torch.Tensor] = []  # per batch [B, T, d]


@torch.no_grad()
def _run(model, layer: int, split: _Split, hook_for_batch=None) -> tuple[torch.Tensor, torch.Tensor, list]:
    """(p~ [n], acc [n], captured block-`layer` outputs per batch). hook_for_batch(b) -> hook fn or None."""
    n = len(split.enc)
    lp, acc = torch.zeros(n), torch.zeros(n)
    captured = []
    blk = decoder_layers(model)[layer]
    for b, (idx, (ids, mask)) in enumerate(zip(split.batches, split.padded, strict=True)):
        store = {}

        def capture(_m, _i, out, store=store):
            store["h"] = block_output(out)

        handle = blk.register_forward_hook(hook_for_batch(b) if hook_for_batch else capture)
        try:
            logits = model(input_ids=ids.to(model_device(model)), attention_mask=mask.to(model_device(model))).logits
        finally:
            handle.remove()
        captured.append(store.get("h"))
        batch = [split.enc[i] for i in idx]
        lp[idx] = _answer_lp(logits, batch)
        for r, e in enumerate(batch):
            p, a = len(e.prompt_ids), len(e.answer_ids)
            pred = logits[r, p - 1 : p + a - 1].argmax(-1).cpu()
            acc[idx[r]] = float(bool((pred == torch.tensor(e.answer_ids)).all()))
    return lp.exp(), acc, captured


def _steer_hook(sae, feats: torch.Tensor, variant: str, alpha: float, h_orig: torch.Tensor | None):
    """Forward hook adding W_dec[feats]^T dz at every position of the block output."""
    zero = None

    def hook(_m, _i, out):
        nonlocal zero
        h = block_output(out)  # [B, T, d]
        z_u = sae.encode(h.float())  # [B, T, d_sae]
        dz = torch.zeros_like(z_u)
        if variant == "inject":
            z_o = sae.encode(h_orig.float())
            dz[..., feats] = alpha * (z_o[..., feats] - z_u[..., feats])
        else:
            dz[..., feats] = alpha * z_u[..., feats]
        if zero is None:
            zero = sae.decode(torch.zeros_like(z_u[:1, :1]))  # [1, 1, d]
        delta = sae.decode(dz) - zero  # [B, T, d]: the linear part only
        return replace_block_output(out, h + delta.to(h.dtype))

    return hook


@torch.no_grad()
def _feature_stats(sae, split: _Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Per item: mean and max SAE activation over the answer-span positions (p-1 .. p+a-2, whose outputs predict the
    answer), each [n_items, d_sae] (CPU). The span, not the whole sequence: the prompt template is shared by both
    splits and would dominate a whole-sequence mean with features that say nothing about the forgotten facts."""
    n, d_sae = len(split.enc), sae.cfg.d_sae
    mean, mx = torch.zeros(n, d_sae), torch.zeros(n, d_sae)
    for idx, (ids, _), h in zip(split.batches, split.padded, split.h_orig, strict=True):
        span = _span_mask([split.enc[i] for i in idx], ids.shape[1], h.device)  # [B, T]
        z = sae.encode(h.float()) * span[..., None]  # [B, T, d_sae]
        mean[idx] = (z.sum(1) / span.sum(1, keepdim=True)).cpu()
        mx[idx] = z.max(1).values.cpu()
    return mean, mx


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
    for name, sp in splits.items():
        p, acc, sp.h_orig = _run(orig.model, layer, sp)
        base[name] = (float(p.mean()), float(acc.mean()))
    if config.sae_path:
        quality = sae_quality(sae, torch.cat([h[m.bool()] for sp in splits.values()
                                              for h, (_, m) in zip(sp.h_orig, sp.padded, strict=True)]).cpu())

    # expert features: mean activation on forget minus retain (original); random control among live features
    f_mean, f_max = _feature_stats(sae, splits["forget"])
    r_mean, r_max = _feature_stats(sae, splits["retain"])
    diff = f_mean.mean(0) - r_mean.mean(0)  # [d_sae]
    n_expert = default_n_expert(len(splits["forget"].enc)) if config.n_expert is None else config.n_expert
    m = min(n_expert, sae.cfg.d_sae)
    expert = torch.topk(diff, m).indices
    live = torch.nonzero(torch.cat([f_mean, r_mean]).mean(0) > 0).flatten()
    live = live[~torch.isin(live, expert)]
    gen = torch.Generator().manual_seed(config.seed)
    rand = live[torch.randperm(len(live), generator=gen)[:m]]
    features = _feature_rows(expert, f_mean, r_mean, f_max, r_max, data)

    rows = []
    ckpts = {n: lm for n, lm in models.all().items() if n != orig.name}
    sets = {"expert": expert.to(device), "random": rand.to(device)}
    total = len(ckpts) * (1 + len(VARIANTS) * len(sets) * len(config.alphas))
    done = 0
    for cname, lm in ckpts.items():
        say(0.1 + 0.9 * done / total, f"{cname}: plain")
        plain = {}
        for sname, sp in splits.items():
            p, acc, _ = _run(lm.model, layer, sp)
            plain[sname] = (float(p.mean()), float(acc.mean()))
            rows.append(_row(cname, lm.role, "none", "none", 0.0, sname, plain[sname], plain[sname], base[sname]))
        done += 1
        for variant in VARIANTS:
            for fname, feats in sets.items():
                for alpha in config.alphas:
                    say(0.1 + 0.9 * done / total, f"{cname}: {variant} {fname} alpha={alpha:g}")
                    for sname, sp in splits.items():
                        p, acc, _ = _run(lm.model, layer, sp, lambda b, sp=sp, feats=feats, variant=variant,
                                         alpha=alpha: _steer_hook(sae, feats, variant, alpha, sp.h_orig[b]))
                        rows.append(_row(cname, lm.role, variant, fname, alpha, sname,
                                         (float(p.mean()), float(acc.mean())), plain[sname], base[sname]))
                    done += 1
    say(1.0, "restoration done")
    note = (f"steered the output of decoder block {layer} of {n_layers} (residual stream before the next block"
            f"{' / the final norm' if layer == n_layers - 1 else ''}); "
            + ("user-chosen layer" if config.layer is not None else
               f"default round(2/3 * {n_layers}) capped at the last block")
            + ". Restoration at layer l only sees changes made at or below l: a checkpoint whose edits all sit above "
              "l (or whose states at l equal the original's) cannot be restored there; use a layer sweep.")
    return RestorationResult(
        layer=layer, n_layers=n_layers, layer_note=note, sae_source=source, sae_quality=quality,
        expert_features=tuple(int(i) for i in expert), random_features=tuple(int(i) for i in rand),
        features=tuple(features), rows=tuple(rows),
        original_scores={"forget_p": base["forget"][0], "forget_acc": base["forget"][1],
                         "retain_p": base["retain"][0], "retain_acc": base["retain"][1]},
        rule="restoration = clip((F(steered) - F(plain)) / (F(original) - F(plain)), 0, 1), F = mean p~ (or "
             "accuracy) of the gold answer on forget prompts; inject: h' = h_u + W_dec[E]^T alpha (z_o,E - z_u,E); "
             "scale: h' = h_u + W_dec[E]^T alpha z_u,E; E = top-m features by mean answer-span activation forget - "
             f"retain in the original (m={m}{'' if config.n_expert else ' = max(16, 2 x forget items)'}); "
             f"headline = inject, expert, alpha={config.headline_alpha:g}.",
        model_hashes={n: lm.hash for n, lm in models.all().items()}, data_hash=data.hash, config=config,
    )


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


def layer_sweep(models: ModelSet, data: AuditData, config: RestorationConfig = RestorationConfig(),
                layers: tuple[int, ...] | None = None, progress: Progress | None = None) -> pd.DataFrame:
    """Headline restoration per (layer, checkpoint): one SAE per layer (cached on disk). Default: every layer."""
    n = len(decoder_layers(models.original.model))
    layers = tuple(range(n)) if layers is None else layers
    frames = []
    for i, layer in enumerate(layers):
        def sub(f, m, i=i, layer=layer):
            if progress:
                progress((i + f) / len(layers), f"layer {layer}: {m}")

        res = compute_restoration(models, data, replace(config, layer=layer), sub)
        frames.append(res.summary_frame().assign(layer=res.layer))
    return pd.concat(frames, ignore_index=True)


def analysis_spec():
    from unlearn_core.audit import Analysis

    return Analysis("sae_restoration", "SAE restoration", RestorationConfig, compute_restoration,
                    lambda r: {"restoration_curves": r.to_frame(), "restoration_summary": r.summary_frame(),
                               "restoration_features": r.features_frame()},
                    lambda r, name: r.scores(name))
