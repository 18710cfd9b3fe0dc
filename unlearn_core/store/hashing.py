"""Content hashes: the keys of the results store.

A result is only reusable if the exact same checkpoints, data and config produced it, so every key is built from
content, never from paths or timestamps: moving or copying a checkpoint folder keeps its cached results valid, and
changing one weight invalidates them.

Weight files of many GB would take tens of seconds to hash fully on every page load, so files above
`LARGE_FILE_BYTES` are fingerprinted instead: size + safetensors header (names, dtypes, shapes, offsets) + a fixed
set of evenly spaced chunks. Any real fine-tune or unlearning run touches every chunk, so this still changes when
weights change in practice; a single flipped byte between sampled chunks of a huge file would go unnoticed.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import os
import struct
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["LARGE_FILE_BYTES", "checkpoint_files", "clear_cache", "hash_adapter", "hash_checkpoint", "hash_config",
           "hash_json"]

# Files above this size are fingerprinted (size + header + sampled chunks) instead of read fully.
LARGE_FILE_BYTES = 256 * 2**20
SAMPLE_CHUNK_BYTES = 2**20
N_SAMPLE_CHUNKS = 64
_READ_BLOCK = 8 * 2**20
# Header of a safetensors file is a u64 little-endian length + JSON; refuse absurd lengths (corrupt files).
_MAX_SAFETENSORS_HEADER = 100 * 2**20

WEIGHT_SUFFIXES = (".safetensors", ".bin")
# Everything besides weights that changes what a checkpoint computes or how text is tokenised.
EXTRA_FILES = frozenset(
    {
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "tokenizer.model",
        "spiece.model",
        "chat_template.jinja",
        "chat_template.json",
    }
)

# (absolute path, size, mtime_ns, fingerprint params) -> hex digest of one file. Re-hashing a 10 GB folder on
# every Streamlit rerun would be the dominant cost of a page; the key changes whenever the file is rewritten.
_FILE_CACHE: dict[tuple, str] = {}
_FILE_CACHE_LOCK = threading.Lock()


def checkpoint_files(folder: str | os.PathLike) -> list[Path]:
    """The files of a checkpoint folder that enter its hash, sorted by name (top level only, as HF saves them)."""
    folder = Path(folder)
    out = []
    for p in sorted(folder.iterdir(), key=lambda p: p.name):
        if not p.is_file():
            continue
        if p.name.endswith(WEIGHT_SUFFIXES) or p.name in EXTRA_FILES or p.name.endswith(".index.json"):
            out.append(p)
    return out


def hash_checkpoint(folder: str | os.PathLike) -> str:
    """16-hex content hash of a checkpoint folder (or of a single weight file), independent of where it lives.

    Raises FileNotFoundError when the path does not exist or holds no *.safetensors / *.bin weight file, because
    hashing only a config would give two different models the same key.
    """
    path = Path(folder)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    files = [path] if path.is_file() else checkpoint_files(path)
    if not any(f.name.endswith(WEIGHT_SUFFIXES) for f in files):
        raise FileNotFoundError(f"no weight files (*.safetensors or *.bin) in checkpoint folder {path}")
    h = hashlib.sha256(b"unlearn_core.checkpoint.v1\0")
    for f in files:
        # The relative name is part of the hash (model.safetensors vs a shard name matters); the folder is not.
        h.update(f.name.encode() + b"\0" + _file_digest(f).encode() + b"\n")
    return h.hexdigest()[:16]


def hash_adapter(folder: str | os.PathLike, base_hash: str) -> str:
    """16-hex hash of a LoRA adapter folder merged into the base with hash `base_hash`.

    The adapter's config (rank, alpha, targets) and weights, any tokenizer it ships, and the base's own hash: the
    same adapter on another base computes something else, so it must get another key.
    """
    path = Path(folder)
    files = [p for p in sorted(path.iterdir(), key=lambda p: p.name) if p.is_file() and (
        p.name.startswith("adapter_model.") or p.name == "adapter_config.json" or p.name in EXTRA_FILES)]
    if not any(p.name.startswith("adapter_model.") for p in files):
        raise FileNotFoundError(f"no adapter weights (adapter_model.safetensors) in {path}")
    h = hashlib.sha256(b"unlearn_core.adapter.v1\0" + base_hash.encode() + b"\n")
    for f in files:
        h.update(f.name.encode() + b"\0" + _file_digest(f).encode() + b"\n")
    return h.hexdigest()[:16]


def _file_digest(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, LARGE_FILE_BYTES, SAMPLE_CHUNK_BYTES, N_SAMPLE_CHUNKS)
    with _FILE_CACHE_LOCK:
        hit = _FILE_CACHE.get(key)
    if hit is not None:
        return hit
    if st.st_size > LARGE_FILE_BYTES and path.name.endswith(WEIGHT_SUFFIXES):
        digest = _fingerprint_large(path, st.st_size)
    else:
        digest = _hash_full(path)
    with _FILE_CACHE_LOCK:
        _FILE_CACHE[key] = digest
    return digest


def _hash_full(path: Path) -> str:
    h = hashlib.sha256(b"full\0")
    with open(path, "rb") as fh:
        while block := fh.read(_READ_BLOCK):
            h.update(block)
    return h.hexdigest()


def _fingerprint_large(path: Path, size: int) -> str:
    """size + safetensors header + N_SAMPLE_CHUNKS chunks at evenly spaced offsets (first and last included)."""
    h = hashlib.sha256(b"sampled\0")
    h.update(struct.pack("<QQQ", size, SAMPLE_CHUNK_BYTES, N_SAMPLE_CHUNKS))
    with open(path, "rb") as fh:
        if path.name.endswith(".safetensors"):
            raw = fh.read(8)
            (n,) = struct.unpack("<Q", raw) if len(raw) == 8 else (0,)
            h.update(raw)
            h.update(fh.read(min(n, _MAX_SAFETENSORS_HEADER)))
        last = max(size - SAMPLE_CHUNK_BYTES, 0)
        for i in range(N_SAMPLE_CHUNKS):
            offset = (last * i) // max(N_SAMPLE_CHUNKS - 1, 1)
            fh.seek(offset)
            h.update(struct.pack("<Q", offset))
            h.update(fh.read(SAMPLE_CHUNK_BYTES))
    return h.hexdigest()


def clear_cache() -> None:
    """Forget cached file digests (tests; or after editing files in place within the same mtime tick)."""
    with _FILE_CACHE_LOCK:
        _FILE_CACHE.clear()


def _to_jsonable(obj: Any) -> Any:
    """Canonical JSON-able form: dataclasses as dicts, tuples/lists as lists, sets sorted, numpy scalars unboxed."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        # json.dumps writes NaN/Infinity, which is stable, but spell them out so the text is strict JSON.
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        items = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise TypeError(f"hash_json: dict keys must be str/int/float/bool, got {type(k).__name__}")
            items[str(k)] = _to_jsonable(v)
        return items
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((_to_jsonable(v) for v in obj), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(obj, enum.Enum):
        return _to_jsonable(obj.value)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    item = getattr(obj, "item", None)  # numpy / torch scalars
    if callable(item) and getattr(obj, "ndim", None) == 0:
        return _to_jsonable(item())
    raise TypeError(f"hash_json: cannot hash a {type(obj).__name__}; pass plain data, dataclasses or containers")


def hash_json(obj: Any) -> str:
    """16-hex hash of plain data that does not depend on dict order or tuple-vs-list."""
    text = json.dumps(_to_jsonable(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def hash_config(cfg: Any) -> str:
    """Hash of a (frozen) config dataclass including its class name.

    Two analyses' configs can have identical fields (e.g. both just `seed=0`); the class name keeps their keys apart.
    """
    if not (dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)):
        raise TypeError(f"hash_config expects a dataclass instance, got {type(cfg).__name__}")
    # The qualified class name, not the module: moving a config class between modules keeps cached results valid.
    return hash_json({"class": type(cfg).__qualname__, "fields": cfg})
