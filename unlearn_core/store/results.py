"""SQLite results store: analysis results keyed by the content hashes of everything that produced them.

Audits are slow (attribution, SAE restoration, relearning attacks), and the dashboard re-asks the same question
every time a page is opened. A key built from checkpoint hashes + data hash + config hash lets a repeat request be
served from disk, across sessions and restarts, and never serves a result computed from different inputs.

Payloads are tagged JSON made by `unlearn_core.store.codec` (never pickle); only `@register_result` classes load.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from unlearn_core.store.codec import DecodeError, decode_result, encode_result, register_result
from unlearn_core.store.timings import TimingRecord, Workload

__all__ = [
    "SCHEMA_VERSION",
    "DecodeError",
    "ResultsStore",
    "SchemaVersionError",
    "StoreError",
    "decode_result",
    "encode_result",
    "make_key",
    "register_result",
]

SCHEMA_VERSION = 1

T = TypeVar("T")


class StoreError(RuntimeError):
    """Base error of the results store."""


class SchemaVersionError(StoreError):
    """The file was written by a different layout of the store."""


# ---------------------------------------------------------------------------------------------------------------
# keys


def make_key(analysis: str, checkpoint_hashes: Mapping[str, str], data_hash: str, config_hash: str) -> str:
    """Key of one result: changes when the analysis, any checkpoint (or its role name), the data or config change."""
    if not analysis:
        raise ValueError("make_key: analysis name must be non-empty")
    payload = {
        "analysis": analysis,
        "checkpoints": {str(k): str(v) for k, v in sorted(checkpoint_hashes.items())},
        "data": data_hash,
        "config": config_hash,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


# ---------------------------------------------------------------------------------------------------------------
# the store

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    analysis TEXT NOT NULL,
    checkpoints TEXT NOT NULL,
    data_hash TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    created REAL NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS results_analysis ON results (analysis);
CREATE TABLE IF NOT EXISTS timings (
    key TEXT NOT NULL,
    analysis TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    seconds REAL NOT NULL,
    n_checkpoints INTEGER NOT NULL,
    n_params INTEGER NOT NULL,
    n_items INTEGER NOT NULL,
    device TEXT NOT NULL,
    host TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS timings_analysis ON timings (analysis, host, device);
"""
# timings: wall time and size of each computed result, for estimates before a run (unlearn_core.run.timing). Created
# IF NOT EXISTS on open, so a store written before it existed gains it without a schema version change.


