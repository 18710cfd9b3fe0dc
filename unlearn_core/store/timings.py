"""What each computed result cost: wall time and size, stored beside the result for estimates before a run."""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, field

HOST = platform.node()


@dataclass(frozen=True)
class Workload:
    n_checkpoints: int
    n_params: int  # per checkpoint: the largest (the checkpoints of one audit are compatible, so one size)
    n_items: int  # forget + retain + holdout

    def dims(self) -> tuple[int, int, int]:
        return max(self.n_checkpoints, 1), max(self.n_params, 1), max(self.n_items, 1)

    @property
    def work(self) -> float:
        return math.prod(float(d) for d in self.dims())

    def describe(self) -> str:
        p = self.n_params
        size = f"{p / 1e9:.1f}B" if p >= 1e9 else f"{p / 1e6:.1f}M" if p >= 1e5 else f"{p:,}"
        return f"{self.n_checkpoints} checkpoints x {size} parameters x {self.n_items} items"


@dataclass(frozen=True)
class TimingRecord:
    analysis: str
    config_hash: str
    seconds: float  # wall time of the computation alone (not waiting for the models, not the store write)
    workload: Workload
    device: str  # cpu | cuda
    host: str = HOST
    created: float = field(default_factory=time.time)
