"""One audit's checkpoints and data: inspection before loading, compatibility, memory budget, safe loading.

Everything that can be checked from config.json, tokenizer files and safetensors headers is checked BEFORE any
weights are read, so a wrong folder or a model too big for memory is refused in milliseconds with a message that
says what differs. Pickle weights are refused unless the user opts in; remote code is never trusted by default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from unlearn_core.analyses.spec import Shape
from unlearn_core.checkpoints.inspect import check_compatible, inspect_checkpoint
from unlearn_core.checkpoints.load import checkpoint_digest, load_model, load_tokenizer, load_weights
from unlearn_core.checkpoints.memory import pick_device, plan_resident
from unlearn_core.checkpoints.placement import MaxMemory, normalise_max_memory, remaining
from unlearn_core.checkpoints.source import CheckpointError, CheckpointInfo, resolve_source
from unlearn_core.data.items import PromptFormat
from unlearn_core.data.sets import load_items
from unlearn_core.model.arch import n_layers_from_config
from unlearn_core.types import AuditData, LoadedModel, ModelSet

# forget items under which the CLI and report.json warn that the intervals cannot mean much (the small demo labs
# use 20 or 40, the SmolLM2 CI lab 15; TOFU's forget01 split has 40)
SMALL_FORGET = 20


@dataclass(frozen=True)
class WorkspaceSpec:
    """What the user picked: paths only, so it is cheap to compare, hash and keep in session state."""

    original: str
    unlearned: tuple[tuple[str, str], ...]
    forget: str
    retain_only: str | None = None
    retain: str | None = None
    holdout: str | None = None
    device: str = "auto"
    allow_pickle: bool = False
    trust_remote_code: bool = False
    prompt_format: PromptFormat = field(default_factory=PromptFormat)
    max_memory: MaxMemory | None = None  # device_map="auto" budget; a dict or "0=70GiB,cpu=100GiB" is accepted
    resident: int | None = None  # checkpoints in memory at once; None = all when they fit, else as many as fit

    def __post_init__(self):
        object.__setattr__(self, "max_memory", normalise_max_memory(self.max_memory))
        if self.prompt_format.chat and self.prompt_format.chat_template is None:  # read once, then part of the data
            object.__setattr__(self, "prompt_format", with_chat_template(self.prompt_format, self.original,
                                                                         self.allow_pickle, self.trust_remote_code))
        if not self.unlearned:
            raise ValueError("at least one unlearned checkpoint is needed")
        names = [n for n, _ in self.unlearned]
        if len(set(names)) != len(names) or {"original", "retain_only"} & set(names):
            raise ValueError(f"unlearned names must be unique and not 'original'/'retain_only': {names}")
        if self.resident is not None and (isinstance(self.resident, bool) or not isinstance(self.resident, int)
                                          or self.resident < 2):
            raise ValueError(f"resident must be an int >= 2 (the original and one checkpoint) or None, "
                             f"got {self.resident!r}")

    def inspect(self) -> dict[str, CheckpointInfo]:
        """Every checkpoint inspected before any is refused, so a workspace with three wrong folders is told all
        three in one message, not one per run."""
        infos, problems = {}, {}
        todo = [("original", self.original, None), *((n, p, self.original) for n, p in self.unlearned)]
        if self.retain_only:
            todo.append(("retain_only", self.retain_only, self.original))
        for name, path, original in todo:
            try:
                infos[name] = inspect_checkpoint(path, self.allow_pickle, original=original)
            except CheckpointError as exc:
                problems[name] = exc
        if len(problems) == 1:
            raise next(iter(problems.values()))
        if problems:
            raise CheckpointError(f"{len(problems)} checkpoints cannot be used:\n" + "\n".join(
                f"  {name}: {exc}" for name, exc in problems.items()))
        check_compatible(infos["original"], {k: v for k, v in infos.items() if k != "original"})
        return infos

    def load_models(self) -> ModelSet:
        """Every checkpoint in memory when they fit; else the original plus as many as fit, the others loaded when
        an analysis reaches them (plan_resident, checkpoints.residency). The numbers are the same either way."""
        infos = self.inspect()
        device, dtype = pick_device(self.device, self.max_memory)
        k = plan_resident(infos, device, dtype, self.max_memory, self.resident)
        role = {n: "original" if n == "original" else "retain_only" if n == "retain_only" else "unlearned"
                for n in infos}
        loaded: dict[str, LoadedModel] = {}
        if k >= len(infos):
            for n, i in infos.items():  # under a budget, each checkpoint gets what the ones before it left
                budget = remaining(self.max_memory, [lm.model for lm in loaded.values()]) if self.max_memory else None
                loaded[n] = load_model(i, n, role[n], device, dtype, self.trust_remote_code, budget)
        else:
            from unlearn_core.checkpoints.residency import OnDemandModel, Residency

            def load(name: str, resident: list) -> object:
                budget = remaining(self.max_memory, resident) if self.max_memory else None
                return load_weights(infos[name], device, dtype, self.trust_remote_code, budget)

            residency = Residency(k, load, pinned=("original",))
            for n, i in infos.items():  # load_tokenizer refuses remote code before anything is read or hashed
                loaded[n] = OnDemandModel(n, role[n], load_tokenizer(i, self.trust_remote_code), i.path,
                                          checkpoint_digest(i), residency, i.n_params)
            residency.get("original")
        return ModelSet(loaded.pop("original"), {n: loaded[n] for n, _ in self.unlearned}, loaded.get("retain_only"))

    def deferred_models(self) -> ModelSet:
        """The checkpoints inspected (every refusal named now), hashed and sized from their folders, their weights
        loaded (load_models) only when an analysis must compute: a fully stored audit loads none. Loaded at once
        when the folders cannot say their depth or size (an unusual config, a hub id not cached)."""
        from unlearn_core.checkpoints.residency import DeferredModel, DeferredSet

        infos = self.inspect()
        try:
            layers = n_layers_from_config(json.loads((resolve_source(self.original) / "config.json").read_text()))
        except Exception:  # noqa: BLE001 - the loaded model says it instead
            return self.load_models()
        import torch

        device, dtype = pick_device(self.device, self.max_memory)
        deferred = DeferredSet(self.load_models, {
            "device": device.type, "dtype": str(dtype).split(".")[-1], "torch_threads": torch.get_num_threads(),
            "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None})
        role = {"original": "original", "retain_only": "retain_only"}
        models = {n: DeferredModel(n, role.get(n, "unlearned"), i.path, checkpoint_digest(i), i.n_params, layers,
                                   deferred) for n, i in infos.items()}
        return ModelSet(models.pop("original"), {n: models[n] for n, _ in self.unlearned}, models.get("retain_only"))

    def load_data(self, accept_partial: bool = False, warnings: list[str] | None = None) -> AuditData:
        """warnings: when a list, gets one line per kept-row or file-level warning of each file (a misspelt field,
        a skipped duplicate, a perturbed answer equal to the answer) and one for a forget set too small to judge."""
        def items(split, path):
            if not path:
                return ()
            report = load_items(path, accept_partial=accept_partial)
            if warnings is not None:
                warnings.extend(f"--{split} {Path(path).name}" + (f" line {w.line}" if w.line else "") +
                                f": {w.reason}" for w in report.warnings)
            return report.items

        data = AuditData(items("forget", self.forget), items("retain", self.retain), items("holdout", self.holdout),
                         self.prompt_format)
        if warnings is not None and len(data.forget) < SMALL_FORGET:
            warnings.append(f"--forget has {len(data.forget)} items (under {SMALL_FORGET}): every interval is wide "
                            "and a verdict from so few facts is weak; report.json's projection says how many units a "
                            "definite call would need")
        return data


def with_chat_template(fmt: PromptFormat, original: str, allow_pickle: bool = False,
                       trust_remote_code: bool = False) -> PromptFormat:
    """A chat format with the ORIGINAL checkpoint's chat template (its tokenizer's chat_template.jinja or the
    chat_template of tokenizer_config.json) and special tokens filled in; a clear error when it has none (never a
    silent fallback to a plain template)."""
    tok = load_tokenizer(inspect_checkpoint(original, allow_pickle), trust_remote_code)
    try:
        template = tok.get_chat_template()
    except ValueError as exc:
        raise CheckpointError(
            f"{original}: its tokenizer has no chat template (no chat_template.jinja, no chat_template in "
            "tokenizer_config.json), so prompts cannot be rendered in a chat format it was trained with. Add the "
            "template it was fine-tuned with to the original's folder, or audit with a plain prompt template "
            "(CLI: leave out --chat-template and give --prompt-template; the workspace page: switch off \"Use the "
            "checkpoint's chat template\")") from exc
    return fmt.with_chat_template(template, tok.special_tokens_map)


def lab_prompt_format(meta: dict) -> PromptFormat:
    """The prompt format a lab's models were trained with: its chat format (lab.json "prompt_format", the template
    itself read from the original's tokenizer when the workspace is built) or its plain "prompt_template"."""
    pf = meta.get("prompt_format")
    if isinstance(pf, dict) and pf.get("chat"):
        return PromptFormat.chat_format(system_prompt=pf.get("system_prompt"),
                                        user_template=pf.get("user_template", "{question}"))
    return PromptFormat(meta.get("prompt_template", PromptFormat.template))


