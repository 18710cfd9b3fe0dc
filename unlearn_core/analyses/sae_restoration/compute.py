"""compute_restoration and the layer sweep."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from unlearn_core.analyses.sae_restoration.result import (
    FEATURE_SETS,
    PLAIN,
    SPLITS,
    VARIANTS,
    RestorationConfig,
    RestorationResult,
    default_layer,
    default_n_expert,
    setting,
)
from unlearn_core.analyses.sae_restoration.steering import (
    Split,
    fact_sets,
    feature_stats,
    run_split,
    steering_directions,
)
from unlearn_core.analyses.sae_restoration.training import get_sae, load_sae, sae_quality, training_texts
from unlearn_core.analyses.spec import Shape
from unlearn_core.evidence.recovery import recovery_rate
from unlearn_core.model.arch import decoder_layers
from unlearn_core.model.hooks import resume_matches
from unlearn_core.model.scoring import encode, input_device, pad_id_of
from unlearn_core.types import AuditData, ModelSet, Progress


def resolve_restoration(config: RestorationConfig, shape: Shape) -> RestorationConfig:
    """layer None / negative -> the block index it means; n_expert None -> its value for this forget set."""
    n = shape.n_layers
    layer = default_layer(n) if config.layer is None else config.layer
    layer = layer + n if layer < 0 else layer
    n_expert = default_n_expert(shape.n_forget) if config.n_expert is None else config.n_expert
    return replace(config, layer=layer, n_expert=n_expert)


def restoration_needs(data: AuditData, config: RestorationConfig) -> str:
    return "" if data.forget and data.retain else ("SAE restoration needs forget and retain items (expert features "
                                                   "contrast the two)")


def compute_restoration(models: ModelSet, data: AuditData, config: RestorationConfig = RestorationConfig(),
                        progress: Progress | None = None) -> RestorationResult:
    if not isinstance(config, RestorationConfig):
        raise TypeError(f"config must be a RestorationConfig, got {type(config).__name__}")
    why = restoration_needs(data, config)
    if why:
        raise ValueError(why)
    say = progress or (lambda f, m: None)
    orig = models.original
    n_layers = len(decoder_layers(orig.model))
    layer = default_layer(n_layers) if config.layer is None else config.layer
    layer = layer + n_layers if layer < 0 else layer
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer {config.layer} out of range for {n_layers} blocks")
    tok, pad, device = orig.tokenizer, pad_id_of(orig.tokenizer), input_device(orig.model)

    say(0.0, f"SAE at block {layer} output")
    if config.sae_path:
        sae, source = load_sae(config.sae_path, orig.model.config.hidden_size), config.sae_path
    else:
        pairs = training_texts(data)
        train_enc = encode(tok, [p for p, _ in pairs], [a for _, a in pairs])
        sae, quality, source = get_sae(orig.model, train_enc, layer, config.sae, pad, orig.hash, data.hash,
                                       progress=lambda f, m: say(0.1 * f, m))
    sae = sae.to(device).eval()

    splits = {}
    for name in SPLITS:
        items = getattr(data, name)
        pairs = [data.prompt_format.pair(it) for it in items]
        enc = [e for e in encode(tok, [p for p, _ in pairs], [a for _, a in pairs]) if e.answer_ids]
        splits[name] = Split(enc, config.batch_size, pad, device)
    say(0.1, "original model")
    base = {}
    item_p: dict[str, dict[str, np.ndarray]] = {}
    for name, sp in splits.items():
        p, acc, sp.h_orig = run_split(orig.model, layer, sp)
        base[name] = (float(p.mean()), float(acc.mean()))
        if name == "forget":
            item_p[orig.name] = {PLAIN: _np(p)}
    if config.sae_path:
        quality = sae_quality(sae, torch.cat([h[m.bool()] for sp in splits.values()
                                              for h, (_, m) in zip(sp.h_orig, sp.padded, strict=True)]).cpu())

    # concept set (methods.md step 2): mean activation on forget minus retain; fact sets: per item vs the grand mean
    f_mean, f_max = feature_stats(sae, splits["forget"])
    r_mean, r_max = feature_stats(sae, splits["retain"])
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
        fact, rand = fact_sets(mean, grand, m_fact, live, gen)
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
        plain, h_u = {}, {}
        for sname, sp in splits.items():
            p, acc, h_u[sname] = run_split(lm.model, layer, sp)
            plain[sname] = (float(p.mean()), float(acc.mean()))
            rows.append(_row(cname, lm.role, "none", "none", 0.0, sname, plain[sname], plain[sname], base[sname]))
            if sname == "forget":
                item_p[cname] = {PLAIN: _np(p)}
        first = splits["forget"].padded[0]
        resumable = resume_matches(lm.model, first[0].to(device), first[1].to(device), layer)
        resume = h_u if resumable else dict.fromkeys(splits)
        done += 1
        edits = {sname: [steering_directions(sae, {(v, f): masks[sname][f][idx].to(device)
                                                   for v in VARIANTS for f in FEATURE_SETS}, h, h_o)
                         for idx, h, h_o in zip(sp.batches, h_u[sname], sp.h_orig, strict=True)]
                 for sname, sp in splits.items()}
        for variant in VARIANTS:
            # all six edits' directions are held at once (six block outputs per item, float32); each is
            # released once its alpha grid has run
            for fname in FEATURE_SETS:
                direction = {sname: [d.pop((variant, fname)) for d in edits[sname]] for sname in splits}
                for alpha in config.alphas:
                    say(0.1 + 0.9 * done / total, f"{cname}: {variant} {fname} alpha={alpha:g}")
                    for sname, sp in splits.items():
                        p, acc, _ = run_split(lm.model, layer, sp, _adder(direction[sname], alpha), resume[sname])
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


def _adder(direction: list[torch.Tensor], alpha: float):
    """steer_for_batch of run_split: batch b's state h -> h + alpha * D_b."""
    return lambda b: lambda state: state + (alpha * direction[b]).to(state.dtype)


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


def _fact_rows(split: Split, fact: torch.Tensor, mean: torch.Tensor, tok, top: int = 8) -> list[dict]:
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
