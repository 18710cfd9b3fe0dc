"""The unit every audit scores: one question/answer item (or one raw passage) of a forget/retain/holdout set."""

from __future__ import annotations

import string
from dataclasses import dataclass, field


@dataclass(frozen=True)
class QAItem:
    """One forget/retain row. `text` items (raw passages) have an empty question and the passage as answer."""

    question: str
    answer: str
    paraphrased_answer: str | None = None
    perturbed_answers: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    concept: str | None = None
    text: str | None = None
    line: int = 0  # 1-based line/row in the source file, for error messages and drill-down
    extra: tuple[tuple[str, str], ...] = field(default=())  # unknown fields kept verbatim

    @property
    def is_passage(self) -> bool:
        return not self.question and self.text is not None

    def as_text(self) -> str:
        """The item as one passage (MIA and relearning work on plain text)."""
        if self.text is not None and not self.question:
            return self.text
        return f"{self.question} {self.answer}"


@dataclass(frozen=True)
class PromptFormat:
    """How a question becomes a prompt. Answers are scored as the tokens after the prompt.

    The default matches the demo lab's training format; real models (TOFU-style chat fine-tunes) pass their own.
    """

    template: str = "Question: {question}\nAnswer:"
    answer_prefix: str = " "

    def __post_init__(self):
        if "{question}" not in self.template:
            raise ValueError("prompt template must contain '{question}'")
        # only {question} itself: other fields fail at format time, and '{question.attr}' reads attributes
        try:
            fields = [(f, c, spec) for _, f, spec, c in string.Formatter().parse(self.template) if f is not None]
        except ValueError as e:  # an unmatched brace
            raise ValueError(f"prompt template is not a valid format string ({e}); write literal braces as {{{{ }}}}") \
                from e
        bad = [f for f, conv, spec in fields if f != "question" or conv or spec]
        if bad:
            raise ValueError(f"prompt template may only contain the field {{question}}, found {{{bad[0]}}}; write "
                             "literal braces as {{ }}")

    def prompt(self, item_or_question) -> str:
        q = item_or_question.question if isinstance(item_or_question, QAItem) else item_or_question
        return self.template.format(question=q)

    def answer(self, answer: str) -> str:
        return self.answer_prefix + answer.strip()

    def pair(self, item: QAItem, answer: str | None = None) -> tuple[str, str]:
        """(prompt, answer continuation) for an item; passages are split after their first half of words."""
        if item.is_passage:
            words = item.text.split()
            cut = max(1, len(words) // 2)
            return " ".join(words[:cut]), " " + " ".join(words[cut:])
        return self.prompt(item), self.answer(item.answer if answer is None else answer)
