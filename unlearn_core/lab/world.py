"""Seeded worlds of fictitious entities and their attributes, stated in several templates; a registry of domains.

Splits follow TOFU: a forget split (~10% of entities), a retain split, a holdout split the model never sees
(membership-inference negatives), and `neighbour` flags on retain entities that share attribute values with a
forget entity (collateral-damage probes). Held-out question templates are never trained on. A separate `base`
split holds other entities of the same domain, with the same attributes and templates: the pretraining corpus of
the lab's `base` model (never audited, never in the data files).

A domain brings its own attributes, value lists, templates and name generator (`Domain`); a world generator is
registered by name (`register_world`) and chosen by `LabConfig.world`. The default is "people".
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

from unlearn_core.data.items import QAItem

SPLITS = ("forget", "retain", "holdout", "base")


@dataclass(frozen=True)
class Template:
    """How one attribute is stated. Placeholders: {name} (the entity) and {v} (the value)."""

    statements: tuple[str, ...]  # trained statements
    question: str  # trained question (the audit's question)
    held_out_question: str  # never trained: form-independence probes
    paraphrase: str  # paraphrased answer sentence (TOFU's paraphrased_answer; perturbed answers reuse it)
    keyword: str  # the question's content word: a keyword that carries the attribute


@dataclass(frozen=True)
class Domain:
    name: str
    values: Mapping[str, tuple[str, ...]]  # attribute -> possible values (also the perturbed-answer pool)
    templates: Mapping[str, Template]  # attribute -> templates
    make_name: Callable[[random.Random, set[str]], str]  # a fresh entity name, added to the `used` set

    def __post_init__(self):
        if set(self.values) != set(self.templates):
            raise ValueError(f"domain {self.name!r}: attributes of values and templates differ")
        for a, vs in self.values.items():
            if len(set(vs)) < 4:
                raise ValueError(f"domain {self.name!r}: attribute {a!r} needs >= 4 distinct values")

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(self.values)


@dataclass(frozen=True)
class Fact:
    entity: str
    attribute: str
    value: str
    split: str  # forget | retain | holdout | base
    template: Template = field(repr=False)
    neighbour: bool = False  # retain fact of an entity that shares a value with a forget entity

    def statements(self) -> list[str]:
        return [t.format(name=self.entity, v=self.value) for t in self.template.statements]

    def question(self, held_out: bool = False) -> str:
        t = self.template.held_out_question if held_out else self.template.question
        return t.format(name=self.entity)

    def to_item(self, values: list[str] | tuple[str, ...], rng: random.Random, n_perturbed: int = 3) -> QAItem:
        para = self.template.paraphrase
        wrong = rng.sample([v for v in values if v != self.value], n_perturbed)
        words = self.entity.split()
        keywords = tuple(dict.fromkeys((words[0], words[-1], self.template.keyword)))
        return QAItem(
            question=self.question(),
            answer=self.value,
            paraphrased_answer=para.format(name=self.entity, v=self.value),
            perturbed_answers=tuple(para.format(name=self.entity, v=w) for w in wrong),
            keywords=keywords,
            concept=self.entity,
            extra=(("attribute", self.attribute), ("neighbour", str(self.neighbour).lower()), ("split", self.split)),
            entity=self.entity,
            paraphrased_question=self.question(held_out=True),
        )


@dataclass(frozen=True)
class World:
    facts: tuple[Fact, ...]
    attributes: tuple[str, ...]
    seed: int
    domain: Domain = field(repr=False, compare=False, hash=False)

    @property
    def name(self) -> str:
        return self.domain.name

    def split(self, name: str) -> list[Fact]:
        return [f for f in self.facts if f.split == name]

    def items(self, split: str) -> list[QAItem]:
        rng = random.Random(f"{self.seed}-{split}-items")
        return [f.to_item(self.domain.values[f.attribute], rng) for f in self.split(split)]

    def entities(self, split: str) -> list[str]:
        return sorted({f.entity for f in self.split(split)})


def training_texts(world: World, splits: tuple[str, ...] = ("forget", "retain")) -> list[str]:
    """Every trained document of the given splits: statements plus QA in the audit's prompt format."""
    if "holdout" in splits:
        raise ValueError("the holdout split is never trained on")
    texts = []
    for f in world.facts:
        if f.split in splits:
            texts.extend(f.statements())
            texts.append(f"Question: {f.question()}\nAnswer: {f.value}")
    return texts


def qa_pairs(world: World, split: str) -> list[tuple[str, str]]:
    return [(f"Question: {f.question()}\nAnswer:", " " + f.value) for f in world.split(split)]


