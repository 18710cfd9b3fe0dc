"""Checkpoint and config hashes: content-addressed, path-independent, sensitive to a single changed byte."""

from __future__ import annotations

import json
import os
import shutil
import struct
from dataclasses import dataclass, field

import pytest

from unlearn_core.store import hashing
from unlearn_core.store.hashing import hash_checkpoint, hash_config, hash_json


def _write_safetensors(path, payload: bytes) -> None:
    header = json.dumps({"w": {"dtype": "U8", "shape": [len(payload)], "data_offsets": [0, len(payload)]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + payload)


@pytest.fixture
def ckpt(tmp_path):
    folder = tmp_path / "a" / "ckpt"
    folder.mkdir(parents=True)
    _write_safetensors(folder / "model.safetensors", bytes(range(256)) * 64)
    (folder / "config.json").write_text('{"n_layer": 2}')
    (folder / "tokenizer.json").write_text('{"vocab": {"a": 0}}')
    (folder / "README.md").write_text("notes")  # not part of the hash
    hashing.clear_cache()
    return folder


def _flip_byte(path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))
    # Two writes within one coarse filesystem clock tick keep (size, mtime): don't let the digest cache hide them.
    hashing.clear_cache()


def test_hash_is_16_hex_and_path_independent(ckpt, tmp_path):
    h = hash_checkpoint(ckpt)
    assert len(h) == 16 and int(h, 16) >= 0
    copy = shutil.copytree(ckpt, tmp_path / "elsewhere" / "renamed")
    assert hash_checkpoint(copy) == h


def test_one_changed_weight_byte_changes_hash(ckpt):
    h = hash_checkpoint(ckpt)
    _flip_byte(ckpt / "model.safetensors", -100)
    assert hash_checkpoint(ckpt) != h


def test_digest_cache_keyed_by_path_size_mtime(ckpt):
    weights = ckpt / "model.safetensors"
    h = hash_checkpoint(ckpt)
    st = weights.stat()
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))  # same path, size and mtime: served from the cache
    assert hash_checkpoint(ckpt) == h
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert hash_checkpoint(ckpt) != h


def test_config_and_tokenizer_enter_hash_but_other_files_do_not(ckpt):
    h = hash_checkpoint(ckpt)
    (ckpt / "README.md").write_text("other notes")
    assert hash_checkpoint(ckpt) == h
    (ckpt / "tokenizer.json").write_text('{"vocab": {"b": 0}}')
    hashing.clear_cache()  # same size, maybe same mtime tick
    h2 = hash_checkpoint(ckpt)
    assert h2 != h
    (ckpt / "config.json").write_text('{"n_layer": 3}')
    hashing.clear_cache()
    assert hash_checkpoint(ckpt) != h2


def test_folder_without_weights_is_an_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no weight files"):
        hash_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError):
        hash_checkpoint(tmp_path / "missing")


def test_large_files_are_sampled_but_still_see_weight_and_header_changes(ckpt, monkeypatch):
    # Shrink the thresholds so a 16 KiB file counts as "large": 4 chunks of 1 KiB are sampled.
    monkeypatch.setattr(hashing, "LARGE_FILE_BYTES", 1024)
    monkeypatch.setattr(hashing, "SAMPLE_CHUNK_BYTES", 1024)
    monkeypatch.setattr(hashing, "N_SAMPLE_CHUNKS", 4)
    weights = ckpt / "model.safetensors"
    size = weights.stat().st_size
    h = hash_checkpoint(ckpt)
    assert h != hashing._hash_full(weights)[:16]
    _flip_byte(weights, size - 10)  # inside the last sampled chunk
    h_last = hash_checkpoint(ckpt)
    assert h_last != h
    _flip_byte(weights, 20)  # inside the safetensors header
    assert hash_checkpoint(ckpt) != h_last


def test_sampled_fingerprint_reads_only_sampled_chunks(tmp_path, monkeypatch):
    """Bytes between sampled chunks are not read: the price of hashing 10 GB in well under a second."""
    monkeypatch.setattr(hashing, "LARGE_FILE_BYTES", 1024)
    monkeypatch.setattr(hashing, "SAMPLE_CHUNK_BYTES", 16)
    monkeypatch.setattr(hashing, "N_SAMPLE_CHUNKS", 2)  # first and last 16 bytes only
    f = tmp_path / "pytorch_model.bin"
    f.write_bytes(b"\0" * 4096)
    h = hash_checkpoint(f)
    _flip_byte(f, 2048)
    assert hash_checkpoint(f) == h


@dataclass(frozen=True)
class CfgA:
    seed: int = 0
    layers: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class CfgB:
    seed: int = 0
    layers: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class Outer:
    inner: CfgA = field(default_factory=CfgA)
    names: dict[str, float] = field(default_factory=dict)


def test_hash_json_is_order_and_container_stable():
    assert hash_json({"a": 1, "b": [1, 2]}) == hash_json({"b": (1, 2), "a": 1})
    assert hash_json({"a": 1}) != hash_json({"a": 2})
    assert hash_json(Outer(names={"x": 1.0, "y": 2.0})) == hash_json(
        {"inner": {"seed": 0, "layers": [1, 2]}, "names": {"y": 2.0, "x": 1.0}}
    )
    assert hash_json(float("nan")) == hash_json(float("nan"))
    with pytest.raises(TypeError):
        hash_json(object())


def test_hash_config_includes_class_name_and_fields():
    assert hash_config(CfgA()) == hash_config(CfgA())
    assert hash_config(CfgA()) != hash_config(CfgB())  # same fields, different analysis config
    assert hash_config(CfgA()) != hash_config(CfgA(seed=1))
    assert hash_config(CfgA(layers=(1, 2))) == hash_config(CfgA(layers=[1, 2]))
    with pytest.raises(TypeError):
        hash_config({"seed": 0})
