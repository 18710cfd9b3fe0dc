"""Builds the demo lab folder: one Hugging Face folder per checkpoint, the data files, and lab.json.

Protocol (TOFU, MUSE): `base` is pretrained on other entities of the world; `original` is base fine-tuned on the
forget + retain facts, `retain_only` (the deletion reference) and `retrained` (an audited deletion control, another
data order) are base fine-tuned on the retain facts only; the methods and planted controls start from `original`.

Deterministic under the config's seed and cached by the config hash: a second build with the same config is a
no-op. A file lock makes concurrent builders (test workers, the app and the CLI) wait for one another.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock
from safetensors.torch import save_file
from tqdm.auto import tqdm

from unlearn_core.lab.config import LabConfig, get_config
from unlearn_core.lab.extras import build_extras
from unlearn_core.lab.tokenizer import train_tokenizer
from unlearn_core.lab.train import make_model, qa_accuracy, train_lm
from unlearn_core.lab.unlearn import METHODS, unlearn
from unlearn_core.lab.world import make_world, qa_pairs, training_texts
from unlearn_core.scoring import encode
from unlearn_core.threads import few_threads

CHECKPOINTS = ("base", "original", "retain_only", "retrained", "ga", "graddiff", "npo", "rmu", "suppressed_head",
               "suppressed_lowrank")
KINDS = {
    "base": "pretrained base: trained on the world's format and other entities, never the audited ones (not audited)",
    "original": "original: base fine-tuned on all audited facts (forget + retain)",
    "retain_only": "retain_only: base fine-tuned the same way without the forget split (deletion reference)",
    "retrained": "planted control: retain_only's recipe with another data order (ground truth: deleted)",
    "ga": "gradient ascent", "graddiff": "gradient difference", "npo": "NPO + retain NLL",
    "rmu": "RMU (representation misdirection)",
    "suppressed_head": "planted control: only last block, final norm and head updated (ground truth: suppressed)",
    "suppressed_lowrank": "planted control: rank-r update on every block's MLP output projection, original weights "
                          "frozen (ground truth: suppressed; subtracting the update restores the original)",
}
GROUND_TRUTH = {"base": None, "original": None, "retain_only": "deleted", "retrained": "deleted",
                "ga": None, "graddiff": None, "npo": None, "rmu": None,
                "suppressed_head": "suppressed", "suppressed_lowrank": "suppressed"}
# base: not audited; original: the audit's original; reference: the deletion reference; unlearned: audited
ROLES = {"base": "base", "original": "original", "retain_only": "reference"} | {
    n: "unlearned" for n in ("retrained", *METHODS)}
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
            build_extras(out)  # a lab cached before the extras existed gets them once (seconds)
            if progress:
                progress(1.0, "demo lab already built (cached)")
            return json.loads((out / "lab.json").read_text())
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        with few_threads(0):  # one thread: the lab is the same on every machine's core count (the tests' truth)
            meta = _build(tmp, cfg, progress, verbose)
        # publish by renames only: a kill at any point leaves either the old lab or the new one under `out`, never
        # a half-deleted old lab whose lab.json still says "built" (the old one is moved aside, then removed)
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
        if progress:
            progress(0.99, "extras: a LoRA adapter and a checkpoint series")
        build_extras(out)
        return meta


def _build(out: Path, cfg: LabConfig, progress: Progress | None, verbose: bool) -> dict:
    stages = ["world", "base", "original", "retain_only", "retrained", *METHODS, "scores"]
    bar = tqdm(total=len(stages), desc=f"lab[{cfg.name}]", disable=not verbose)
    t0, timings = time.time(), {}

    def stage(name: str, detail: str = "") -> None:
        if progress:
            progress(stages.index(name) / len(stages), f"{name} {detail}".strip())
        bar.set_postfix_str(f"{name} {detail}".strip())

    stage("world")
    world = make_world(cfg.n_entities, cfg.n_attributes, cfg.forget_frac, cfg.n_holdout, cfg.seed,
                       n_base=cfg.n_base_entities, world=cfg.world)
    # one tokenizer for every model, trained on the whole trained corpus (as a real tokenizer is trained before)
    tokenizer = train_tokenizer(training_texts(world, ("base", "forget", "retain")), cfg.vocab_size)
    (out / "data").mkdir()
    for split in ("forget", "retain", "holdout"):
        _write_jsonl(out / "data" / f"{split}.jsonl", world.items(split))
    timings["world"] = round(time.time() - t0, 1)
    bar.update()
    fpairs, rpairs, bpairs = qa_pairs(world, "forget"), qa_pairs(world, "retain"), qa_pairs(world, "base")
    info: dict[str, dict] = {}
    models = {}

    def train(name: str, model, texts, evals, finetuned_from: str | None, init_seed: int, data_seed: int) -> None:
        t = time.time()
        ft = finetuned_from is not None
        tr = train_lm(model, tokenizer, texts, evals, cfg, seed=data_seed,
                      lr=cfg.finetune_lr if ft else cfg.lr, max_epochs=cfg.finetune_max_epochs if ft else None,
                      progress=lambda e, a: stage(name, f"epoch {e} acc {a:.2f}"))
        info[name] = {"finetuned_from": finetuned_from, "init_seed": init_seed, "data_seed": data_seed,
                      "training": tr}
        timings[name] = round(time.time() - t, 1)
        models[name] = model
        _save(model, tokenizer, out / name)
        bar.update()

    # the pretrained base: other entities of the same world, from a random init (seed)
    train("base", make_model(cfg, tokenizer, seed=cfg.seed), training_texts(world, ("base",)), bpairs,
          None, cfg.seed, cfg.seed)
    # fine-tuning on the audited facts; no replay of base facts (the format is in every document; how much of the
    # base facts survives is reported as base_acc)
    train("original", copy.deepcopy(models["base"]), training_texts(world, ("forget", "retain")), fpairs + rpairs,
          "base", cfg.seed, cfg.seed)
    for name, data_seed in (("retain_only", cfg.seed), ("retrained", cfg.seed + 1)):
        if cfg.reference == "base":  # the same recipe without the forget split; retrained: another data order
            train(name, copy.deepcopy(models["base"]), training_texts(world, ("retain",)), rpairs, "base",
                  cfg.seed, data_seed)
        else:  # independent: own random init, trained from scratch on every non-forget fact (base + retain)
            init = cfg.seed + 1 + (name == "retrained")
            train(name, make_model(cfg, tokenizer, seed=init), training_texts(world, ("base", "retain")),
                  rpairs + bpairs, None, init, init)
    fenc = encode(tokenizer, [p for p, _ in fpairs], [a for _, a in fpairs])
    renc = encode(tokenizer, [p for p, _ in rpairs], [a for _, a in rpairs])
    (out / "deltas").mkdir()
    for method in METHODS:
        t = time.time()
        model, stats = unlearn(method, models["original"], tokenizer, fenc, renc, cfg.unlearn, seed=cfg.seed,
                               progress=lambda s, a, m=method: stage(m, f"step {s} forget acc {a:.2f}"))
        if method == "suppressed_lowrank":
            save_file({k: v.contiguous().cpu() for k, v in model.lowrank_delta.items()},
                      str(out / "deltas" / f"{method}.safetensors"))
            del model.lowrank_delta
            stats["delta_file"] = f"deltas/{method}.safetensors"
        info[method] = {"finetuned_from": "original", "init_seed": cfg.seed, "data_seed": cfg.seed,
                        "training": stats}
        timings[method] = round(time.time() - t, 1)
        models[method] = model
        _save(model, tokenizer, out / method)
        bar.update()
    stage("scores")
    scores = {name: {"forget_acc": round(qa_accuracy(m, tokenizer, fpairs), 4),
                     "retain_acc": round(qa_accuracy(m, tokenizer, rpairs), 4),
                     "base_acc": round(qa_accuracy(m, tokenizer, bpairs), 4)} for name, m in models.items()}
    bar.update()
    bar.close()
    meta = {
        "config": cfg.name, "config_hash": cfg.hash, "arch": cfg.arch, "seed": cfg.seed, "world_name": cfg.world,
        "reference": cfg.reference, "protocol": PROTOCOL[cfg.reference],
        "build_seconds": round(time.time() - t0, 1), "stage_seconds": timings,
        "checkpoints": {name: {"path": name, "kind": KINDS[name], "role": ROLES[name],
                               "ground_truth": GROUND_TRUTH[name], **info[name], "scores": scores[name]}
                        for name in CHECKPOINTS},
        "ground_truth": {n: g for n, g in GROUND_TRUTH.items() if g},
        "data": {"forget": "data/forget.jsonl", "retain": "data/retain.jsonl", "holdout": "data/holdout.jsonl"},
        "world": {"name": cfg.world, "n_entities": cfg.n_entities, "n_attributes": cfg.n_attributes,
                  "n_base_entities": cfg.n_base_entities,
                  "forget_entities": world.entities("forget"), "holdout_entities": world.entities("holdout"),
                  "n_facts": {s: len(world.split(s)) for s in ("forget", "retain", "holdout", "base")}},
        "unlearn": {"stop_forget_acc": cfg.unlearn.stop_forget_acc, "retain_floor": cfg.unlearn.retain_floor,
                    "ga_retain_floor": cfg.unlearn.ga_retain_floor},
        "prompt_template": "Question: {question}\nAnswer:",
    }
    (out / "lab.json").write_text(json.dumps(meta, indent=2))
    if progress:
        progress(1.0, "done")
    return meta


PROTOCOL = {
    "base": "TOFU/MUSE: one pretrained base (other entities); original = base fine-tuned on forget + retain; "
            "retain_only and retrained = base fine-tuned on retain only (data seeds seed and seed + 1)",
    "independent": "original = base fine-tuned on forget + retain; retain_only and retrained = trained from their "
                   "own random init (seed + 1, seed + 2) on base + retain facts",
}


def scores_table(meta: dict) -> str:
    rows = [f"{'checkpoint':<20} {'forget acc':>10} {'retain acc':>10} {'steps/epochs':>13} {'stopped by':>10}"]
    for name, c in meta["checkpoints"].items():
        tr = c["training"]
        n = tr.get("steps", tr.get("epochs"))
        rows.append(f"{name:<20} {c['scores']['forget_acc']:>10.3f} {c['scores']['retain_acc']:>10.3f} {n:>13} "
                    f"{tr['stopped_by']:>10}")
    return "\n".join(rows)
