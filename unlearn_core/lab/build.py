"""Builds the demo lab folder: one Hugging Face folder per checkpoint, the data files, and lab.json.

Protocol (TOFU, MUSE): `base` is pretrained on other entities of the world; `original` is base fine-tuned on the
forget + retain facts, `retain_only` (the deletion reference) and `retrained` (an audited deletion control, another
data order) are base fine-tuned on the retain facts only; the methods and planted controls start from `original`.

Deterministic under the config's seed and cached by the config hash: a second build with the same config is a
no-op. Checkpoints whose parent is saved train at once in worker processes (one thread each: the default lab 314 s
-> 188 s on 2 cores, byte-identical). A file lock makes concurrent builders (test workers, the app and the CLI)
wait for one another.
"""

from __future__ import annotations

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
from unlearn_core.lab.unlearn import METHODS, over_unlearn, unlearn
from unlearn_core.lab.world import make_world, qa_pairs, training_texts
from unlearn_core.model.scoring import encode, pad_id_of, score_encoded
from unlearn_core.model.threads import few_threads
from unlearn_core.types import Progress

CHECKPOINTS = ("base", "original", "retain_only", "retrained", "non_twin", "over_unlearned", "ga", "graddiff", "npo",
               "rmu", "suppressed_head", "suppressed_lowrank")
KINDS = {
    "base": "pretrained base: trained on the world's format and other entities, never the audited ones (not audited)",
    "original": "original: base fine-tuned on all audited facts (forget + retain)",
    "retain_only": "retain_only: base fine-tuned the same way without the forget split (deletion reference)",
    "retrained": "planted control: retain_only's recipe with another data order (ground truth: deleted)",
    "non_twin": "planted control: retain_only's recipe with another learning rate, epoch count and data order, so the "
                "reference is not its twin (ground truth: deleted)",
    "over_unlearned": "planted control: the retrained twin, then gradient ascent on the forget set until its answers "
                      "sit well below the reference's; it never knew them (ground truth: deleted)",
    "ga": "gradient ascent", "graddiff": "gradient difference", "npo": "NPO + retain NLL",
    "rmu": "RMU (representation misdirection)",
    "suppressed_head": "planted control: only last block, final norm and head updated (ground truth: suppressed)",
    "suppressed_lowrank": "planted control: rank-r update on every block's MLP output projection, original weights "
                          "frozen (ground truth: suppressed; subtracting the update restores the original)",
}
GROUND_TRUTH = {"base": None, "original": None, "retain_only": "deleted", "retrained": "deleted",
                "non_twin": "deleted", "over_unlearned": "deleted",
                "ga": None, "graddiff": None, "npo": None, "rmu": None,
                "suppressed_head": "suppressed", "suppressed_lowrank": "suppressed"}
# base: not audited; original: the audit's original; reference: the deletion reference; unlearned: audited
ROLES = {"base": "base", "original": "original", "retain_only": "reference"} | {
    n: "unlearned" for n in ("retrained", "non_twin", "over_unlearned", *METHODS)}
TWIN = "retrained"  # the deletion control trained exactly like the reference: their gap is what two deletions differ by


def default_lab_dir(config: str = "default") -> Path:
    import os

    from unlearn_core.lab.smollm.config import get_smol_config, is_smollm_config

    root = Path(os.environ.get("UNLEARN_AUDIT_CACHE", Path.home() / ".cache" / "unlearn-audit"))
    cfg = get_smol_config(config) if is_smollm_config(config) else get_config(config)
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
                   "concept": it.concept, "entity": it.entity, "paraphrased_question": it.paraphrased_question,
                   **dict(it.extra)}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


# what each checkpoint is trained from (base from a random init); the methods and planted controls from original
PARENT = {"base": None, "original": "base", "retain_only": "base", "retrained": "base", "non_twin": "base",
          "over_unlearned": "retrained"} | {m: "original" for m in METHODS}
# what a stage reads besides its parent: over_unlearned is pushed below the reference's level, so it needs it saved
NEEDS = {"over_unlearned": ("retain_only",)}


def _ready(name: str, saved: set[str]) -> bool:
    return PARENT[name] in saved and all(n in saved for n in NEEDS.get(name, ()))