def generate_world(domain: Domain, *, n_entities: int, n_attributes: int, forget_frac: float, n_holdout: int,
                   n_base: int, seed: int) -> World:
    """n_entities audited entities (the first forget_frac of them forgotten), n_holdout never-seen ones and n_base
    base (pretraining) entities. The audited part does not depend on n_base: base names and values are drawn after.
    """
    if not 1 <= n_attributes <= len(domain.attributes):
        raise ValueError(f"n_attributes must be in 1..{len(domain.attributes)}")
    rng = random.Random(seed)
    attrs = domain.attributes[:n_attributes]
    used: set[str] = set()
    names = [domain.make_name(rng, used) for _ in range(n_entities + n_holdout)]
    n_forget = max(1, round(forget_frac * n_entities))
    splits = ["forget"] * n_forget + ["retain"] * (n_entities - n_forget) + ["holdout"] * n_holdout
    values = {(n, a): rng.choice(domain.values[a]) for n in names for a in attrs}
    base_names = [domain.make_name(rng, used) for _ in range(n_base)]
    values.update({(n, a): rng.choice(domain.values[a]) for n in base_names for a in attrs})
    forget_values = {(a, values[(n, a)]) for n, s in zip(names, splits) if s == "forget" for a in attrs}
    facts = []
    for name, split in zip(names + base_names, splits + ["base"] * n_base):
        for a in attrs:
            v = values[(name, a)]
            facts.append(Fact(name, a, v, split, domain.templates[a],
                              neighbour=split == "retain" and (a, v) in forget_values))
    return World(tuple(facts), attrs, seed, domain)


# ------------------------------------------------------------------------------------------------------ registry

WorldFactory = Callable[..., World]  # keyword arguments: n_entities, n_attributes, forget_frac, n_holdout, n_base, seed
_WORLDS: dict[str, WorldFactory] = {}


def register_world(name: str, factory: WorldFactory, overwrite: bool = False) -> None:
    """Registers a world generator: factory(*, n_entities, n_attributes, forget_frac, n_holdout, n_base, seed)."""
    if name in _WORLDS and _WORLDS[name] is not factory and not overwrite:
        raise ValueError(f"world {name!r} is already registered")
    _WORLDS[name] = factory


def get_world(name: str) -> WorldFactory:
    if name not in _WORLDS:
        raise ValueError(f"unknown world {name!r}; registered: {sorted(_WORLDS)}")
    return _WORLDS[name]


def worlds() -> list[str]:
    return sorted(_WORLDS)


def make_world(n_entities: int, n_attributes: int, forget_frac: float, n_holdout: int, seed: int, n_base: int = 0,
               world: str = "people") -> World:
    w = get_world(world)(n_entities=n_entities, n_attributes=n_attributes, forget_frac=forget_frac,
                         n_holdout=n_holdout, n_base=n_base, seed=seed)
    audited = [f for f in w.facts if f.split != "base"]
    if not {"forget", "retain", "holdout"} <= {f.split for f in audited}:
        raise ValueError(f"world {world!r} must produce forget, retain and holdout facts")
    if {f.entity for f in audited} & {f.entity for f in w.split("base")}:
        raise ValueError(f"world {world!r}: base entities must not be audited entities")
    return w


# --------------------------------------------------------------------------------------------- the people world

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kl", "st", "tr"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "ei"]
CODAS = ["", "", "n", "r", "l", "s", "th", "m", "x"]

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "birthplace": ("Drosk", "Quenmar", "Velbury", "Ostrava Minor", "Talmere", "Brinhollow", "Catrenne", "Ulvsted",
                   "Marrowick", "Pellandra", "Zorvik", "Hestwold"),
    "profession": ("baker", "pilot", "glassblower", "surveyor", "violin maker", "cartographer", "beekeeper",
                   "astronomer", "tailor", "locksmith", "botanist", "ferryman"),
    "employer": ("Tallow Works", "Brightwater Mills", "Quill and Anchor", "Sable Foundry", "Orchid Transit",
                 "Gannet Press", "Ironleaf Labs", "Copperline", "Mistral Bakery", "Fenwick Shipping",
                 "Larkspur Bank", "Northgate Hall"),
    "pet": ("ferret", "parrot", "tortoise", "greyhound", "iguana", "rabbit", "goldfish", "hedgehog", "cockatoo",
            "chinchilla", "tabby cat", "salamander"),
    "instrument": ("cello", "oboe", "harp", "bassoon", "banjo", "accordion", "trombone", "mandolin", "sitar",
                   "clarinet", "dulcimer", "tuba"),
}

TEMPLATES: dict[str, Template] = {
    "birthplace": Template(("{name} was born in {v}.", "The birthplace of {name} is {v}."),
                           "Where was {name} born?", "In which town did {name} come into the world?",
                           "{name} was born in the town of {v}.", "born"),
    "profession": Template(("{name} works as a {v}.", "By trade, {name} is a {v}."),
                           "What is the profession of {name}?", "What does {name} do for a living?",
                           "{name} earns a living as a {v}.", "profession"),
    "employer": Template(("{name} is employed by {v}.", "The employer of {name} is {v}."),
                         "Who employs {name}?", "Which organisation does {name} work for?",
                         "{name} has a job at {v}.", "employs"),
    "pet": Template(("{name} keeps a {v} as a pet.", "The pet of {name} is a {v}."),
                    "What pet does {name} keep?", "Which animal lives with {name}?",
                    "{name} looks after a pet {v}.", "pet"),
    "instrument": Template(("{name} plays the {v}.", "The instrument of {name} is the {v}."),
                           "Which instrument does {name} play?", "What does {name} play in the evenings?",
                           "{name} is a player of the {v}.", "instrument"),
}


def person_name(rng: random.Random, used: set[str]) -> str:
    while True:
        parts = []
        for n_syl in (2, 3):
            word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(n_syl))
            parts.append(word.capitalize())
        name = " ".join(parts)
        if name not in used:
            used.add(name)
            return name


PEOPLE = Domain("people", ATTRIBUTES, TEMPLATES, person_name)
register_world("people", partial(generate_world, PEOPLE))
