"""What a methods section needs to say how an audit was run: the tool and its commit, the libraries, the device and
dtype, when, with which prompt format and command line; and each unlearned model's utility beside its verdict, so a
"suppressed" model that lost its retain knowledge is read as collapsed, not as a careful unlearner."""

from __future__ import annotations

import hashlib
import math
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from unlearn_core import __version__

LIBRARIES = ("torch", "transformers", "numpy", "pandas", "scikit-learn", "safetensors", "accelerate", "captum",
             "sae-lens", "plotly", "peft")
# retain accuracy below this share of the original's: the model lost most of what it should keep (ga on the demo lab
# keeps 0.25 of 1.0; every method the lab tunes to its published recipe keeps >= 0.79)
COLLAPSE_SHARE = 0.5


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_commit(where: Path | None = None) -> dict[str, object] | None:
    """The checkout's commit and whether it had uncommitted changes (None outside a git checkout, e.g. a wheel)."""
    where = where or Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip()) if dirty.returncode == 0 else None}


def prompt_record(fmt) -> dict[str, object]:
    """The prompt format as data: a plain template's text, or a chat format's system prompt and its template's hash
    (the Jinja text is kilobytes; the hash names it, the original's tokenizer holds it)."""
    if not fmt.chat:
        return {"kind": "plain", "template": fmt.template, "answer_prefix": fmt.answer_prefix}
    tpl = fmt.chat_template
    return {"kind": "chat", "system_prompt": fmt.system_prompt, "answer_prefix": fmt.answer_prefix,
            "chat_template_sha256": hashlib.sha256(tpl.encode()).hexdigest() if tpl else None,
            "template_vars": {k: list(v) if isinstance(v, tuple) else v for k, v in fmt.template_vars}}


def model_placement(models) -> dict[str, object]:
    import torch

    p = next(models.original.model.parameters(), None)
    return {"device": None if p is None else p.device.type, "dtype": None if p is None else str(p.dtype).split(".")[-1],
            "torch_threads": torch.get_num_threads(),
            "cuda_device": torch.cuda.get_device_name(0) if p is not None and p.device.type == "cuda" else None}


def provenance(models, data, command: list[str] | None = None, spec=None) -> dict[str, object]:
    """models: the loaded ModelSet; or None with `spec` (a WorkspaceSpec), whose device and dtype are the ones its
    models load with (checkpoints.memory.pick_device), so a page can record them without loading anything."""
    if models is None:
        import torch

        from unlearn_core.checkpoints.memory import pick_device

        dev, dtype = pick_device(spec.device, spec.max_memory)
        placement = {"device": dev.type, "dtype": str(dtype).split(".")[-1], "torch_threads": torch.get_num_threads(),
                     "cuda_device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None}
    elif getattr(models.original, "deferred", None) is not None and not models.original.deferred.loaded:
        placement = models.original.deferred.placement  # where they would load: a fully stored audit loads none
    else:
        placement = model_placement(models)
    return {
        "tool": {"name": "unlearn-audit", "version": __version__, "git": git_commit()},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": {lib: _version(lib) for lib in LIBRARIES},
        **placement,
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "prompt_format": prompt_record(data.prompt_format),
        "command": command,
    }


def utility(scores: dict[str, float], original: dict[str, float]) -> dict[str, object]:
    """Retain accuracy against the original's, and open-unlearning's model utility, with the collapse flag."""
    acc, acc0 = scores.get("retain_acc"), original.get("retain_acc")
    known = acc is not None and acc0 is not None and math.isfinite(acc) and math.isfinite(acc0) and acc0 > 0
    share = acc / acc0 if known else None
    return {"retain_acc": acc, "original_retain_acc": acc0, "retain_share": share,
            "model_utility": scores.get("model_utility"), "original_model_utility": original.get("model_utility"),
            "collapsed": None if share is None else share < COLLAPSE_SHARE}


UTILITY_COLUMNS = ("retain_acc", "original_retain_acc", "retain_share", "collapsed")


def with_utility(frame, scores: dict[str, dict[str, float]], original: str):
    """verdicts.csv / the headline table: the utility columns inserted before the reason (models without scores,
    the original and the reference, get empty cells)."""
    frame = frame.copy()
    rows = {m: utility(scores[m], scores[original]) for m in frame["model"] if m in scores and m != original}
    at = frame.columns.get_loc("reason") if "reason" in frame.columns else len(frame.columns)
    for i, col in enumerate(UTILITY_COLUMNS):
        frame.insert(at + i, col, [rows.get(m, {}).get(col) for m in frame["model"]])
    return frame
