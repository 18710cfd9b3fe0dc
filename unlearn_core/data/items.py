"""The unit every audit scores: one question/answer item (or one raw passage) of a forget/retain/holdout set."""

from __future__ import annotations

import string
from dataclasses import asdict, dataclass, field, replace


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
    entity: str | None = None  # who or what the fact is about (TOFU's author, the lab's person): the bootstrap unit
    paraphrased_question: str | None = None  # the question in other words (a prompt-variant attack)

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

    Chat mode (`chat=True`): the prompt is the checkpoint's own chat template rendered over [system message (when
    `system_prompt` is not None), user message = `template` filled in] with the generation prompt, exactly what
    `tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)` gives. The template text and
    the variables it reads (the tokenizer's special tokens, a preset's extras such as Llama 3's date_string) are held
    here, so the format is self-contained and hashable: another template or system prompt is other data (another
    results-store key). `system_prompt=None` passes no system message, and a template may then write its own default
    (SmolLM2's does); `chat_template=None` means "not read yet": `run.workspace` reads it from the original
    checkpoint's tokenizer (`with_chat_template`).
    """

    template: str = "Question: {question}\nAnswer:"
    answer_prefix: str = " "
    chat: bool = False
    system_prompt: str | None = None  # chat: the system message; None: none passed (the template's own default)
    chat_template: str | None = None  # chat: the Jinja text of the original checkpoint's chat template
    template_vars: tuple[tuple[str, str | tuple[str, ...]], ...] = ()  # chat: what else the template reads

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
        if not self.chat and (self.system_prompt is not None or self.chat_template is not None or self.template_vars):
            raise ValueError("system_prompt, chat_template and template_vars apply to the chat format only (chat=True)")
        object.__setattr__(self, "template_vars", tuple(sorted(
            (str(k), tuple(v) if isinstance(v, list) else v) for k, v in dict(self.template_vars).items())))

    @classmethod
    def chat_format(cls, system_prompt: str | None = None, chat_template: str | None = None,
                    template_vars=(), user_template: str = "{question}") -> PromptFormat:
        """The chat format: the user message is the question (answers follow the generation prompt directly)."""
        return cls(user_template, "", True, system_prompt, chat_template,
                   tuple(dict(template_vars).items()) if template_vars else ())

    def with_chat_template(self, chat_template: str, template_vars) -> PromptFormat:
        """This chat format with the template text and its variables (a tokenizer's special tokens) filled in."""
        return replace(self, chat_template=chat_template,
                       template_vars=tuple({**dict(template_vars), **dict(self.template_vars)}.items()))

    def key(self) -> dict:
        """What the data hash covers: the plain format's two fields as before chat mode existed (stored results keep
        their keys), every field in chat mode."""
        d = asdict(self)
        return d if self.chat else {k: d[k] for k in ("template", "answer_prefix")}

    def describe(self) -> str:
        """One line for tables and warnings: the template, or which chat template with which system prompt."""
        if not self.chat:
            return self.template
        system = "no system message (the template's own default, if any)" if self.system_prompt is None else \
            f"system prompt {self.system_prompt!r}"
        user = "" if self.template == "{question}" else f", user message {self.template!r}"
        return f"the checkpoint's chat template, {system}{user}"

    def messages(self, question: str) -> list[dict[str, str]]:
        msgs = [] if self.system_prompt is None else [{"role": "system", "content": self.system_prompt}]
        return msgs + [{"role": "user", "content": self.template.format(question=question)}]

    def prompt(self, item_or_question) -> str:
        q = item_or_question.question if isinstance(item_or_question, QAItem) else item_or_question
        if not self.chat:
            return self.template.format(question=q)
        if self.chat_template is None:
            raise ValueError("the chat format has no chat template yet: it is read from the original checkpoint's "
                             "tokenizer when the workspace is built (run.workspace.WorkspaceSpec)")
        return _render_chat(self.chat_template, self.messages(q), self.template_vars)

    def answer(self, answer: str) -> str:
        return self.answer_prefix + answer.strip()

    def pair(self, item: QAItem, answer: str | None = None) -> tuple[str, str]:
        """(prompt, answer continuation) for an item; passages are split after their first half of words."""
        if item.is_passage:
            words = item.text.split()
            cut = max(1, len(words) // 2)
            return " ".join(words[:cut]), " " + " ".join(words[cut:])
        return self.prompt(item), self.answer(item.answer if answer is None else answer)


def _render_chat(chat_template: str, messages: list[dict], template_vars) -> str:
    """transformers' own renderer, called as tokenizer.apply_chat_template calls it (special tokens as variables,
    add_generation_prompt=True), so the text is the tokenizer's to the character."""
    from transformers.utils.chat_template_utils import render_jinja_template

    variables = {k: list(v) if isinstance(v, tuple) else v for k, v in template_vars}
    rendered, _ = render_jinja_template(conversations=[messages], chat_template=chat_template,
                                        add_generation_prompt=True, **variables)
    return rendered[0]


# Prompt formats of open-unlearning's (OU) model configs (configs/model/*.yaml, template_args, read at
# github.com/locuslab/open-unlearning; OU's src/data/utils.py preprocess_chat_instance builds the prompts):
# - tofu-llama2: Llama-2-7b-chat-hf.yaml, apply_chat_template False, user_start_tag "[INST] ", user_end_tag
#   " [/INST]", asst_start_tag "" (the TOFU paper's format; tokenised with the tokenizer's BOS);
# - tofu-llama3: Llama-3.1-8B-Instruct.yaml, apply_chat_template True, system_prompt "You are a helpful
#   assistant.", date_string "10 Apr 2025" (passed to the template). Llama-3.2-1B-Instruct.yaml writes the same
#   text by hand (apply_chat_template False; its "<|begin_of_text|>" then gets a second BOS from the tokenizer, which
#   this project does not add: scoring.prompt_ids);
# - muse: Llama-2-7b-hf.yaml (the MUSE experiments), user_start_tag "Question: ", user_end_tag "\n",
#   asst_start_tag "Answer: ": here "Question: {question}\nAnswer:" with the answer after one space.
PROMPT_PRESETS: dict[str, dict] = {
    "tofu-llama2": {"template": "[INST] {question} [/INST]", "answer_prefix": ""},
    "tofu-llama3": {"chat": True, "system_prompt": "You are a helpful assistant.",
                    "template_vars": (("date_string", "10 Apr 2025"),)},
    "muse": {"template": "Question: {question}\nAnswer:", "answer_prefix": " "},
}


def preset_format(name: str, system_prompt: str | None = None) -> PromptFormat:
    """A preset's prompt format (chat presets unresolved: the template is read from the original checkpoint);
    system_prompt overrides a chat preset's."""
    if name not in PROMPT_PRESETS:
        raise ValueError(f"unknown prompt preset {name!r}; choose one of {sorted(PROMPT_PRESETS)}")
    p = PROMPT_PRESETS[name]
    if p.get("chat"):
        return PromptFormat.chat_format(p["system_prompt"] if system_prompt is None else system_prompt,
                                        template_vars=p.get("template_vars", ()))
    if system_prompt is not None:
        raise ValueError(f"prompt preset {name!r} is not a chat format: a system prompt does not apply")
    return PromptFormat(p["template"], p["answer_prefix"])
