"""Helpers every recovery probe shares: per-item split scores, summary rows, flat scores, per-item evidence.

A recovery probe is an attack: it scores each checkpoint plainly and under the attack. The calibrated verdict
(unlearn_core.evidence.calibration) needs the PER-ITEM scores, not only the means, so each probe keeps them inside its
result as an item table, split -> model -> attack -> array [n_items] (attack "plain" = unattacked), and
`probe_items` only re-arranges that table into a ProbeItems for one headline attack.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from unlearn_core.data.items import PromptFormat, QAItem
from unlearn_core.evidence.calibration import ProbeItems
from unlearn_core.evidence.recovery import recovery_rate
from unlearn_core.model.scoring import Encoded, encode, pad_id_of, score_encoded

PLAIN = "plain"
SUMMARY_COLUMNS = ("model", "role", "attack", "forget_p", "forget_acc", "retain_p", "retain_acc",
                   "recovery_p", "recovery_acc", "retain_p_delta", "retain_acc_delta")
# split -> model -> attack -> per-item scores [n_items] (or [n_items, k] where a probe keeps its samples)
ItemTable = dict[str, dict[str, dict[str, np.ndarray]]]


def split_scores(model, tokenizer, items: tuple[QAItem, ...] | list[QAItem], fmt: PromptFormat,
                 batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item p~ [n] and exact-answer accuracy [n] (teacher-forced argmax reproduces every answer token)."""
    if not items:
        return torch.zeros(0), torch.zeros(0)
    return encoded_scores(model, encode_items(tokenizer, items, fmt), pad_id_of(tokenizer), batch_size)


def encode_items(tokenizer, items, fmt: PromptFormat) -> list[Encoded]:
    """The items' (prompt, answer) token ids: encode once where the same items are scored many times."""
    pairs = [fmt.pair(it) for it in items]
    return encode(tokenizer, [p for p, _ in pairs], [a for _, a in pairs])


def encoded_scores(model, enc: list[Encoded], pad_id: int, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """split_scores on items already encoded (encode_items)."""
    if not enc:
        return torch.zeros(0), torch.zeros(0)
    sc = score_encoded(model, enc, pad_id, batch_size=batch_size)
    return sc.prob(), sc.accuracy()


def mean(t: torch.Tensor) -> float:
    return float(t.float().mean()) if t.numel() else math.nan


def as_array(t: torch.Tensor | np.ndarray) -> np.ndarray:
    """Per-item scores as float64 numpy (what the result stores and calibration reads)."""
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().double().numpy()
    return np.asarray(t, dtype=np.float64).copy()


def summary_row(name: str, role: str, attack: str, forget: tuple[float, float], retain: tuple[float, float],
                plain: dict | None, original_plain: dict | None) -> dict:
    """One SUMMARY_COLUMNS row. forget/retain = (mean p~, accuracy); `plain` is this model's unattacked row."""
    row = {"model": name, "role": role, "attack": attack, "forget_p": forget[0], "forget_acc": forget[1],
           "retain_p": retain[0], "retain_acc": retain[1], "recovery_p": math.nan, "recovery_acc": math.nan,
           "retain_p_delta": math.nan, "retain_acc_delta": math.nan}
    if plain is not None:
        row["retain_p_delta"] = retain[0] - plain["retain_p"]
        row["retain_acc_delta"] = retain[1] - plain["retain_acc"]
        if original_plain is not None and role != "original":
            row["recovery_p"] = recovery_rate(forget[0], plain["forget_p"], original_plain["forget_p"])
            row["recovery_acc"] = recovery_rate(forget[1], plain["forget_acc"], original_plain["forget_acc"])
    return row


def probe_scores(rows, model_name: str, prefix: str) -> dict[str, float]:
    """report.json keys `{prefix}_recovery_{attack}` (p~ based), `..._acc` (accuracy based), retain side effect."""
    out: dict[str, float] = {}
    for r in rows:
        if r["model"] != model_name or r["attack"] == PLAIN:
            continue
        a = r["attack"]
        out[f"{prefix}_recovery_{a}"] = float(r["recovery_p"])
        out[f"{prefix}_recovery_{a}_acc"] = float(r["recovery_acc"])
        out[f"{prefix}_retain_acc_delta_{a}"] = float(r["retain_acc_delta"])
    return out


def check_int(name: str, value, lo: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")


def put(table: ItemTable, split: str, model: str, attack: str, scores) -> None:
    """Store one model's per-item scores of one split under one attack."""
    table.setdefault(split, {}).setdefault(model, {})[attack] = as_array(scores)


def probe_items(table: ItemTable, key: str, attack: str, label: str, metric: str = "answer p~",
                reduce: Callable[[np.ndarray], np.ndarray] | None = None) -> ProbeItems:
    """ProbeItems of one attack from an item table: every model with a plain score; attacked where it ran.

    reduce: turns stored [n, k] samples into [n] (e.g. best of k); identity when None.
    """
    def split(name: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        plain, attacked = {}, {}
        for model, by_attack in table.get(name, {}).items():
            if PLAIN in by_attack:
                plain[model] = by_attack[PLAIN]
            if attack in by_attack:
                a = by_attack[attack]
                attacked[model] = reduce(a) if reduce is not None else a
        return plain, attacked

    fp, fa = split("forget")
    hp, ha = split("holdout")
    return ProbeItems(key=key, attack=label, metric=metric, forget_plain=fp, forget_attacked=fa,
                      holdout_plain=hp, holdout_attacked=ha)
