"""Results store: exact round-trips without pickle, content keys, atomic writes, schema guard, thread safety."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
import torch

from unlearn_core.store.codec import DecodeError, decode_result, encode_result, register_result
from unlearn_core.store.results import SCHEMA_VERSION, ResultsStore, SchemaVersionError, StoreError, make_key


@register_result
@dataclass(frozen=True)
class Inner:
    label: str
    weights: torch.Tensor


@register_result
@dataclass(frozen=True)
class FakeResult:
    name: str
    score: float
    n: int
    ok: bool
    missing: None
    table: pd.DataFrame
    acts: torch.Tensor
    grid: np.ndarray
    tokens: tuple[str, ...]
    per_layer: dict[int, float]
    inners: list[Inner] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Unregistered:
    x: int


META = {
    "analysis": "behaviour",
    "checkpoints": {"original": "aaaa", "npo": "bbbb"},
    "data_hash": "d",
    "config_hash": "c",
}


def _result(score: float = 0.1 + 0.2) -> FakeResult:
    table = pd.DataFrame(
        {
            "checkpoint": pd.Series(["original", "npo", None], dtype="str"),
            "acc": [0.1 + 0.2, 1 / 3, float("nan")],
            "count": np.array([1, 2, 3], dtype=np.int32),
            "flag": [True, False, True],
            "mixed": pd.Series([1, "a", None], dtype=object),
        },
        index=pd.Index(["q1", "q2", "q3"], name="item"),
    )
    return FakeResult(
        name="run",
        score=score,
        n=3,
        ok=True,
        missing=None,
        table=table,
        acts=torch.randn(2, 3, dtype=torch.float32),
        grid=np.arange(12, dtype=np.float16).reshape(3, 4) / 7,
        tokens=("The", " capital"),
        per_layer={0: 0.5, 11: float("inf")},
        inners=[Inner("bf16", torch.linspace(0, 1, 5, dtype=torch.bfloat16)), Inner("empty", torch.zeros(0, 4))],
        extra={"curve": [1.0, 2.5]},
    )


def _assert_same(a: FakeResult, b: FakeResult) -> None:
    assert type(b) is FakeResult
    assert (a.name, a.score, a.n, a.ok, a.missing, a.tokens) == (b.name, b.score, b.n, b.ok, b.missing, b.tokens)
    assert isinstance(b.tokens, tuple)
    assert b.per_layer == a.per_layer and list(b.per_layer) == [0, 11]  # int keys stay ints
    pd.testing.assert_frame_equal(b.table, a.table, check_exact=True)
    assert b.acts.dtype == torch.float32 and torch.equal(b.acts, a.acts)
    assert b.grid.dtype == np.float16 and np.array_equal(b.grid, a.grid)
    assert b.grid.flags.writeable
    for x, y in zip(a.inners, b.inners, strict=True):
        assert type(y) is Inner and y.label == x.label
        assert y.weights.dtype == x.weights.dtype and y.weights.shape == x.weights.shape
        assert torch.equal(y.weights, x.weights)
    assert b.extra == a.extra


def test_codec_round_trip_is_exact_and_keeps_dtypes():
    a = _result()
    _assert_same(a, decode_result(encode_result(a)))


def test_store_round_trip(tmp_path):
    a = _result()
    with ResultsStore(tmp_path / "r.sqlite") as store:
        key = make_key(META["analysis"], META["checkpoints"], META["data_hash"], META["config_hash"])
        assert store.get_obj(key) is None
        store.put_obj(key, a, **META)
    with ResultsStore(tmp_path / "r.sqlite") as reopened:  # survives a restart
        _assert_same(a, reopened.get_obj(key))
        assert reopened.get(key).startswith(b"{")  # JSON, not a pickle


def test_key_changes_when_any_input_changes():
    base = make_key("behaviour", {"original": "h1", "npo": "h2"}, "data", "cfg")
    assert base == make_key("behaviour", {"npo": "h2", "original": "h1"}, "data", "cfg")  # order-free
    variants = [
        make_key("attribution", {"original": "h1", "npo": "h2"}, "data", "cfg"),
        make_key("behaviour", {"original": "hX", "npo": "h2"}, "data", "cfg"),
        make_key("behaviour", {"original": "h1", "npo": "hX"}, "data", "cfg"),
        make_key("behaviour", {"original": "h1", "ga": "h2"}, "data", "cfg"),
        make_key("behaviour", {"original": "h1"}, "data", "cfg"),
        make_key("behaviour", {"original": "h1", "npo": "h2"}, "data2", "cfg"),
        make_key("behaviour", {"original": "h1", "npo": "h2"}, "data", "cfg2"),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_interrupted_write_leaves_previous_state(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    store.put("k1", b"old", **META)
    with pytest.raises(RuntimeError, match="crash"):
        with store.transaction():
            store.put("k1", b"new", **META)
            store.put("k2", b"other", **META)
            assert store.get("k1") == b"new"  # visible inside the transaction ...
            raise RuntimeError("crash mid-write")
    assert store.get("k1") == b"old"  # ... and gone after the rollback
    assert store.get("k2") is None
    assert list(store.list()["key"]) == ["k1"]
    with pytest.raises(TypeError):
        store.put("k1", "not bytes", **META)  # type: ignore[arg-type]
    assert store.get("k1") == b"old"
    # the store is usable afterwards, also from a second connection (no dangling lock)
    store.put("k1", b"newer", **META)
    assert ResultsStore(tmp_path / "r.sqlite").get("k1") == b"newer"


def test_store_uses_wal_and_schema_version(tmp_path):
    path = tmp_path / "r.sqlite"
    ResultsStore(path).close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    con.close()


def test_schema_version_mismatch_is_a_clear_error(tmp_path):
    path = tmp_path / "r.sqlite"
    ResultsStore(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(SchemaVersionError, match=r"schema version 999.*new results file.*delete"):
        ResultsStore(path)


def test_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a results store"):
        ResultsStore(path)


def test_refuses_unknown_type_names(tmp_path):
    payload = encode_result(_result()).replace(b'"type":"FakeResult"', b'"type":"os.system"')
    with pytest.raises(DecodeError, match="unknown result type 'os.system'"):
        decode_result(payload)
    with pytest.raises(TypeError, match="register_result"):
        encode_result(Unregistered(1))
    store = ResultsStore(tmp_path / "r.sqlite")
    store.put("evil", payload, **META)
    with pytest.raises(DecodeError):
        store.get_obj("evil")
    with pytest.raises(DecodeError):
        decode_result(b"\x80\x04\x95 pickle bytes")


def test_get_or_compute_serves_repeats_from_store(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    calls = []

    def compute():
        calls.append(1)
        return _result(score=0.5)

    first, cached1 = store.get_or_compute("k", compute, **META)
    second, cached2 = store.get_or_compute("k", compute, **META)
    assert (cached1, cached2) == (False, True)
    assert len(calls) == 1
    _assert_same(first, second)
    # a payload that no longer decodes (e.g. the result class changed) is recomputed, not a crash
    store.put("k", encode_result(_result()).replace(b'"type":"FakeResult"', b'"type":"Gone"'), **META)
    again, cached3 = store.get_or_compute("k", compute, **META)
    assert cached3 is False and len(calls) == 2 and again.score == 0.5


def test_list_metadata(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    store.put("a", b"1", **META)
    store.put("b", b"22", **{**META, "analysis": "attribution"})
    df = store.list()
    assert set(df["key"]) == {"a", "b"}
    assert list(df.columns[:6]) == ["key", "analysis", "checkpoints", "data_hash", "config_hash", "created"]
    only = store.list("attribution")
    assert list(only["key"]) == ["b"] and only["payload_bytes"].iloc[0] == 2
    assert only["checkpoints"].iloc[0] == META["checkpoints"]
    assert len(store) == 2 and store.delete("a") and len(store) == 1


def test_threads_share_one_store(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    errors = []

    def work(i):
        try:
            for j in range(10):
                store.put(f"{i}-{j}", bytes([i, j]), **META)
                assert store.get(f"{i}-{j}") == bytes([i, j])
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(store) == 40
    store.close()
