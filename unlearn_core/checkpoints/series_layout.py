"""The Hugging Face Trainer layout of a training run: `checkpoint-N/` subfolders, sorted by N, picked every k-th."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from unlearn_core.checkpoints.source import CheckpointError

STEP_DIR = re.compile(r"checkpoint-(\d+)")


@dataclass(frozen=True)
class SeriesStep:
    series: str
    step: int
    path: str

    @property
    def name(self) -> str:
        return f"{self.series}@{self.step}"


def list_steps(folder: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every `checkpoint-N/` subfolder, sorted by N as a number (checkpoint-10 after -9)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: series folder not found")
    out = sorted((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := STEP_DIR.fullmatch(p.name)))
    if not out:
        raise CheckpointError(f"{folder}: no checkpoint-N subfolders; a series is a training run's output folder "
                              "(Hugging Face Trainer layout: checkpoint-500/, checkpoint-1000/, ...)")
    return out


def is_series_folder(folder: str | Path) -> bool:
    p = Path(folder).expanduser()
    return p.is_dir() and any(q.is_dir() and STEP_DIR.fullmatch(q.name) for q in p.iterdir())


def pick_steps(steps: list[int], every: int = 1) -> list[int]:
    """Every k-th step from the first, and always the last (where the run ended is the point of the run)."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    steps = sorted(steps)
    out = steps[::every]
    if steps and out[-1] != steps[-1]:
        out.append(steps[-1])
    return out


def expand_series(name: str, folder: str | Path, every: int = 1) -> list[SeriesStep]:
    """The picked steps of one series as checkpoints named `<name>@<step>`."""
    if not name or "@" in name:
        raise ValueError(f"series name must be non-empty and without '@': {name!r}")
    found = dict(list_steps(folder))
    return [SeriesStep(name, s, str(found[s])) for s in pick_steps(list(found), every)]
