"""Checkpoint primitives read from files alone: where a checkpoint is, what its safetensors headers say, and the
error every refusal raises. The floor every other checkpoint module stands on."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "vocab.txt",
                   "spiece.model")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked; the message says why and what to do."""


class IncompatibleCheckpoints(CheckpointError):
    pass


@dataclass(frozen=True)
class AdapterInfo:
    path: str
    base_path: str  # the local base folder the adapter is merged into
    base_label: str  # how the base is named to the user
    base_from: str  # "adapter config" | "original"
    rank: int
    alpha: float
    target_modules: tuple[str, ...]
    n_params: int
    weight_format: str  # safetensors | pickle

    def describe(self) -> str:
        return f"LoRA rank {self.rank} on {self.base_label}"


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    model_type: str
    architectures: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]] = field(repr=False)
    n_params: int
    vocab: dict[str, int] = field(repr=False)
    has_remote_code: bool
    weight_format: str  # safetensors | pickle
    adapter: AdapterInfo | None = None  # a PEFT LoRA adapter folder: its base, rank (unlearn_core.checkpoints.adapters)
    tokenizer_path: str | None = None  # where the tokenizer comes from when not `path` (a Trainer checkpoint-N/)


def resolve_source(source: str | Path) -> Path:
    """A local folder, or a hub id found in the local Hugging Face cache (no network is ever required)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{source}: is a file; expected a checkpoint folder with config.json and weights")
    text = str(source)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(text, local_files_only=True))
        except Exception as exc:  # the hub client raises several types for "not cached"
            raise CheckpointError(
                f"{source}: not a local folder, and hub id {text!r} is not in the local Hugging Face cache "
                f"({type(exc).__name__}). Download it first (huggingface-cli download {text}) or give a folder."
            ) from exc
    raise CheckpointError(f"{source}: folder not found")


MAX_SAFETENSORS_HEADER = 100_000_000  # the format's own limit; a bigger length field is a corrupt or hostile file


def safetensors_shapes(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Tensor shapes and dtypes from a safetensors header, without reading weights; CheckpointError if malformed."""
    with path.open("rb") as fh:
        head = fh.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 0 < n <= min(MAX_SAFETENSORS_HEADER, path.stat().st_size - 8):
            raise CheckpointError(f"{path}: not a safetensors file (header length {n} does not fit the file)")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
        out = {}
        for k, v in header.items():
            if k == "__metadata__":
                continue
            shape, dtype = v["shape"], v["dtype"]
            if not (isinstance(shape, list) and all(type(d) is int and 0 <= d < 2**48 for d in shape)
                    and isinstance(dtype, str)):
                raise ValueError(f"tensor {k!r} has shape {shape!r} and dtype {dtype!r}")
            out[k] = (tuple(shape), dtype)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors header ({type(exc).__name__}: {exc})") from exc
    return out