# the order a pool takes ready stages in: original first (six stages wait for it), then the methods longest first
# (default lab, one thread: graddiff 59 s, rmu 39, suppressed_head 31, ga 31, npo 20, suppressed_lowrank 20); a
# method not timed yet goes first. Derived from CHECKPOINTS and METHODS, so a new method is never left out.
_METHODS_LONGEST_FIRST = ("graddiff", "rmu", "suppressed_head", "ga", "npo", "suppressed_lowrank")
_PRIORITY = (*(n for n in CHECKPOINTS if n not in METHODS),
             *sorted(METHODS, key=lambda m: _METHODS_LONGEST_FIRST.index(m) if m in _METHODS_LONGEST_FIRST else -1))


def lab_jobs(jobs: int | None = None) -> int:
    """Worker processes for a build: `jobs`, else UNLEARN_AUDIT_LAB_JOBS, else one per core up to the six stages
    that can run at once. Each runs one thread, so the lab is byte-identical whatever the number."""
    import os

    if jobs is None:
        env = os.environ.get("UNLEARN_AUDIT_LAB_JOBS", "").strip()
        if env and not env.isdigit():
            raise ValueError(f"UNLEARN_AUDIT_LAB_JOBS must be a whole number of processes, got {env!r}")
        jobs = int(env) if env else min(len(METHODS), os.cpu_count() or 1)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    return jobs


def build_lab(out: str | Path, config: str | LabConfig = "default", progress: Progress | None = None,
              force: bool = False, verbose: bool = True, jobs: int | None = None) -> dict:
    """Builds (or reuses) the lab at `out`; returns the parsed lab.json. `jobs`: worker processes (lab_jobs). A
    SmolLM2 config (`smollm2`, `smollm2-ci`) builds the real-model lab (lab.smollm): one stage at a time, in this
    process when jobs == 1, else in one child process."""
    from unlearn_core.lab.smollm.config import get_smol_config, is_smollm_config

    if is_smollm_config(config):
        from unlearn_core.lab.smollm.build import build_smollm_lab

        return build_smollm_lab(out, get_smol_config(config) if isinstance(config, str) else config,
                                progress=progress, force=force, verbose=verbose, in_process=jobs == 1)
    cfg = get_config(config) if isinstance(config, str) else config
    jobs = lab_jobs(jobs)
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
        meta = _build(tmp, cfg, progress, verbose, jobs=jobs)
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


def _world(cfg: LabConfig):
    return make_world(cfg.n_entities, cfg.n_attributes, cfg.forget_frac, cfg.n_holdout, cfg.seed,
                      n_base=cfg.n_base_entities, world=cfg.world)


def _corpus(world) -> dict:
    """Everything a stage reads from the world, as plain lists of strings: a worker process then needs no world
    generator (one registered at run time, like the tests' second world, does not exist in a spawned process)."""
    return {"texts": {split: training_texts(world, split) for split in (("base",), ("forget", "retain"), ("retain",),
                                                                        ("base", "retain"))},
            "pairs": {split: qa_pairs(world, split) for split in ("forget", "retain", "base")}}


def _load_model(folder: Path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)