class ResultsStore:
    """One SQLite file of results. Safe to share between Streamlit's script threads: one connection per thread."""

    make_key = staticmethod(make_key)

    def __init__(self, path: str | Path):
        if str(path) == ":memory:":
            raise ValueError("ResultsStore needs a file path (each thread opens its own connection)")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        try:
            self._init_schema()
        except BaseException:
            self.close()
            raise

    # -- connections and transactions

    def _conn(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            # autocommit mode (isolation_level=None): transactions are only the explicit BEGIN ... COMMIT below
            con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.DatabaseError as e:
                con.close()
                raise StoreError(f"{self.path} is not a results store (SQLite said: {e})") from e
            self._local.con, self._local.depth = con, 0
            with self._conns_lock:
                self._conns.append(con)
        return con

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All writes inside commit together or not at all; an exception rolls every one of them back.

        Nested use joins the outer transaction, so several `put`s can be made atomic as a group.
        """
        con = self._conn()
        if self._local.depth:
            self._local.depth += 1
            try:
                yield con
            finally:
                self._local.depth -= 1
            return
        con.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlock between two writers
        self._local.depth = 1
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        else:
            con.execute("COMMIT")
        finally:
            self._local.depth = 0

    def _init_schema(self) -> None:
        with self.transaction() as con:
            try:
                # one statement at a time: executescript() would COMMIT our transaction first
                for stmt in filter(str.strip, _DDL.split(";")):
                    con.execute(stmt)
            except sqlite3.DatabaseError as e:
                raise StoreError(f"{self.path} is not a results store (SQLite said: {e})") from e
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                con.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise SchemaVersionError(
                    f"results store {self.path} uses schema version {row[0]}, this version of unlearn_core uses "
                    f"{SCHEMA_VERSION}. Choose a new results file, or delete {self.path} (its results will be "
                    "recomputed)."
                )

    def close(self) -> None:
        """Close every thread's connection (call once, when the store is no longer used)."""
        with self._conns_lock:
            for con in self._conns:
                con.close()
            self._conns.clear()
        self._local = threading.local()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- raw bytes

    def get(self, key: str) -> bytes | None:
        row = self._conn().execute("SELECT payload FROM results WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put(
        self,
        key: str,
        payload: bytes,
        *,
        analysis: str,
        checkpoints: Mapping[str, str],
        data_hash: str,
        config_hash: str,
    ) -> None:
        """Insert or replace one result in a single transaction: readers see the old row or the new one, never half."""
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
        row = (key, analysis, json.dumps(dict(checkpoints), sort_keys=True), data_hash, config_hash, time.time())
        with self.transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO results (key, analysis, checkpoints, data_hash, config_hash, created, payload)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*row, sqlite3.Binary(bytes(payload))),
            )

    def supersets(self, analysis: str, checkpoints: Mapping[str, str], data_hash: str, config_hash: str) -> list[str]:
        """Keys of stored results of this analysis, data and config over more checkpoints than these, each of these
        among them under the same name and hash; the smallest set first (the least to decode)."""
        want = {str(k): str(v) for k, v in checkpoints.items()}
        found = [(len(have), key) for key, have in self._sets(analysis, data_hash, config_hash)
                 if len(have) > len(want) and all(have.get(n) == h for n, h in want.items())]
        return [key for _, key in sorted(found, key=lambda t: t[0])]

    def _sets(self, analysis: str, data_hash: str, config_hash: str) -> list[tuple[str, dict[str, str]]]:
        """(key, checkpoints) of every stored result of this analysis, data and config, newest first."""
        rows = self._conn().execute(
            "SELECT key, checkpoints FROM results WHERE analysis = ? AND data_hash = ? AND config_hash = ? "
            "ORDER BY created DESC", (analysis, data_hash, config_hash)).fetchall()
        return [(key, json.loads(text)) for key, text in rows]

    def subsets(self, analysis: str, checkpoints: Mapping[str, str], data_hash: str, config_hash: str,
                must: set[str]) -> list[tuple[str, dict[str, str]]]:
        """(key, its checkpoints) of stored results of this analysis, data and config over fewer checkpoints than
        these, every one of them among these under the same name and hash and holding every name in `must` (the
        original, the reference); the largest set first (the least left to compute)."""
        want = {str(k): str(v) for k, v in checkpoints.items()}
        found = [(len(have), key, have) for key, have in self._sets(analysis, data_hash, config_hash)
                 if len(have) < len(want) and all(want.get(n) == h for n, h in have.items())
                 and all(n in have for n in must)]
        return [(key, have) for _, key, have in sorted(found, key=lambda t: -t[0])]

    def delete(self, key: str) -> bool:
        with self.transaction() as con:
            return con.execute("DELETE FROM results WHERE key = ?", (key,)).rowcount > 0

    # -- typed results

    def get_obj(self, key: str) -> Any | None:
        payload = self.get(key)
        return None if payload is None else decode_result(payload)

    def put_obj(self, key: str, obj: Any, **meta: Any) -> None:
        self.put(key, encode_result(obj), **meta)

    def get_or_compute(self, key: str, compute_fn: Callable[[], T], **meta: Any) -> tuple[T, bool]:
        """(result, from_cache). A stored payload that no longer decodes (class changed) is recomputed and replaced.

        Concurrent calls for the same key in this process wait for the first one instead of computing twice.
        """
        with self._conns_lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            try:
                hit = self.get_obj(key)
            except DecodeError:
                hit = None
            if hit is not None:
                return hit, True
            obj = compute_fn()
            self.put_obj(key, obj, **meta)
            return obj, False

    # -- wall times

    def record_timing(self, key: str, record: TimingRecord) -> bool:
        """False instead of an error when it cannot be written: a timing is a hint, never worth losing a result."""
        w = record.workload
        try:
            with self.transaction() as con:
                con.execute(
                    "INSERT INTO timings (key, analysis, config_hash, seconds, n_checkpoints, n_params, n_items, "
                    "device, host, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, record.analysis, record.config_hash, float(record.seconds), w.n_checkpoints, w.n_params,
                     w.n_items, record.device, record.host, record.created),
                )
        except sqlite3.Error:
            return False
        return True

    def timings(self, analysis: str, *, device: str | None = None, host: str | None = None) -> list[TimingRecord]:
        sql = ("SELECT analysis, config_hash, seconds, n_checkpoints, n_params, n_items, device, host, created "
               "FROM timings WHERE analysis = ?")
        args: list = [analysis]
        for col, value in (("device", device), ("host", host)):
            if value is not None:
                sql, args = sql + f" AND {col} = ?", [*args, value]
        rows = self._conn().execute(sql + " ORDER BY created DESC", args).fetchall()
        return [TimingRecord(a, c, s, Workload(nc, npar, ni), d, h, t) for a, c, s, nc, npar, ni, d, h, t in rows]

    def list(self, analysis: str | None = None) -> pd.DataFrame:
        """Metadata of stored results (newest first), without payloads."""
        sql = "SELECT key, analysis, checkpoints, data_hash, config_hash, created, length(payload) FROM results"
        args: tuple = ()
        if analysis is not None:
            sql, args = sql + " WHERE analysis = ?", (analysis,)
        rows = self._conn().execute(sql + " ORDER BY created DESC", args).fetchall()
        cols = ["key", "analysis", "checkpoints", "data_hash", "config_hash", "created", "payload_bytes"]
        df = pd.DataFrame(rows, columns=cols)
        df["checkpoints"] = [json.loads(c) for c in df["checkpoints"]]
        df["created"] = pd.to_datetime(df["created"].astype(float), unit="s", utc=True)
        return df

    def __len__(self) -> int:
        return self._conn().execute("SELECT count(*) FROM results").fetchone()[0]