def shape_from_folders(spec: WorkspaceSpec, data: AuditData) -> Shape | None:
    """What config defaults resolve against, from the original's config.json without loading it (None when it
    cannot be read: an unusual config or a hub id not cached; then ask the loaded model, jobs.shape_of)."""
    try:
        cfg = json.loads((resolve_source(spec.original) / "config.json").read_text())
        return Shape(n_layers_from_config(cfg), len(data.forget),
                     inspect_checkpoint(spec.original, spec.allow_pickle).n_params)
    except Exception:  # noqa: BLE001 - any unreadable config means: load the model and ask it
        return None


def lab_workspace(lab_dir: str | Path, unlearned: list[str] | None = None, device: str = "auto") -> WorkspaceSpec:
    """The demo lab as a workspace: every unlearned checkpoint, the retain-only reference and the data files."""
    lab_dir = Path(lab_dir)
    meta = json.loads((lab_dir / "lab.json").read_text())
    names = unlearned or [n for n in meta["checkpoints"] if n not in ("original", "retain_only", "base")]
    return WorkspaceSpec(
        original=str(lab_dir / "original"),
        unlearned=tuple((n, str(lab_dir / meta["checkpoints"][n]["path"])) for n in names),
        retain_only=str(lab_dir / "retain_only"),
        forget=str(lab_dir / meta["data"]["forget"]),
        retain=str(lab_dir / meta["data"]["retain"]),
        holdout=str(lab_dir / meta["data"]["holdout"]),
        device=device,
        prompt_format=lab_prompt_format(meta),
    )


def planted_truth(spec: WorkspaceSpec, lab_json: str | Path | None = None) -> dict[str, str]:
    """{checkpoint name in this workspace: "suppressed" | "deleted"} for checkpoints that are folders of a demo lab
    (matched by resolved path, so any display name works); {} when there is no lab.json (real checkpoints)."""
    meta_path = Path(lab_json) if lab_json else Path(spec.original).parent / "lab.json"
    if not meta_path.is_file():
        return {}
    try:
        cps = json.loads(meta_path.read_text())["checkpoints"]
    except (ValueError, KeyError, TypeError):
        return {}
    by_path = {str((meta_path.parent / c["path"]).resolve()): c.get("ground_truth") for c in cps.values()}
    named = [*spec.unlearned, *((("retain_only", spec.retain_only),) if spec.retain_only else ())]
    return {name: by_path[key] for name, path in named
            if by_path.get(key := str(Path(path).resolve())) in ("suppressed", "deleted")}