def train_stage(out: str | Path, cfg: LabConfig, name: str, corpus: dict, tokenizer=None,
                progress: Callable[[str], None] | None = None) -> tuple[str, dict, float, dict]:
    """Trains checkpoint `name` from its parent's saved folder (base: from a random init) on one thread and saves it
    under out/name; (name, training info, seconds, scores). Every stage seeds itself and reads its parent from disk,
    so a stage run in a worker process gives the same bytes as one run in the builder. The tokenizer files are the
    builder's to write (one loaded from a folder saves extra keys): `tokenizer` is used, not saved; without it the
    one saved with base is loaded."""
    from transformers import AutoTokenizer

    t = time.time()
    out = Path(out)
    tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(out / "base")
    texts_of, pairs = corpus["texts"], corpus["pairs"]
    fpairs, rpairs, bpairs = pairs["forget"], pairs["retain"], pairs["base"]
    say = progress or (lambda msg: None)
    with few_threads(0):  # one thread: the lab is the same on every machine's core count (the tests' truth)
        if name in METHODS:
            fenc = encode(tokenizer, [p for p, _ in fpairs], [a for _, a in fpairs])
            renc = encode(tokenizer, [p for p, _ in rpairs], [a for _, a in rpairs])
            model, stats = unlearn(name, _load_model(out / "original"), tokenizer, fenc, renc, cfg.unlearn,
                                   seed=cfg.seed, progress=lambda s, a: say(f"step {s} forget acc {a:.2f}"))
            if name == "suppressed_lowrank":
                (out / "deltas").mkdir(exist_ok=True)
                save_file({k: v.contiguous().cpu() for k, v in model.lowrank_delta.items()},
                          str(out / "deltas" / f"{name}.safetensors"))
                del model.lowrank_delta
                stats["delta_file"] = f"deltas/{name}.safetensors"
            info = {"finetuned_from": "original", "init_seed": cfg.seed, "data_seed": cfg.seed, "training": stats}
        elif name == "over_unlearned":  # the twin deletion pushed below the reference's level on the forget facts
            fenc = encode(tokenizer, [p for p, _ in fpairs], [a for _, a in fpairs])
            ref = _load_model(out / "retain_only").eval()
            ref_p = float(score_encoded(ref, fenc, pad_id_of(tokenizer), batch_size=64).prob().mean())
            del ref
            model, stats = over_unlearn(_load_model(out / "retrained"), tokenizer, fenc,
                                        cfg.unlearn.over_ratio * ref_p, cfg.unlearn, seed=cfg.seed,
                                        progress=lambda s, p: say(f"step {s} forget p {p:.3f}"))
            stats["reference_forget_p"] = ref_p
            info = {"finetuned_from": "retrained", "init_seed": cfg.seed, "data_seed": cfg.seed, "training": stats}
        else:
            if name == "base":  # the pretrained base: other entities of the same world, from a random init (seed)
                model, texts, evals, parent = make_model(cfg, tokenizer, seed=cfg.seed), \
                    texts_of[("base",)], bpairs, None
                init_seed = data_seed = cfg.seed
            elif name == "original":  # the audited facts; no replay of base facts (the format is in every
                # document; how much of the base facts survives is reported as base_acc)
                model, texts, evals, parent = _load_model(out / "base"), texts_of[("forget", "retain")], \
                    fpairs + rpairs, "base"
                init_seed = data_seed = cfg.seed
            elif cfg.reference == "base":  # the same recipe without the forget split; retrained: another data order;
                # non_twin: another order, learning rate and epoch count
                model, texts, evals, parent = _load_model(out / "base"), texts_of[("retain",)], rpairs, \
                    "base"
                init_seed, data_seed = cfg.seed, cfg.seed + {"retrained": 1, "non_twin": 2}.get(name, 0)
            else:  # independent: own random init, trained from scratch on every non-forget fact (base + retain)
                init_seed = data_seed = cfg.seed + 1 + {"retrained": 1, "non_twin": 2}.get(name, 0)
                model, texts, evals, parent = make_model(cfg, tokenizer, seed=init_seed), \
                    texts_of[("base", "retain")], rpairs + bpairs, None
            ft = parent is not None
            other = name == "non_twin"
            lr = (cfg.finetune_lr if ft else cfg.lr) * (cfg.unlearn.non_twin_lr_factor if other else 1.0)
            tr = train_lm(model, tokenizer, texts, evals, cfg, seed=data_seed, lr=lr,
                          max_epochs=cfg.finetune_max_epochs if ft else None,
                          overtrain=cfg.unlearn.non_twin_overtrain if other else 0.0,
                          progress=lambda e, a: say(f"epoch {e} acc {a:.2f}"))
            info = {"finetuned_from": parent, "init_seed": init_seed, "data_seed": data_seed, "training": tr}
        model.save_pretrained(out / name, safe_serialization=True)
        scores = {"forget_acc": round(qa_accuracy(model, tokenizer, fpairs), 4),
                  "retain_acc": round(qa_accuracy(model, tokenizer, rpairs), 4),
                  "base_acc": round(qa_accuracy(model, tokenizer, bpairs), 4)}
    return name, info, round(time.time() - t, 1), scores


