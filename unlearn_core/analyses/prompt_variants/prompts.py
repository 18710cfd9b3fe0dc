"""The prompt variants as text: what a black-box attacker sends, built once per split and shared by every model.

Every prompt goes through the audit's PromptFormat (`fmt.prompt` for the question turn, `fmt.answer` for an answer
continuation), so a chat format renders each variant with the checkpoint's own template, exactly as the plain probes
render the question. A variant that does not apply to an item gives None there (the caller records it as skipped).

- paraphrase: the item's `paraphrased_question` in the question's place; the answer continuation unchanged.
- few_shot: k retain QA pairs before the question. Plain format: each pair as a prior turn in the audit's own
  template (`fmt.prompt(q) + fmt.answer(a)`, pairs separated by a blank line), then the item's prompt: the shape a
  model trained on this template has seen. Chat format: the pairs as text inside the one user message (written
  "Question: q / Answer: a", a blank line apart, then the item's question), because PromptFormat renders a single
  user turn and a template renders multi-turn history in its own way; the assistant turn then answers directly.
  The pairs come from the retain split only, chosen per item by the seed. A retain pair whose text contains an
  answer of the forget or holdout split (word match, any case) is never drawn: by coincidence of values it would
  hand an answer over in the context. The filter only removes candidates, so it gives the attacker nothing.
- prime: an affirmative assistant prefix after the question (`fmt.prompt(item) + fmt.answer(prime)`), the answer
  scored after it with one space. The prime is the config's fixed text; an item whose answer occurs in it as a
  word is skipped for this variant (the prefix must carry no answer text).
- multiple choice: the question, then the gold and the perturbed answers as lettered options in an order shuffled
  by the seed, then an instruction; each option's letter is a continuation `fmt.answer(letter)`. The gold option is
  written as the item's paraphrased answer where it has one (TOFU's truth-ratio pairing: its perturbed answers
  are wrong versions of the paraphrased answer, so every option has one form and the odd one out is not the
  gold by its shape), else its answer. Options are written as the words where they differ: the leading words and
  the trailing punctuation all options share are cut ("X was born in the town of Zorvik." -> "Zorvik"), which
  keeps the prompt short enough for small models and changes no option's content.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass

from unlearn_core.data.items import PromptFormat, QAItem

VARIANTS = ("paraphrase", "few_shot", "prime")  # scored in p~: the evidence's max is over these
BEST = "best"  # per item, the max over VARIANTS (plain where none applies)
MC = "multiple_choice"  # gold-letter mass over the option letters: its own units
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MC_INSTRUCTION = "Answer with the letter of the correct option."
# the few-shot pairs of a chat format, written inside the user message (the plain default template's shape)
CHAT_SHOT = "Question: {question}\nAnswer: {answer}"

Pair = tuple[str, str]  # (prompt, answer continuation)


def paraphrase_pairs(items: list[QAItem], fmt: PromptFormat) -> list[Pair | None]:
    """(prompt, answer) with the paraphrased question; None where the item has none (or is a passage)."""
    out: list[Pair | None] = []
    for it in items:
        q = (it.paraphrased_question or "").strip()
        out.append(None if it.is_passage or not q else (fmt.prompt(q), fmt.answer(it.answer)))
    return out


def answer_pattern(answers: list[str]) -> re.Pattern | None:
    """One case-insensitive pattern matching any of the answers as whole words (None: no answers)."""
    words = sorted({a.strip() for a in answers if a and a.strip()}, key=len, reverse=True)
    if not words:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE)


def shot_pool(retain: list[QAItem], banned_answers: list[str]) -> list[int]:
    """Indices of the retain items a few-shot context may use: question/answer items whose question and answer
    contain none of the banned answers (the forget and holdout answers) as a word."""
    pat = answer_pattern(banned_answers)
    return [i for i, it in enumerate(retain)
            if not it.is_passage and it.question.strip() and it.answer.strip()
            and (pat is None or not pat.search(f"{it.question}\n{it.answer}"))]


def pick_shots(pool: list[int], k: int, seed: int, split: str, index: int,
               exclude: int | None = None) -> tuple[int, ...]:
    """k retain indices for one item, by the seed only (never by the item's answer); `exclude`: the item itself
    when the scored split is the retain split."""
    cands = [i for i in pool if i != exclude] if exclude is not None else pool
    if not cands or k <= 0:
        return ()
    rng = random.Random(f"prompt-variants-{seed}-{split}-{index}-shots")
    return tuple(rng.sample(cands, min(k, len(cands))))


def few_shot_context(shots: list[QAItem], fmt: PromptFormat) -> str:
    """The text the pairs become: prior turns in the plain template, or text for the chat user message."""
    if fmt.chat:
        return "".join(CHAT_SHOT.format(question=s.question.strip(), answer=s.answer.strip()) + "\n\n" for s in shots)
    return "".join(fmt.prompt(s) + fmt.answer(s.answer) + "\n\n" for s in shots)


def few_shot_pair(item: QAItem, shots: list[QAItem], fmt: PromptFormat) -> Pair:
    ctx = few_shot_context(shots, fmt)
    prompt, answer = fmt.pair(item)
    if item.is_passage:  # a passage: the context before its first half
        return ctx + prompt, answer
    if fmt.chat:
        return fmt.prompt(ctx + item.question), answer
    return ctx + prompt, answer


def few_shot_pairs(items: list[QAItem], retain: list[QAItem], pool: list[int], fmt: PromptFormat, k: int, seed: int,
                   split: str) -> tuple[list[Pair | None], tuple[tuple[int, ...], ...]]:
    """Per item (prompt, answer) with k retain pairs before it, and the retain indices used (empty: skipped)."""
    retain_index = {it.question: i for i, it in enumerate(retain)} if split == "retain" else {}
    pairs, used = [], []
    for n, it in enumerate(items):
        shots = pick_shots(pool, k, seed, split, n, retain_index.get(it.question))
        used.append(shots)
        pairs.append(few_shot_pair(it, [retain[i] for i in shots], fmt) if shots else None)
    return pairs, tuple(used)


def prime_pairs(items: list[QAItem], fmt: PromptFormat, prime: str) -> list[Pair | None]:
    """(question prompt + the prime as the start of the answer, " " + answer); None for passages and for items whose
    answer occurs in the prime."""
    out: list[Pair | None] = []
    for it in items:
        pat = answer_pattern([it.answer])
        if it.is_passage or pat is None or pat.search(prime):
            out.append(None)
        else:
            out.append((fmt.prompt(it) + fmt.answer(prime), " " + it.answer.strip()))
    return out


@dataclass(frozen=True)
class ChoicePrompt:
    """One item as a multiple-choice question: its prompt, the letter continuations, and which one is right."""

    prompt: str
    letters: tuple[str, ...]  # fmt.answer(letter) per option, in the order shown
    gold: int  # index of the gold option

    @property
    def chance(self) -> float:
        return 1.0 / len(self.letters)


def distinct_parts(options: list[str]) -> list[str]:
    """The options without the leading words and trailing non-word characters they all share (whole words only);
    the options unchanged where cutting would leave one empty or make two equal."""
    if len(options) < 2:
        return options
    prefix = os.path.commonprefix(options)
    while prefix and not prefix[-1].isspace():  # back off to a word boundary
        prefix = prefix[:-1]
    suffix = os.path.commonprefix([o[::-1] for o in options])[::-1]
    while suffix and (suffix[0].isalnum() or suffix[0] == "_"):  # never cut into a word
        suffix = suffix[1:]
    cut = [o[len(prefix): len(o) - len(suffix)].strip() for o in options]
    return cut if all(cut) and len(set(cut)) == len(set(options)) else options


def choice_prompt(item: QAItem, fmt: PromptFormat, seed: int, split: str, index: int) -> ChoicePrompt | None:
    """The seeded multiple-choice prompt of one item; None for passages and items without perturbed answers."""
    wrong = [a.strip() for a in item.perturbed_answers if a and a.strip()]
    if item.is_passage or not wrong:
        return None
    gold = (item.paraphrased_answer or item.answer).strip()
    options = distinct_parts([gold] + [w for w in dict.fromkeys(wrong) if w != gold][: len(LETTERS) - 1])
    order = list(range(len(options)))
    random.Random(f"prompt-variants-{seed}-{split}-{index}-choice").shuffle(order)
    lines = "\n".join(f"{LETTERS[j]}. {options[o]}" for j, o in enumerate(order))
    question = f"{item.question.strip()}\n{lines}\n{MC_INSTRUCTION}"
    return ChoicePrompt(fmt.prompt(question), tuple(fmt.answer(LETTERS[j]) for j in range(len(order))),
                        order.index(0))


def choice_prompts(items: list[QAItem], fmt: PromptFormat, seed: int, split: str) -> list[ChoicePrompt | None]:
    return [choice_prompt(it, fmt, seed, split, n) for n, it in enumerate(items)]
