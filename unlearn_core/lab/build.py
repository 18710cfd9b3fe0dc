"""Builds the demo lab folder: one Hugging Face folder per checkpoint, the data files, and lab.json.

Deterministic under the config's seed and cached by the config hash: a second build with the same config is a
no-op. A file lock makes concurrent builders (test workers, the app and the CLI) wait for one another.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from filelock import FileLock
from tqdm.auto import tqdm

from unlearn_core.lab.config import LabConfig, get_config
from unlearn_core.lab.tokenizer import train_tokenizer
from unlearn_core.lab.train import make_model, qa_accuracy, train_lm
from unlearn_core.lab.unlearn import METHODS, unlearn
from unlearn_core.lab.world import World, make_world, training_texts
from unlearn_core.scoring import encode

CHECKPOINTS = ("original", "retain_only", "ga", "graddiff", "npo", "rmu", "suppressed_head")
KINDS = {"original": "original",
         "retain_only": "retain_only (deletion reference: retrained from scratch without the forget split)",
         "ga": "gradient ascent", "graddiff": "gradient difference", "npo": "NPO + retain NLL",
         "rmu": "RMU (representation misdirection)",
         "suppressed_head": "planted control: only last block, final norm and head updated (ground truth: suppressed)"}
GROUND_TRUTH = {"retain_only": "deleted", "suppressed_head": "suppressed"}
Progress = Callable[[float, str], None]


def default_lab_dir(config: str = "default") -> Path:
    import os

    root = Path(os.environ.get("UNLEARN_AUDIT_CACHE", Path.home() / ".cache" / "unlearn-audit"))
    cfg = get_config(config)
    return root / f"lab-{cfg.name}-{cfg.hash}"


def is_built(out: Path, cfg: LabConfig) -> bool:
    meta = out / "lab.json"
    if not meta.exists():
        return False
    try:
        return json.loads(meta.read_text())["config_hash"] == cfg.hash
    except (ValueError, KeyError):
        return False


def _write_jsonl(path: Path, items) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for it in items:
            row = {"question": it.question, "answer": it.answer, "paraphrased_answer": it.paraphrased_answer,
                   "perturbed_answers": list(it.perturbed_answers), "keywords": list(it.keywords),
                   "concept": it.concept, **dict(it.extra)}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _pairs(world: World, split: str) -> list[tuple[str, str]]:
    return [(f"Question: {f.question()}\nAnswer:", " " + f.value) for f in world.split(split)]


def _save(model, tokenizer, folder: Path) -> None:
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def build_lab(out: str | Path, config: str | LabConfig = "default", progress: Progress | None = None,
              force: bool = False, verbose: bool = True) -> dict:
    """Builds (or reuses) the lab at `out`; returns the parsed lab.json."""
    cfg = get_config(config) if isinstance(config, str) else config
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if is_built(out, cfg) and not force:
            if progress:
                progress(1.0, "demo lab already built (cached)")
            return json.loads((out / "lab.json").read_text())
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        meta = _build(tmp, cfg, progress, verbose)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)  # atomic publish: a cancelled build never leaves a half lab under `out`
        return meta


def _build(out: Path, cfg: LabConfig, progress: Progress | None, verbose: bool) -> dict:
    stages = ["world", "original", "retain_only", *METHODS, "scores"]
    bar = tqdm(total=len(stages), desc=f"lab[{cfg.name}]", disable=not verbose)
    t0, timings = time.time(), {}

    def stage(i: int, name: str, detail: str = "") -> None:
        if progress:
            progress(i / len(stages), f"{name} {detail}".strip())
        bar.set_postfix_str(f"{name} {detail}".strip())

    stage(0, "world")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    world = make_world(cfg.n_entities, cfg.n_attributes, cfg.forget_frac, cfg.n_holdout, cfg.seed)
    texts_all = training_texts(world, include_forget=True)
    tokenizer = train_tokenizer(texts_all, cfg.vocab_size)
    (out / "data").mkdir()
    for split in ("forget", "retain", "holdout"):
        _write_jsonl(out / "data" / f"{split}.jsonl", world.items(split))
    bar.update()
    fpairs, rpairs = _pairs(world, "forget"), _pairs(world, "retain")
    train_info = {}
    models = {}
    retrain_cfg = replace(cfg, seed=cfg.retain_only_seed)  # same world and recipe; own init and data order
    for i, (name, texts, evals, run_cfg) in enumerate([
        ("original", texts_all, fpairs + rpairs, cfg),
        ("retain_only", training_texts(world, include_forget=False), rpairs, retrain_cfg),
    ], start=1):
        t = time.time()
        model = make_model(run_cfg, tokenizer)
        train_info[name] = train_lm(model, tokenizer, texts, evals, run_cfg,
                                    progress=lambda e, a, n=name, i=i: stage(i, n, f"epoch {e} acc {a:.2f}"))
        train_info[name]["init_seed"] = run_cfg.seed
        timings[name] = round(time.time() - t, 1)
        models[name] = model
        _save(model, tokenizer, out / name)
        bar.update()
    fenc = encode(tokenizer, [p for p, _ in fpairs], [a for _, a in fpairs])
    renc = encode(tokenizer, [p for p, _ in rpairs], [a for _, a in rpairs])
    for i, method in enumerate(METHODS, start=3):
        t = time.time()
        model, stats = unlearn(method, models["original"], tokenizer, fenc, renc, cfg.unlearn, seed=cfg.seed,
                               progress=lambda s, a, m=method, i=i: stage(i, m, f"step {s} forget acc {a:.2f}"))
        train_info[method] = stats
        timings[method] = round(time.time() - t, 1)
        models[method] = model
        _save(model, tokenizer, out / method)
        bar.update()
    stage(len(stages) - 1, "scores")
    scores = {name: {"forget_acc": round(qa_accuracy(m, tokenizer, fpairs), 4),
                     "retain_acc": round(qa_accuracy(m, tokenizer, rpairs), 4)} for name, m in models.items()}
    bar.update()
    bar.close()
    meta = {
        "config": cfg.name, "config_hash": cfg.hash, "arch": cfg.arch, "seed": cfg.seed,
        "retain_only_init": cfg.retain_only_init,
        "build_seconds": round(time.time() - t0, 1), "stage_seconds": timings,
        "checkpoints": {name: {"path": name, "kind": KINDS[name], "ground_truth": GROUND_TRUTH.get(name),
                               "training": train_info[name], "scores": scores[name]} for name in CHECKPOINTS},
        "data": {"forget": "data/forget.jsonl", "retain": "data/retain.jsonl", "holdout": "data/holdout.jsonl"},
        "world": {"n_entities": cfg.n_entities, "n_attributes": cfg.n_attributes,
                  "forget_entities": world.entities("forget"), "holdout_entities": world.entities("holdout"),
                  "n_facts": {s: len(world.split(s)) for s in ("forget", "retain", "holdout")}},
        "unlearn": {"stop_forget_acc": cfg.unlearn.stop_forget_acc, "retain_floor": cfg.unlearn.retain_floor,
                    "ga_retain_floor": cfg.unlearn.ga_retain_floor},
        "prompt_template": "Question: {question}\nAnswer:",
    }
    (out / "lab.json").write_text(json.dumps(meta, indent=2))
    if progress:
        progress(1.0, "done")
    return meta


def scores_table(meta: dict) -> str:
    rows = [f"{'checkpoint':<16} {'forget acc':>10} {'retain acc':>10} {'steps/epochs':>13} {'stopped by':>10}"]
    for name, c in meta["checkpoints"].items():
        tr = c["training"]
        n = tr.get("steps", tr.get("epochs"))
        rows.append(f"{name:<16} {c['scores']['forget_acc']:>10.3f} {c['scores']['retain_acc']:>10.3f} {n:>13} "
                    f"{tr['stopped_by']:>10}")
    return "\n".join(rows)
