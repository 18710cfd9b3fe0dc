"""Shared handles passed to every analysis: loaded checkpoints and the audit's data.

Analyses are pure functions `(models, data, config) -> result`; these are the `models` and `data` halves.
Loaded models are treated as read-only: analyses that modify weights work on a copy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from unlearn_core.data.items import PromptFormat, QAItem

ROLES = ("original", "unlearned", "retain_only")
# progress(fraction done in [0, 1], what is being done): every long computation reports through one of these
Progress = Callable[[float, str], None]


@dataclass(eq=False)
class LoadedModel:
    name: str  # display name, e.g. "original", "npo"
    role: str  # one of ROLES
    model: Any  # a transformers PreTrainedModel in eval mode
    tokenizer: Any
    path: str
    hash: str  # content hash of the checkpoint (results-store key)

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")


_OPTIONAL_SINCE_V2 = ("entity", "paraphrased_question")  # hashed only when set: older stores keep their keys


def _item_payload(item: QAItem) -> dict:
    d = asdict(item)
    for k in _OPTIONAL_SINCE_V2:
        if d.get(k) is None:
            d.pop(k, None)
    return d


@dataclass(frozen=True)
class AuditData:
    forget: tuple[QAItem, ...]
    retain: tuple[QAItem, ...] = ()
    holdout: tuple[QAItem, ...] = ()
    prompt_format: PromptFormat = field(default_factory=PromptFormat)

    @cached_property
    def hash(self) -> str:
        """Content hash of every item and the prompt format: equal data give equal keys in the results store.
        Computed once per (immutable) instance: pages read it on every rerun."""
        payload = {split: [_item_payload(it) for it in getattr(self, split)]
                   for split in ("forget", "retain", "holdout")}
        payload["prompt_format"] = self.prompt_format.key()  # a chat format: its template and system prompt
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()[:16]


@dataclass(eq=False)
class ModelSet:
    """One audit's checkpoints: the original, one or more unlearned, optionally the retain-only reference."""

    original: LoadedModel
    unlearned: dict[str, LoadedModel]
    retain_only: LoadedModel | None = None

    def all(self) -> dict[str, LoadedModel]:
        out = {self.original.name: self.original, **self.unlearned}
        if self.retain_only is not None:
            out[self.retain_only.name] = self.retain_only
        return out
