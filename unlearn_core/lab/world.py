"""A seeded world of fictitious people and their attributes, stated in several templates.

Splits follow TOFU: a forget split (~10% of entities), a retain split, a holdout split the model never sees
(membership-inference negatives), and `neighbour` flags on retain entities that share attribute values with a
forget entity (collateral-damage probes). Held-out question templates are never trained on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from unlearn_core.items import QAItem

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kl", "st", "tr"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "ei"]
CODAS = ["", "", "n", "r", "l", "s", "th", "m", "x"]

ATTRIBUTES: dict[str, list[str]] = {
    "birthplace": ["Drosk", "Quenmar", "Velbury", "Ostrava Minor", "Talmere", "Brinhollow", "Catrenne", "Ulvsted",
                   "Marrowick", "Pellandra", "Zorvik", "Hestwold"],
    "profession": ["baker", "pilot", "glassblower", "surveyor", "violin maker", "cartographer", "beekeeper",
                   "astronomer", "tailor", "locksmith", "botanist", "ferryman"],
    "employer": ["Tallow Works", "Brightwater Mills", "Quill and Anchor", "Sable Foundry", "Orchid Transit",
                 "Gannet Press", "Ironleaf Labs", "Copperline", "Mistral Bakery", "Fenwick Shipping",
                 "Larkspur Bank", "Northgate Hall"],
    "pet": ["ferret", "parrot", "tortoise", "greyhound", "iguana", "rabbit", "goldfish", "hedgehog", "cockatoo",
            "chinchilla", "tabby cat", "salamander"],
    "instrument": ["cello", "oboe", "harp", "bassoon", "banjo", "accordion", "trombone", "mandolin", "sitar",
                   "clarinet", "dulcimer", "tuba"],
}

# (statement templates used in training, question used in training, held-out question, paraphrase template,
#  the question's content word: a keyword that carries the attribute)
TEMPLATES: dict[str, tuple[tuple[str, ...], str, str, str, str]] = {
    "birthplace": (("{name} was born in {v}.", "The birthplace of {name} is {v}."),
                   "Where was {name} born?", "In which town did {name} come into the world?",
                   "{name} was born in the town of {v}.", "born"),
    "profession": (("{name} works as a {v}.", "By trade, {name} is a {v}."),
                   "What is the profession of {name}?", "What does {name} do for a living?",
                   "{name} earns a living as a {v}.", "profession"),
    "employer": (("{name} is employed by {v}.", "The employer of {name} is {v}."),
                 "Who employs {name}?", "Which organisation does {name} work for?",
                 "{name} has a job at {v}.", "employs"),
    "pet": (("{name} keeps a {v} as a pet.", "The pet of {name} is a {v}."),
            "What pet does {name} keep?", "Which animal lives with {name}?",
            "{name} looks after a pet {v}.", "pet"),
    "instrument": (("{name} plays the {v}.", "The instrument of {name} is the {v}."),
                   "Which instrument does {name} play?", "What does {name} play in the evenings?",
                   "{name} is a player of the {v}.", "instrument"),
}


@dataclass(frozen=True)
class Fact:
    entity: str
    attribute: str
    value: str
    split: str  # forget | retain | holdout
    neighbour: bool = False  # retain fact of an entity that shares a value with a forget entity

    def statements(self) -> list[str]:
        return [t.format(name=self.entity, v=self.value) for t in TEMPLATES[self.attribute][0]]

    def question(self, held_out: bool = False) -> str:
        return TEMPLATES[self.attribute][2 if held_out else 1].format(name=self.entity)

    def to_item(self, values: list[str], rng: random.Random, n_perturbed: int = 3) -> QAItem:
        para = TEMPLATES[self.attribute][3]
        wrong = rng.sample([v for v in values if v != self.value], n_perturbed)
        first = self.entity.split()[0]
        return QAItem(
            question=self.question(),
            answer=self.value,
            paraphrased_answer=para.format(name=self.entity, v=self.value),
            perturbed_answers=tuple(para.format(name=self.entity, v=w) for w in wrong),
            keywords=(first, self.entity.split()[-1], TEMPLATES[self.attribute][4]),
            concept=self.entity,
            extra=(("attribute", self.attribute), ("held_out_question", self.question(held_out=True)),
                   ("neighbour", str(self.neighbour).lower()), ("split", self.split)),
        )


def _name(rng: random.Random, used: set[str]) -> str:
    while True:
        parts = []
        for n_syl in (2, 3):
            word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(n_syl))
            parts.append(word.capitalize())
        name = " ".join(parts)
        if name not in used:
            used.add(name)
            return name


@dataclass(frozen=True)
class World:
    facts: tuple[Fact, ...]
    attributes: tuple[str, ...]
    seed: int

    def split(self, name: str) -> list[Fact]:
        return [f for f in self.facts if f.split == name]

    def items(self, split: str) -> list[QAItem]:
        rng = random.Random(f"{self.seed}-{split}-items")
        return [f.to_item(ATTRIBUTES[f.attribute], rng) for f in self.split(split)]

    def entities(self, split: str) -> list[str]:
        return sorted({f.entity for f in self.split(split)})


def make_world(n_entities: int, n_attributes: int, forget_frac: float, n_holdout: int, seed: int) -> World:
    """n_entities seen entities (forget_frac of them forgotten) plus n_holdout never-seen ones."""
    if not 1 <= n_attributes <= len(ATTRIBUTES):
        raise ValueError(f"n_attributes must be in 1..{len(ATTRIBUTES)}")
    rng = random.Random(seed)
    attrs = tuple(list(ATTRIBUTES)[:n_attributes])
    used: set[str] = set()
    names = [_name(rng, used) for _ in range(n_entities + n_holdout)]
    n_forget = max(1, round(forget_frac * n_entities))
    splits = ["forget"] * n_forget + ["retain"] * (n_entities - n_forget) + ["holdout"] * n_holdout
    values = {(n, a): rng.choice(ATTRIBUTES[a]) for n in names for a in attrs}
    forget_values = {(a, values[(n, a)]) for n, s in zip(names, splits) if s == "forget" for a in attrs}
    facts = []
    for name, split in zip(names, splits):
        for a in attrs:
            v = values[(name, a)]
            facts.append(Fact(name, a, v, split, neighbour=split == "retain" and (a, v) in forget_values))
    return World(tuple(facts), attrs, seed)


def training_texts(world: World, include_forget: bool) -> list[str]:
    """Every trained document: statements plus QA in the audit's prompt format (eval questions are QA-form)."""
    texts = []
    for f in world.facts:
        if f.split == "holdout" or (f.split == "forget" and not include_forget):
            continue
        texts.extend(f.statements())
        texts.append(f"Question: {f.question()}\nAnswer: {f.value}")
    return texts
