"""Results codec: frozen result dataclasses <-> tagged JSON bytes, without pickle.

A results file may be shared with a colleague, and unpickling runs arbitrary code. This codec writes plain JSON in
which arrays, tensors and DataFrames are tagged values (dtype + shape + base64 bytes, so floats round-trip exactly
and dtypes are kept), and decoding only constructs dataclasses registered with `register_result`: a crafted file
can at worst fail to load.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import sys
import threading
from typing import Any, TypeVar

import numpy as np
import pandas as pd

__all__ = ["DecodeError", "decode_result", "encode_result", "register_result"]

T = TypeVar("T")


class DecodeError(ValueError):
    """A payload could not be turned back into a result (unknown type, changed fields, corrupt data)."""


_REGISTRY: dict[str, type] = {}
_REGISTRY_LOCK = threading.Lock()
_TAG = "__t"


def register_result(cls: type[T]) -> type[T]:
    """Class decorator: allow this dataclass to be stored and rebuilt by `get_obj` (by its qualified name).

    Re-registering a class of the same module and name replaces it (Streamlit re-imports modules on code change);
    a different module claiming the same name is refused, as it would decode into the wrong type.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"register_result expects a dataclass type, got {cls!r}")
    name = cls.__qualname__
    with _REGISTRY_LOCK:
        old = _REGISTRY.get(name)
        if old is not None and old is not cls and old.__module__ != cls.__module__:
            raise ValueError(f"result type name {name!r} already registered by {old.__module__}")
        _REGISTRY[name] = cls
    return cls


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _encode(obj: Any) -> Any:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.generic):  # before int/float: np.float64 subclasses float and would lose its dtype
        return {_TAG: "npscalar", "dtype": obj.dtype.str, "data": _b64(obj.tobytes())}
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {_TAG: "float", "v": repr(obj)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        cls = type(obj)
        name = cls.__qualname__
        registered = _REGISTRY.get(name)
        # same module + name counts: an instance made before a Streamlit module reload is still that result type
        if registered is None or (registered is not cls and registered.__module__ != cls.__module__):
            raise TypeError(f"{name} is not registered; decorate it with @register_result to store it")
        return {
            _TAG: "dc",
            "type": name,
            "fields": {f.name: _encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)},
        }
    if isinstance(obj, list):
        return [_encode(v) for v in obj]
    if isinstance(obj, tuple):
        return {_TAG: "tuple", "v": [_encode(v) for v in obj]}
    if isinstance(obj, dict):
        # Key/value pairs, not a JSON object: keys may be ints or tuples, which JSON objects would turn into strings.
        return {_TAG: "dict", "items": [[_encode(k), _encode(v)] for k, v in obj.items()]}
    if isinstance(obj, np.ndarray):
        return _encode_array(obj)
    if isinstance(obj, pd.DataFrame):
        return _encode_frame(obj)
    torch = sys.modules.get("torch")  # a tensor can only exist if torch was imported; don't import it here
    if torch is not None and isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        return {_TAG: "tensor", "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "data": _b64(raw)}
    raise TypeError(f"cannot store a value of type {type(obj).__name__}")


def _encode_array(a: np.ndarray) -> dict:
    if a.dtype.hasobject:
        raise TypeError("cannot store numpy arrays of dtype object")
    return {
        _TAG: "ndarray",
        "dtype": a.dtype.str,
        "shape": list(a.shape),
        "data": _b64(np.ascontiguousarray(a).tobytes()),
    }


def _encode_index(idx: pd.Index) -> dict:
    if isinstance(idx, pd.RangeIndex):
        return {"kind": "range", "start": idx.start, "stop": idx.stop, "step": idx.step, "name": _encode(idx.name)}
    if isinstance(idx, pd.MultiIndex):
        return {"kind": "multi", "tuples": _encode(list(idx)), "names": _encode(list(idx.names))}
    return {"kind": "index", "values": _encode_series_values(idx), "dtype": str(idx.dtype), "name": _encode(idx.name)}


def _encode_series_values(values: pd.Index | pd.Series) -> Any:
    # Numeric/bool/datetime columns go through numpy bytes (exact floats; to_json keeps at most 15 digits).
    if isinstance(values.dtype, np.dtype) and values.dtype.kind in "biufcmM":
        return _encode_array(values.to_numpy())
    return _encode(values.tolist())


def _encode_frame(df: pd.DataFrame) -> dict:
    return {
        _TAG: "dataframe",
        "columns": _encode_index(df.columns),
        "index": _encode_index(df.index),
        "data": [_encode_series_values(df.iloc[:, i]) for i in range(df.shape[1])],
        "dtypes": [str(dt) for dt in df.dtypes],
    }


def _decode(obj: Any) -> Any:
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    tag = obj.get(_TAG)
    if tag == "tuple":
        return tuple(_decode(v) for v in obj["v"])
    if tag == "dict":
        return {_decode_key(k): _decode(v) for k, v in obj["items"]}
    if tag == "float":
        return float(obj["v"])
    if tag in ("npscalar", "ndarray"):
        dtype = np.dtype(obj["dtype"])
        if dtype.hasobject:
            raise DecodeError("refusing numpy dtype object")
        flat = np.frombuffer(base64.b64decode(obj["data"]), dtype=dtype)
        return flat[0] if tag == "npscalar" else flat.reshape(obj["shape"]).copy()
    if tag == "tensor":
        return _decode_tensor(obj)
    if tag == "dataframe":
        return _decode_frame(obj)
    if tag == "dc":
        return _decode_dataclass(obj)
    raise DecodeError(f"unknown value tag {tag!r}")


def _decode_key(k: Any) -> Any:
    k = _decode(k)
    return tuple(k) if isinstance(k, list) else k


def _decode_tensor(obj: dict) -> Any:
    import torch

    dtype = getattr(torch, obj["dtype"], None)
    if not isinstance(dtype, torch.dtype):
        raise DecodeError(f"unknown torch dtype {obj['dtype']!r}")
    raw = base64.b64decode(obj["data"])
    if not raw:
        return torch.empty(obj["shape"], dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(obj["shape"]).clone()


def _decode_index(d: dict) -> pd.Index:
    if d["kind"] == "range":
        return pd.RangeIndex(d["start"], d["stop"], d["step"], name=_decode(d["name"]))
    if d["kind"] == "multi":
        return pd.MultiIndex.from_tuples(_decode(d["tuples"]), names=_decode(d["names"]))
    values = _decode(d["values"])
    return pd.Index(values, dtype=d["dtype"], name=_decode(d["name"]))


def _decode_frame(obj: dict) -> pd.DataFrame:
    columns = _decode_index(obj["columns"])
    index = _decode_index(obj["index"])
    series = [pd.Series(_decode(v), index=index, dtype=dt) for v, dt in zip(obj["data"], obj["dtypes"], strict=True)]
    if not series:
        return pd.DataFrame(index=index, columns=columns)
    df = pd.concat(series, axis=1, ignore_index=True)
    df.columns = columns
    return df


def _decode_dataclass(obj: dict) -> Any:
    name = obj.get("type")
    cls = _REGISTRY.get(name)
    if cls is None:
        raise DecodeError(f"refusing to build unknown result type {name!r}; only @register_result classes load")
    values = {k: _decode(v) for k, v in obj["fields"].items()}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if set(values) != set(fields):
        raise DecodeError(f"stored {name} has fields {sorted(values)}, the class now has {sorted(fields)}")
    init = {k: v for k, v in values.items() if fields[k].init}
    try:
        out = cls(**init)
    except Exception as e:  # validation in __post_init__ may reject an old payload
        raise DecodeError(f"could not rebuild {name}: {e}") from e
    for k, v in values.items():
        if not fields[k].init:
            object.__setattr__(out, k, v)  # frozen dataclasses: the same escape hatch dataclasses itself uses
    return out


def encode_result(obj: Any) -> bytes:
    """Serialise a registered result dataclass to UTF-8 tagged JSON."""
    if not (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
        raise TypeError(f"expected a result dataclass instance, got {type(obj).__name__}")
    return json.dumps(_encode(obj), separators=(",", ":"), allow_nan=False).encode()


def decode_result(payload: bytes) -> Any:
    """Inverse of `encode_result`; raises DecodeError for unknown types or corrupt data."""
    try:
        tree = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise DecodeError(f"payload is not valid JSON: {e}") from e
    if not (isinstance(tree, dict) and tree.get(_TAG) == "dc"):
        raise DecodeError("payload is not a stored result")
    try:
        return _decode(tree)
    except DecodeError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise DecodeError(f"corrupt result payload: {e!r}") from e
