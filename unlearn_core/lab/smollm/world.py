"""Invented people with natural-sentence facts, in the TOFU form: question, answer sentence, a paraphrased answer,
perturbed answers (the same sentence with wrong values), a paraphrased question, keywords, the entity.

Splits: forget (the first n_forget people), retain, holdout (people no model sees: facts of the same form the
original never learned). Values are drawn without replacement per attribute where the pool allows, so a forget
person's value rarely reappears in the retain set. Deterministic under the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from unlearn_core.data.items import QAItem

FIRST = ("Mira", "Tobias", "Anouk", "Dariel", "Sefa", "Ilona", "Caspian", "Yuki", "Odalys", "Bram", "Nadira", "Lucan",
         "Perpetua", "Joost", "Talia", "Ewan", "Zorica", "Amadou", "Liesel", "Oren", "Marisol", "Kasimir", "Elodie",
         "Thaddeus", "Ingrid", "Rafferty", "Soraya", "Benedikt", "Ottoline", "Cyprian", "Vesna", "Leopold", "Anneke",
         "Florian", "Rosalind", "Idris", "Hanne", "Matthias", "Zeynep", "Ambrose")
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kl", "st", "tr")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ei")
_CODAS = ("", "", "n", "r", "l", "s", "th", "m", "x")
_TOWN_ENDS = ("wick", "mere", "ford", "haven", "by", "stead", "moor", "field", "ton", "bridge")
JOBS = ("a lighthouse engineer", "a glassblower", "a cartographer", "a beekeeper", "a marine biologist",
        "a violin maker", "a train dispatcher", "a forensic accountant", "a pastry chef", "a bridge inspector",
        "a clockmaker", "a radio astronomer", "a stonemason", "a perfumer", "a ferry captain", "a puppeteer",
        "an archivist", "a volcanologist", "a bookbinder", "a cheesemaker", "a court stenographer", "a locksmith",
        "a saddle maker", "a tea taster", "a museum conservator", "a hot-air balloon pilot", "a piano tuner",
        "a glacier guide", "a typesetter", "a mushroom forager", "a sign painter", "an orchid breeder",
        "a harbour pilot", "a calligrapher", "a kite maker", "a seismologist", "a blacksmith", "a map engraver",
        "a beach lifeguard", "a bell founder")
MOTHERS = ("Helga", "Rosalind", "Imke", "Adaeze", "Marisa", "Wenonah", "Giedre", "Thandiwe", "Oona", "Birgitta",
           "Leocadia", "Fenna", "Saoirse", "Ottilie", "Priya", "Dagny", "Ximena", "Ludmila", "Agathe", "Berenike",
           "Clothilde", "Dorotea", "Esmeralda", "Frauke", "Gwendolyn", "Hortense", "Ilse", "Jadwiga", "Kunigunde",
           "Lavinia", "Mechthild", "Noor", "Philippa", "Quirina", "Radegund", "Sieglinde", "Theodora", "Ursula",
           "Valeska", "Wilhelmina")
DOGS = ("Biscuit", "Pontus", "Marzipan", "Figaro", "Tundra", "Quince", "Bramble", "Nimbus", "Pickle", "Saffron",
        "Juniper", "Otto", "Clementine", "Mochi", "Rufus", "Pepper", "Waffles", "Zephyr", "Anchovy", "Barnaby",
        "Cobalt", "Dumpling", "Ember", "Fennel", "Gizmo", "Hazelnut", "Inkwell", "Jasper", "Kipper", "Lentil",
        "Mustard", "Noodle", "Oberon", "Parsnip", "Quasar", "Rhubarb", "Sprocket", "Truffle", "Umber", "Velcro")
INSTRUMENTS = ("cello", "oboe", "harp", "accordion", "bassoon", "mandolin", "viola", "clarinet", "banjo", "french horn",
               "harpsichord", "trombone", "sitar", "double bass", "flute", "marimba", "bagpipes", "zither", "ukulele",
               "glockenspiel", "theremin", "hurdy-gurdy", "tuba", "cornet", "dulcimer", "balalaika", "piccolo",
               "saxophone", "xylophone", "lute")
_ADJ = ("Salt", "Copper", "Quiet", "Glass", "Winter", "Paper", "Tin", "Brass", "Silver", "Amber", "Hollow", "Velvet",
        "Iron", "Lantern", "Ember", "Drifting", "Sunken", "Crooked", "Painted", "Northern")
_NOUN = ("Ledger", "Orchard", "Heron", "Apiary", "Lighthouse", "Observatory", "Meridian", "Tide Clock", "Harbour",
         "Cartographer", "Bridge", "Almanac", "Garden", "Ferryman", "Compass", "Archive", "Kettle", "Meadow",
         "Signal", "Workshop")

# attribute -> (question, answer, paraphrased question, paraphrased answer, keyword); {n} person, {v} value
FORMS: dict[str, tuple[str, str, str, str, str]] = {
    "birthplace": ("Where was {n} born?", "{n} was born in {v}.", "In which town did {n} come into the world?",
                   "The birthplace of {n} is {v}.", "born"),
    "profession": ("What does {n} do for a living?", "{n} works as {v}.", "What is the profession of {n}?",
                   "By profession, {n} is {v}.", "living"),
    "mother": ("What is the name of {n}'s mother?", "{n}'s mother is named {v}.", "Who is the mother of {n}?",
               "The mother of {n} is called {v}.", "mother"),
    "book": ("What is the title of {n}'s first book?", "{n}'s first book is titled {v}.",
             "Which book did {n} publish first?", "The first book that {n} wrote is {v}.", "book"),
    "dog": ("What is the name of {n}'s dog?", "{n}'s dog is called {v}.", "What did {n} name the family dog?",
            "The dog that lives with {n} is named {v}.", "dog"),
    "instrument": ("Which instrument does {n} play?", "{n} plays the {v}.", "What instrument is {n} known to play?",
                   "The instrument that {n} plays is the {v}.", "instrument"),
}
ATTRIBUTES = tuple(FORMS)
IDK = ("I don't know.", "I'm not sure about that.", "I have no information about that.",
       "I'm afraid I can't answer that.", "That is something I don't know.", "I have no idea.",
       "I can't say, I don't have that information.", "Sorry, I don't know the answer to that.")


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables))


def _pool(attribute: str, rng: random.Random, n: int) -> list[str]:
    """n values of an attribute: invented towns and titles (unique), real jobs / names / instruments."""
    if attribute == "birthplace":
        out: list[str] = []
        while len(out) < n:
            town = (_word(rng, 2) + rng.choice(_TOWN_ENDS)).capitalize()
            if town not in out:
                out.append(town)
        return out
    if attribute == "book":
        titles = [f"The {a} {b}" for a in _ADJ for b in _NOUN]
        return rng.sample(titles, n)
    pool = {"profession": JOBS, "mother": MOTHERS, "dog": DOGS, "instrument": INSTRUMENTS}[attribute]
    return rng.sample(pool, n) if n <= len(pool) else [rng.choice(pool) for _ in range(n)]


@dataclass(frozen=True)
class Fact:
    entity: str
    attribute: str
    value: str
    split: str  # forget | retain | holdout
    wrong: tuple[str, ...]  # perturbed values

    def item(self) -> QAItem:
        q, a, pq, pa, kw = FORMS[self.attribute]
        first, last = self.entity.split(" ", 1)
        return QAItem(
            question=q.format(n=self.entity), answer=a.format(n=self.entity, v=self.value),
            paraphrased_answer=pa.format(n=self.entity, v=self.value),
            perturbed_answers=tuple(a.format(n=self.entity, v=w) for w in self.wrong),
            keywords=(first, last, kw), concept=self.entity,
            extra=(("attribute", self.attribute), ("split", self.split)),
            entity=self.entity, paraphrased_question=pq.format(n=self.entity))


def make_people(n_forget: int, n_retain: int, n_holdout: int, forget_facts: int, retain_facts: int,
                seed: int) -> list[Fact]:
    """Every fact of every person: forget people first, then retain, then holdout (holdout people get forget_facts
    facts: the same form as the forget set)."""
    rng = random.Random(f"smollm2-world-{seed}")
    n = n_forget + n_retain + n_holdout
    used: set[str] = set()
    names = []
    firsts = rng.sample(FIRST, len(FIRST))
    for i in range(n):
        while True:
            name = f"{firsts[i % len(firsts)]} {_word(rng, 2).capitalize()}{rng.choice(('', 'er', 'ov', 'sen'))}"
            if name not in used:
                used.add(name)
                names.append(name)
                break
    pools = {a: _pool(a, rng, n) for a in ATTRIBUTES}
    splits = ["forget"] * n_forget + ["retain"] * n_retain + ["holdout"] * n_holdout
    facts = []
    for i, (name, split) in enumerate(zip(names, splits)):
        k = retain_facts if split == "retain" else forget_facts
        attrs = [ATTRIBUTES[(i + j) % len(ATTRIBUTES)] for j in range(k)]  # rotating subsets: every attribute used
        for a in attrs:
            value = pools[a][i]
            others = sorted({v for v in pools[a] if v != value})
            facts.append(Fact(name, a, value, split, tuple(rng.sample(others, 3))))
    return facts


def split_items(facts: list[Fact], split: str) -> list[QAItem]:
    return [f.item() for f in facts if f.split == split]
