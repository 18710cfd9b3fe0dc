"""What varies between audits of the same kind: entities (facts cluster by the person or author they are about), then
the facts within each entity, then the seed of a stochastic attack. The bootstrap resamples them in that order.

Why: TOFU holds 20 facts per author, the demo lab 5 per person; a probe that recovers one entity recovers all its
facts together, so an interval over items treats 20 correlated facts as 20 independent ones and is too narrow for
the claim "facts like these". With entities, the interval supports that claim; with few entities (TOFU forget01: 2
authors) it cannot, and the interval falls back to items, which supports only "these facts" (the report says so).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

MIN_ENTITIES = 5  # below this an entity interval is degenerate (2 authors give 3 distinct resamples)
UNIT_ENTITY = "entity"
UNIT_ITEM = "item"
# a proper name: two or more capitalised words in a row ("Mira Okonkwo", "Jaime Vasquez"); a question's first word is
# capitalised by grammar, so it only counts when the next word is capitalised too
_NAME = re.compile(r"\b([A-Z][\w'’-]+(?:\s+(?:(?:de|van|von|der|del|la|le|da|di|bin|al)\s+)*[A-Z][\w'’-]+)+)")


def infer_entity(question: str) -> str | None:
    """The longest proper name in a question (the rule used when a data file gives no entity)."""
    names = [m.group(1) for m in _NAME.finditer(question or "")]
    names = [n for n in names if n.split()[0] not in _QUESTION_WORDS or len(n.split()) > 2]
    return max(names, key=len) if names else None


_QUESTION_WORDS = {"What", "Who", "Where", "When", "Which", "How", "Why", "Is", "Does", "Did", "Was", "Can", "In",
                   "The", "Name", "Tell", "Describe"}


def entity_labels(items, given: list[str | None] | None = None) -> tuple[tuple[str, ...], str]:
    """(one label per item, how they were found). Items' own `entity` fields first, else their `concept` fields
    (the lab's and many forget sets' concept is the entity), else the name rule above, kept only for names that at
    least two items share (a name seen once is no cluster); an item without one is its own unit."""
    for field_name, how in (("entity", "the data's entity field"), ("concept", "the data's concept field")):
        own = [getattr(it, field_name, None) for it in items] if given is None else list(given)
        if any(own):
            return tuple(e if e else f"item {i}" for i, e in enumerate(own)), how
        if given is not None:
            break
    guessed = [infer_entity(getattr(it, "question", "") or "") for it in items]
    counts = Counter(g for g in guessed if g)
    labels = [g if g and counts[g] >= 2 else f"item {i}" for i, g in enumerate(guessed)]
    how = ("inferred: the longest capitalised name in the question, where two or more questions share it "
           f"({sum(1 for g in guessed if g and counts[g] >= 2)} of {len(items)} items grouped)")
    return tuple(labels), how


@dataclass(frozen=True)
class Units:
    """How one split's items are resampled: groups of item positions, and what a group is."""

    groups: tuple[np.ndarray, ...]  # item positions per unit
    unit: str  # UNIT_ENTITY | UNIT_ITEM
    reason: str  # why this unit ("" when entities are resampled)
    labels: tuple[str, ...] | None = None  # the entity of every item, when known

    def subset(self, index) -> Units:
        """The units of a probe that scored only some items of the split (their positions, in its order)."""
        if self.labels is None:
            return units_for(None, len(index))
        return units_for(tuple(self.labels[i] for i in index), len(index))

    @property
    def n_units(self) -> int:
        return len(self.groups)

    @property
    def n_items(self) -> int:
        return int(sum(len(g) for g in self.groups))


def units_for(labels: tuple[str, ...] | None, n: int) -> Units:
    """Entity units when at least MIN_ENTITIES entities hold these n items, else items (with the reason)."""
    items = tuple(np.array([i]) for i in range(n))
    if labels is None or len(labels) != n:
        why = ("no entity labels for these items" if labels is None else
               f"the probe's {n} items do not match the {len(labels)} entity labels")
        return Units(items, UNIT_ITEM, why + ": the interval resamples items (it supports 'these facts')")
    labels = tuple(labels)
    order: dict[str, list[int]] = {}
    for i, e in enumerate(labels):
        order.setdefault(e, []).append(i)
    if len(order) == n:
        return Units(items, UNIT_ITEM, "every item is its own entity", labels)
    if len(order) < MIN_ENTITIES:
        return Units(items, UNIT_ITEM, f"only {len(order)} entities (fewer than {MIN_ENTITIES}): an entity interval "
                     "would be degenerate, so it resamples items and supports 'these facts', not 'facts like these'",
                     labels)
    return Units(tuple(np.array(v) for v in order.values()), UNIT_ENTITY, "", labels)


def weights(units: Units, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, n_items] resample counts: units drawn with replacement, then the items within each drawn unit (a
    two-stage cluster bootstrap; with item units it is the ordinary bootstrap)."""
    n, g = units.n_items, units.n_units
    w = np.zeros((n_boot, n), dtype=np.float64)
    draws = rng.multinomial(g, np.full(g, 1.0 / g), size=n_boot)  # [B, g]: how often each unit is drawn
    for k, idx in enumerate(units.groups):
        m = len(idx)
        if m == 1:
            w[:, idx[0]] += draws[:, k]
            continue
        w[:, idx] += rng.multinomial(draws[:, k] * m, np.full(m, 1.0 / m))  # m items per draw of the unit
    return w
