"""compute_concept_vectors: locate in the original, validate causally, measure change, ablate."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import torch

from unlearn_core.analyses.concept_vectors.ablation import (
    noise_edit,
    score_under_edits,
    zero_ablation_attribution,
    zero_edit,
)
from unlearn_core.analyses.concept_vectors.change import CHANGE_COLUMNS, WEIGHT_COLUMNS, column_change, weight_change
from unlearn_core.analyses.concept_vectors.locate import (
    concept_items,
    concept_words,
    locate_scores,
    project_columns,
    top_candidates,
    word_token_ids,
)
from unlearn_core.analyses.concept_vectors.result import (
    ABLATION_COLUMNS,
    CANDIDATE_COLUMNS,
    ConceptVectorsConfig,
    ConceptVectorsResult,
)
from unlearn_core.model import arch
from unlearn_core.model.scoring import encode, pad_id_of
from unlearn_core.types import AuditData, ModelSet, Progress


def _tokens_of(tok, ids) -> tuple[str, ...]:
    return tuple(tok.decode([int(i)]) for i in ids)


def _concept_token_sets(data: AuditData, concepts, members, tokenizer, cfg) -> list[torch.Tensor]:
    """Token ids per concept; shared tokens (produced by other concepts' words too) removed unless none remain."""
    pool = (*data.forget, *data.retain)
    sets = []
    for concept, idx in zip(concepts, members):
        own_items = [data.forget[i] for i in idx]
        ids = word_token_ids(tokenizer, concept_words(own_items, concept, cfg.token_sources))
        if cfg.exclude_shared_tokens:
            own = {id(it) for it in own_items}
            others = [it for it in pool if id(it) not in own and (it.concept or "") != concept]
            background: set[int] = set()
            by_concept: dict[str, list] = {}
            for it in others:
                by_concept.setdefault(it.concept or "", []).append(it)
            for name, items in by_concept.items():
                background |= word_token_ids(tokenizer, concept_words(items, name, cfg.token_sources))
            ids = (ids - background) or ids
        sets.append(torch.tensor(sorted(ids), dtype=torch.long))
    return sets


def _unrelated(data: AuditData, member_idx: set[int], n: int):
    pool = list(data.retain) or [it for i, it in enumerate(data.forget) if i not in member_idx]
    if len(pool) <= n:
        return pool
    step = len(pool) / n  # evenly spaced: every attribute type is represented, deterministically
    return [pool[int(i * step)] for i in range(n)]


def _encode(lm, data, items):
    pairs = [data.prompt_format.pair(it) for it in items]
    return encode(lm.tokenizer, [p for p, _ in pairs], [a for _, a in pairs])


def _validate(lm, data, concept, member, candidates, loc, cfg, gen) -> list[dict]:
    """Zero/noise each projection candidate on its own (exact drops, concept vs unrelated); apply the filter;
    if fewer than min_vectors pass, fill up to n_fallback columns by the configured fallback, marked as such."""
    items = [data.forget[i] for i in member]
    unrelated = _unrelated(data, set(member), cfg.max_unrelated)
    enc = _encode(lm, data, items + unrelated)
    pad = pad_id_of(lm.tokenizer)
    variants = [((zero_edit(lm.model, ly, j) if cfg.perturbation == "zero"
                  else noise_edit(lm.model, ly, j, cfg.noise_std, gen)),) for ly, j, _ in candidates]
    p, acc = score_under_edits(lm.model, enc, pad, variants, cfg.batch_size)
    m = p if cfg.effect_metric == "p" else acc
    n = len(items)
    base_c, base_u = np.nanmean(m[-1, :n]), np.nanmean(m[-1, n:]) if len(unrelated) else 0.0
    attr = zero_ablation_attribution(lm.model, enc[:n], pad, cfg.batch_size) if cfg.fallback == "attribution" \
        else None  # [n_layers, d_mlp] estimated drop of the concept's mean answer log-prob
    rows = []
    for v, (layer, neuron, score) in enumerate(candidates):
        cd = float(base_c - np.nanmean(m[v, :n]))
        ud = float(base_u - np.nanmean(m[v, n:])) if len(unrelated) else 0.0
        rows.append({"concept": concept, "layer": layer, "neuron": neuron, "loc_score": score, "loc_rank": v,
                     "concept_drop": cd, "unrelated_drop": ud, "effect": cd - ud,
                     "est_logp_drop": float(attr[layer, neuron]) if attr is not None else math.nan,
                     "passed_filter": cd > cfg.concept_drop_min and ud < cfg.unrelated_drop_max})
    passed = sorted((r for r in rows if r["passed_filter"]), key=lambda r: -r["effect"])[: cfg.max_vectors]
    chosen = {(r["layer"], r["neuron"]): "filter" for r in passed}
    if len(chosen) < cfg.min_vectors and cfg.fallback == "candidates":
        for r in sorted(rows, key=lambda r: -r["effect"]):
            if len(chosen) >= cfg.n_fallback or r["effect"] <= 0:
                break
            chosen.setdefault((r["layer"], r["neuron"]), "top_effect")
    elif len(chosen) < cfg.min_vectors and attr is not None:
        d_mlp = attr.shape[1]
        seen = {(r["layer"], r["neuron"]) for r in rows}
        for i in attr.flatten().argsort(descending=True).tolist():
            layer, neuron = i // d_mlp, i % d_mlp
            if len(chosen) >= cfg.n_fallback or attr[layer, neuron] <= 0:
                break
            chosen.setdefault((layer, neuron), "attribution")
            if (layer, neuron) not in seen:
                rows.append({"concept": concept, "layer": layer, "neuron": neuron,
                             "loc_score": float(loc[layer, neuron]), "loc_rank": -1, "concept_drop": math.nan,
                             "unrelated_drop": math.nan, "effect": math.nan,
                             "est_logp_drop": float(attr[layer, neuron]), "passed_filter": False})
    for r in rows:
        r["selected_by"] = chosen.get((r["layer"], r["neuron"]), "")
        r["located"] = bool(r["selected_by"])
    return rows


def _random_columns(model, exclude: set[tuple[int, int]], n: int, seed: int) -> list[tuple[int, int]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for layer in range(arch.n_layers(model)):
        d_mlp = arch.mlp_out_matrix(model, layer).shape[1]
        pool = [j for j in torch.randperm(d_mlp, generator=gen).tolist() if (layer, j) not in exclude]
        out += [(layer, j) for j in pool[:n]]
    return out


def _projection_rows(lm, located, token_ids, cfg) -> list[dict]:
    """Top tokens (with logit-lens scores) of each located column in one checkpoint."""
    if not located:
        return []
    from unlearn_core.analyses.concept_vectors.change import gather_columns

    cols = [(ly, j) for _, ly, j in located]
    proj = project_columns(lm.model, gather_columns(lm.model, cols), cfg.apply_norm)  # [vocab, n]
    vals, idx = proj.topk(min(cfg.n_show_tokens, proj.shape[0]), dim=0)
    rows = []
    for c, (concept, layer, neuron) in enumerate(located):
        cset = set(token_ids[concept].tolist())
        for r in range(idx.shape[0]):
            t = int(idx[r, c])
            rows.append({"checkpoint": lm.name, "concept": concept, "layer": layer, "neuron": neuron, "rank": r,
                         "token_id": t, "token": lm.tokenizer.decode([t]), "score": float(vals[r, c]),
                         "is_concept_token": t in cset})
    return rows


def _split_means(p, acc, n_forget):
    return {"forget_acc": float(np.nanmean(acc[:n_forget])), "forget_p": float(np.nanmean(p[:n_forget])),
            "retain_acc": float(np.nanmean(acc[n_forget:])) if acc.shape[0] > n_forget else math.nan,
            "retain_p": float(np.nanmean(p[n_forget:])) if p.shape[0] > n_forget else math.nan}


def _variants(cfg: ConceptVectorsConfig, k: int) -> dict[str, str]:
    return {
        "projection": f"W_U @ ({'g * ' if cfg.apply_norm else ''}v): logit lens on the column"
                      + (", g = final norm weight (no centring, no bias)" if cfg.apply_norm else ", no final norm"),
        "locate_score": f"sum of 1/(rank+1) over the concept's tokens in the column's top-{k}",
        "concept_tokens": f"tokens of {', '.join(cfg.token_sources)} words, bare and with a leading space"
                          + ("; tokens other concepts' words also produce removed" if cfg.exclude_shared_tokens
                             else ""),
        "causal_filter": f"{cfg.perturbation} one column"
                         + (f" (N(0, {cfg.noise_std:g}) added)" if cfg.perturbation == "noise" else "")
                         + f"; drop in mean {'p~' if cfg.effect_metric == 'p' else 'accuracy'}: concept > "
                         f"{cfg.concept_drop_min:g}, unrelated < {cfg.unrelated_drop_max:g}; fewer than "
                         f"{cfg.min_vectors} passing -> {cfg.n_fallback} columns by "
                         + {"attribution": "estimated zero-ablation drop of the concept's answer log-prob "
                            "(activation x gradient, every column)",
                            "candidates": "largest exact (concept - unrelated) drop among candidates",
                            "none": "nothing (no fallback)"}[cfg.fallback],
        "change": f"cosine, L2, rel L2 = L2/||v0||, Jaccard of top-{k} (each model's own W_U), survival = share "
                  f"of v0's top-{k} concept tokens still in v1's top-{k}; random = {cfg.n_random} columns per layer",
        "weight_change": "||W1 - W0||_F / ||W0||_F per parameter; per layer: sqrt(sum dW^2) / sqrt(sum W^2)",
        "oracle": "original with located columns zeroed (forward hook), teacher-forced p~ and accuracy: "
                  "'located zeroed' = each concept's own columns, scored on its own forget items (pooled) and on "
                  "retain (mean over concepts); 'all located zeroed' = the union, on forget and retain",
    }


def compute_concept_vectors(models: ModelSet, data: AuditData, config: ConceptVectorsConfig = ConceptVectorsConfig(),
                            progress: Progress | None = None) -> ConceptVectorsResult:
    """Locate concept vectors in the original, measure every checkpoint's change to them, run the oracle."""
    if not isinstance(config, ConceptVectorsConfig):
        raise TypeError(f"config must be a ConceptVectorsConfig, got {type(config).__name__}")
    if not data.forget:
        raise ValueError("the concept-vector audit needs a forget set")
    cfg, orig = config, models.original

    def say(frac, msg):
        if progress is not None:
            progress(frac, msg)

    concepts = cfg.concepts or tuple(dict.fromkeys(it.concept for it in data.forget if it.concept)) or ("",)
    members = [concept_items(data.forget, c) if c else tuple(range(len(data.forget))) for c in concepts]
    for c, m in zip(concepts, members):
        if not m:
            raise ValueError(f"no forget item matches the concept {c!r}")
    token_ids = dict(zip(concepts, _concept_token_sets(data, concepts, members, orig.tokenizer, cfg)))
    k = cfg.effective_k(arch.unembedding(orig.model).shape[0])

    say(0.0, "projecting every MLP column to the vocabulary")
    t0 = time.perf_counter()
    scores = locate_scores(orig.model, [token_ids[c] for c in concepts], k, cfg.apply_norm, cfg.column_chunk)
    gen = torch.Generator().manual_seed(cfg.seed)
    cand_rows = []
    for ci, (concept, member) in enumerate(zip(concepts, members)):
        say(0.1 + 0.4 * ci / len(concepts), f"validating candidates for {concept or 'the forget set'}")
        cands = top_candidates(scores[ci], cfg.n_candidates)
        cand_rows += _validate(orig, data, concept, member, cands, scores[ci], cfg, gen)
    locate_seconds = time.perf_counter() - t0
    candidates = pd.DataFrame(cand_rows, columns=CANDIDATE_COLUMNS)
    if len(candidates):
        w = {(r.layer, r.neuron): None for r in candidates.itertuples()}
        top = project_columns(orig.model, torch.stack([arch.mlp_out_matrix(orig.model, ly)[:, j].detach().float()
                                                       for ly, j in w], 1), cfg.apply_norm).topk(5, dim=0).indices
        tops = {key: " | ".join(_tokens_of(orig.tokenizer, top[:, i])) for i, key in enumerate(w)}
        candidates["top_tokens"] = [tops[(r.layer, r.neuron)] for r in candidates.itertuples()]
    located = [(r.concept, int(r.layer), int(r.neuron)) for r in candidates.itertuples() if r.located]
    located_cols = list(dict.fromkeys((ly, j) for _, ly, j in located))
    concept_of_col: dict[tuple[int, int], torch.Tensor] = {}
    for c, ly, j in located:  # a column located for two concepts counts the tokens of both
        prev = concept_of_col.get((ly, j))
        concept_of_col[(ly, j)] = token_ids[c] if prev is None else torch.unique(torch.cat([prev, token_ids[c]]))
    random_cols = _random_columns(orig.model, set(located_cols), cfg.n_random, cfg.seed)

    others = {n: lm for n, lm in models.all().items() if n != orig.name}
    change_rows, weight_rows, proj_rows = [], [], _projection_rows(orig, located, token_ids, cfg)
    for i, (name, lm) in enumerate(others.items()):
        say(0.5 + 0.2 * i / max(1, len(others)), f"{name}: change of located and random columns")
        for kind, cols in (("concept", located_cols), ("random", random_cols)):
            ids = [concept_of_col.get(c) for c in cols]
            for r in column_change(orig.model, lm.model, cols, k, cfg.apply_norm, ids):
                concept = " + ".join(c for c, ly, j in located if (ly, j) == (r["layer"], r["neuron"]))
                change_rows.append({"checkpoint": name, "concept": concept if kind == "concept" else "",
                                    "kind": kind, **r})
        weight_rows += weight_change(orig.model, lm.model, name)
        proj_rows += _projection_rows(lm, located, token_ids, cfg)
    change = pd.DataFrame(change_rows, columns=CHANGE_COLUMNS)

    say(0.75, "ablation oracle: zeroing the located columns in the original")
    retain = list(data.retain)
    n_f = len(data.forget)
    union = tuple(zero_edit(orig.model, ly, j) for ly, j in located_cols)
    per_concept = [tuple(zero_edit(orig.model, ly, j) for c2, ly, j in located if c2 == c) for c in concepts]
    enc = _encode(orig, data, list(data.forget) + retain)
    p, acc = score_under_edits(orig.model, enc, pad_id_of(orig.tokenizer), [union, *per_concept], cfg.batch_size)
    abl_rows, concept_rows = [], []
    cos_by = change[change["kind"] == "concept"].groupby("checkpoint")["cosine"].median().to_dict()
    for name, lm in models.all().items():
        if name == orig.name:
            pp, aa = p[-1], acc[-1]
        else:
            e = _encode(lm, data, list(data.forget) + retain)
            pp, aa = (x[-1] for x in score_under_edits(lm.model, e, pad_id_of(lm.tokenizer), [], cfg.batch_size))
        cos = 1.0 if name == orig.name else cos_by.get(name, math.nan)
        abl_rows.append({"checkpoint": name, "role": lm.role, "condition": "as is", "n_zeroed": 0,
                         **_split_means(pp, aa, n_f), "median_cos_located": cos})
    for ci, (concept, member) in enumerate(zip(concepts, members)):
        idx = list(member)
        rest = [i for i in range(n_f) if i not in set(member)]
        v = 1 + ci
        concept_rows.append({
            "concept": concept, "n_zeroed": len(per_concept[ci]),
            "concept_acc_before": float(np.nanmean(acc[-1, idx])), "concept_acc_after": float(np.nanmean(acc[v, idx])),
            "concept_p_before": float(np.nanmean(p[-1, idx])), "concept_p_after": float(np.nanmean(p[v, idx])),
            "other_forget_acc_before": float(np.nanmean(acc[-1, rest])) if rest else math.nan,
            "other_forget_acc_after": float(np.nanmean(acc[v, rest])) if rest else math.nan,
            "retain_acc_before": float(np.nanmean(acc[-1, n_f:])) if retain else math.nan,
            "retain_acc_after": float(np.nanmean(acc[v, n_f:])) if retain else math.nan,
            "retain_p_after": float(np.nanmean(p[v, n_f:])) if retain else math.nan,
        })
    # the oracle: each concept's own columns zeroed, scored on that concept's items (forget) and on retain
    w = np.array([len(m) for m in members], dtype=float)
    ca = pd.DataFrame(concept_rows)
    per_concept_row = {"forget_acc": float(np.average(ca["concept_acc_after"], weights=w)),
                       "forget_p": float(np.average(ca["concept_p_after"], weights=w)),
                       "retain_acc": float(ca["retain_acc_after"].mean()),
                       "retain_p": float(ca["retain_p_after"].mean())}
    abl_rows.insert(1, {"checkpoint": f"{orig.name} (own vectors zeroed)", "role": "oracle",
                        "condition": "located zeroed", "n_zeroed": len(located), **per_concept_row,
                        "median_cos_located": math.nan})
    abl_rows.insert(2, {"checkpoint": f"{orig.name} (all located zeroed)", "role": "oracle",
                        "condition": "all located zeroed", "n_zeroed": len(located_cols),
                        **_split_means(p[0], acc[0], n_f), "median_cos_located": math.nan})
    say(1.0, "concept-vector audit done")
    n_layers = arch.n_layers(orig.model)
    return ConceptVectorsResult(
        concepts=tuple(concepts),
        concept_tokens={c: _tokens_of(orig.tokenizer, token_ids[c]) for c in concepts},
        candidates=candidates, change=change,
        weight_change=pd.DataFrame(weight_rows, columns=WEIGHT_COLUMNS),
        ablation=pd.DataFrame(abl_rows, columns=ABLATION_COLUMNS),
        concept_ablation=ca,
        projections=pd.DataFrame(proj_rows, columns=["checkpoint", "concept", "layer", "neuron", "rank", "token_id",
                                                     "token", "score", "is_concept_token"]),
        loc_scores=scores.reshape(len(concepts), n_layers, -1).numpy().astype(np.float32),
        k=k, locate_seconds=locate_seconds, variants=_variants(cfg, k),
        model_hashes={n: lm.hash for n, lm in models.all().items()}, data_hash=data.hash, config=cfg,
    )