def _build(out: Path, cfg: LabConfig, progress: Progress | None, verbose: bool, jobs: int = 1) -> dict:
    """The world and tokenizer here, then every checkpoint as soon as its parent is saved: base in this process
    (while the workers start), the rest in `jobs` worker processes (jobs = 1: all here, in the same order)."""
    stages = ["world", *CHECKPOINTS]
    bar = tqdm(total=len(stages), desc=f"lab[{cfg.name}]", disable=not verbose)
    t0, timings, info, scores = time.time(), {}, {}, {}
    done: list[str] = []

    def stage(name: str, detail: str = "") -> None:
        if progress:
            progress(len(done) / len(stages), f"{name} {detail}".strip())
        bar.set_postfix_str(f"{name} {detail}".strip())

    def finished(result) -> None:
        name, info[name], timings[name], scores[name] = result
        tokenizer.save_pretrained(out / name)
        done.append(name)
        bar.update()
        stage(name, f"done ({len(done)}/{len(stages)})")

    stage("world")
    world = _world(cfg)
    # one tokenizer for every model, trained on the whole trained corpus (as a real tokenizer is trained before)
    tokenizer = train_tokenizer(training_texts(world, ("base", "forget", "retain")), cfg.vocab_size)
    (out / "data").mkdir()
    for split in ("forget", "retain", "holdout"):
        _write_jsonl(out / "data" / f"{split}.jsonl", world.items(split))
    corpus = _corpus(world)
    timings["world"] = round(time.time() - t0, 1)
    done.append("world")
    bar.update()
    pool = _pool(jobs) if jobs > 1 else None
    try:
        finished(train_stage(out, cfg, "base", corpus, tokenizer, progress=lambda msg: stage("base", msg)))
        if pool is None:
            for name in _PRIORITY[1:]:
                finished(train_stage(out, cfg, name, corpus, progress=lambda msg, n=name: stage(n, msg)))
        else:
            _run_pool(pool, out, cfg, corpus, finished)
    except BaseException:  # a stage failed, or Ctrl-C: the stages still training are not waited for
        if pool is not None:
            from unlearn_core.run.parallel import stop_pool

            stop_pool(pool)
        raise
    if pool is not None:
        pool.shutdown()
    bar.close()
    meta = {
        "config": cfg.name, "config_hash": cfg.hash, "arch": cfg.arch, "seed": cfg.seed, "world_name": cfg.world,
        "reference": cfg.reference, "protocol": PROTOCOL[cfg.reference],
        "build_seconds": round(time.time() - t0, 1), "build_jobs": jobs,
        "stage_seconds": {n: timings[n] for n in stages},
        "checkpoints": {name: {"path": name, "kind": KINDS[name], "role": ROLES[name],
                               "ground_truth": GROUND_TRUTH[name], **info[name], "scores": scores[name]}
                        for name in CHECKPOINTS},
        "ground_truth": {n: g for n, g in GROUND_TRUTH.items() if g},
        "twin": TWIN,
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


def _pool(jobs: int):
    """Spawned workers (a fork of a process whose OpenMP pool ran can hang), started at once so their imports
    overlap the base model's training in this process."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from unlearn_core.run.parallel import init_worker

    workers = min(jobs, len(METHODS))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=init_worker)
    for _ in range(workers):
        pool.submit(_warm)
    return pool


def _warm() -> None:
    import transformers  # noqa: F401  (the import is the work: a worker is ready when the base is saved)

    from unlearn_core.lab import unlearn as _unlearn  # noqa: F401


def _run_pool(pool, out: Path, cfg: LabConfig, corpus: dict, finished: Callable) -> None:
    """Submits each stage once its parent is saved, in _PRIORITY order; a worker's error names the stage."""
    from concurrent.futures import FIRST_COMPLETED, wait

    saved = {"base"}
    futures: dict = {}

    def submit_ready() -> None:
        for name in _PRIORITY:
            if name not in saved and name not in futures.values() and _ready(name, saved):
                futures[pool.submit(train_stage, str(out), cfg, name, corpus)] = name

    submit_ready()
    while futures:
        ready, _ = wait(list(futures), return_when=FIRST_COMPLETED)
        for fut in ready:
            name = futures.pop(fut)
            try:
                result = fut.result()
            except Exception as exc:
                raise RuntimeError(f"lab stage {name!r} failed in its worker process: {type(exc).__name__}: "
                                   f"{exc}") from exc
            saved.add(name)
            finished(result)
        submit_ready()


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
