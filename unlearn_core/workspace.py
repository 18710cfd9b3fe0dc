"""One audit's checkpoints and data: inspection before loading, compatibility, memory budget, safe loading.

Everything that can be checked from config.json, tokenizer files and safetensors headers is checked BEFORE any
weights are read, so a wrong folder or a model too big for memory is refused in milliseconds with a message that
says what differs. Pickle weights are refused unless the user opts in; remote code is never trusted by default.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from unlearn_core import arch
from unlearn_core.data import load_items
from unlearn_core.hashing import hash_checkpoint
from unlearn_core.items import PromptFormat
from unlearn_core.placement import (
    MaxMemory,
    accelerate_max_memory,
    budget_bytes,
    describe_budget,
    gpu_indices,
    normalise_max_memory,
    remaining,
)
from unlearn_core.types import AuditData, LoadedModel, ModelSet

if TYPE_CHECKING:
    from unlearn_core.adapters import AdapterInfo

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "vocab.txt",
                   "spiece.model")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked; the message says why and what to do."""


class IncompatibleCheckpoints(CheckpointError):
    pass


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    model_type: str
    architectures: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]] = field(repr=False)
    n_params: int
    vocab: dict[str, int] = field(repr=False)
    has_remote_code: bool
    weight_format: str  # safetensors | pickle
    adapter: AdapterInfo | None = None  # a PEFT LoRA adapter folder: its base, rank (unlearn_core.adapters)
    tokenizer_path: str | None = None  # where the tokenizer comes from when not `path` (a Trainer checkpoint-N/)


def resolve_source(source: str | Path) -> Path:
    """A local folder, or a hub id found in the local Hugging Face cache (no network is ever required)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{source}: is a file; expected a checkpoint folder with config.json and weights")
    text = str(source)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(text, local_files_only=True))
        except Exception as exc:  # the hub client raises several types for "not cached"
            raise CheckpointError(
                f"{source}: not a local folder, and hub id {text!r} is not in the local Hugging Face cache "
                f"({type(exc).__name__}). Download it first (huggingface-cli download {text}) or give a folder."
            ) from exc
    raise CheckpointError(f"{source}: folder not found")


MAX_SAFETENSORS_HEADER = 100_000_000  # the format's own limit; a bigger length field is a corrupt or hostile file


def _safetensors_shapes(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Tensor shapes and dtypes from a safetensors header, without reading weights; CheckpointError if malformed."""
    with path.open("rb") as fh:
        head = fh.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 0 < n <= min(MAX_SAFETENSORS_HEADER, path.stat().st_size - 8):
            raise CheckpointError(f"{path}: not a safetensors file (header length {n} does not fit the file)")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
        out = {}
        for k, v in header.items():
            if k == "__metadata__":
                continue
            shape, dtype = v["shape"], v["dtype"]
            if not (isinstance(shape, list) and all(type(d) is int and 0 <= d < 2**48 for d in shape)
                    and isinstance(dtype, str)):
                raise ValueError(f"tensor {k!r} has shape {shape!r} and dtype {dtype!r}")
            out[k] = (tuple(shape), dtype)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors header ({type(exc).__name__}: {exc})") from exc
    return out


def inspect_checkpoint(source: str | Path, allow_pickle: bool = False,
                       original: str | Path | None = None) -> CheckpointInfo:
    """original: the base a LoRA adapter folder is merged into when its own base is not here, and the tokenizer of
    a folder that ships none (Trainer checkpoint-N/ folders often hold weights only)."""
    path = resolve_source(source)
    from unlearn_core.adapters import inspect_adapter, is_adapter_folder

    if is_adapter_folder(path):
        return inspect_adapter(path, allow_pickle, original)
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        from unlearn_core.series import is_series_folder

        if is_series_folder(path):
            raise CheckpointError(f"{path}: a series of checkpoint-N/ folders, not one checkpoint; audit it as a "
                                  "series (CLI: --series NAME=DIR; the Training dynamics page)")
        raise CheckpointError(f"{path}: no config.json; this is not a Hugging Face model folder")
    try:
        cfg = json.loads(cfg_file.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{cfg_file}: invalid JSON ({exc})") from exc
    st_files = sorted(path.glob("*.safetensors"))
    pickle_files = sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    shapes: dict[str, tuple[int, ...]] = {}
    n_params = 0
    if st_files:
        for f in st_files:
            for k, (shape, _dtype) in _safetensors_shapes(f).items():
                shapes[k] = shape
                n_params += int(torch.Size(shape).numel())
        fmt = "safetensors"
    elif pickle_files:
        if not allow_pickle:
            names = ", ".join(p.name for p in pickle_files[:3])
            raise CheckpointError(
                f"{path}: weights are pickle files only ({names}). Loading pickle can run arbitrary code; convert "
                "them to safetensors, or opt in with allow_pickle=True (CLI: --allow-pickle) if you trust the source."
            )
        fmt = "pickle"
    else:
        raise CheckpointError(f"{path}: no weight files (*.safetensors) found")
    vocab = {}
    tok_path = path
    if original is not None and not any((path / f).is_file() for f in TOKENIZER_FILES):
        tok_path = resolve_source(original)
    try:
        from transformers import AutoTokenizer

        vocab = AutoTokenizer.from_pretrained(tok_path).get_vocab()
    except Exception as exc:  # tokenizer formats vary; report what the library said
        raise CheckpointError(f"{tok_path}: cannot load the tokenizer ({type(exc).__name__}: {exc})") from exc
    return CheckpointInfo(str(path), cfg.get("model_type", "?"), tuple(cfg.get("architectures") or ()), shapes,
                          n_params, vocab, bool(cfg.get("auto_map")), fmt,
                          tokenizer_path=None if tok_path == path else str(tok_path))


def compatibility_problems(ref: CheckpointInfo, other: CheckpointInfo) -> list[str]:
    """Every difference that makes a side-by-side comparison meaningless, in words."""
    out = []
    if ref.architectures != other.architectures or ref.model_type != other.model_type:
        out.append(f"architecture differs: {ref.model_type} {list(ref.architectures)} vs "
                   f"{other.model_type} {list(other.architectures)}")
    if ref.vocab != other.vocab:
        only_a = len(set(ref.vocab) - set(other.vocab))
        only_b = len(set(other.vocab) - set(ref.vocab))
        moved = sum(1 for t, i in ref.vocab.items() if t in other.vocab and other.vocab[t] != i)
        out.append(f"tokenizer vocabulary differs: {len(ref.vocab)} vs {len(other.vocab)} tokens "
                   f"({only_a} only in the first, {only_b} only in the second, {moved} with other ids)")
    if ref.shapes and other.shapes:
        missing = sorted(set(ref.shapes) ^ set(other.shapes))
        if missing:
            out.append(f"parameter names differ: {len(missing)} not in both (e.g. {missing[0]})")
        diff = [k for k in ref.shapes if k in other.shapes and ref.shapes[k] != other.shapes[k]]
        if diff:
            k = diff[0]
            out.append(f"parameter shapes differ in {len(diff)} tensors (e.g. {k}: {list(ref.shapes[k])} vs "
                       f"{list(other.shapes[k])})")
    return out


def check_compatible(ref: CheckpointInfo, others: dict[str, CheckpointInfo]) -> None:
    msgs = [f"{name} ({info.path}) vs original: " + "; ".join(p)
            for name, info in others.items() if (p := compatibility_problems(ref, info))]
    if msgs:
        raise IncompatibleCheckpoints("checkpoints are not comparable:\n" + "\n".join(msgs))


def pick_device(device: str = "auto", max_memory: MaxMemory | None = None) -> tuple[torch.device, torch.dtype]:
    """auto: CUDA in bf16 when present, else CPU in fp32 (bf16 matmuls are slow and lossy on most CPUs). With a
    max_memory budget: its first GPU (where inputs go), or the CPU when it names none."""
    if max_memory:
        gpus = gpu_indices(max_memory)
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus and device == "cpu":
            raise CheckpointError(f"device 'cpu' asked for, but max_memory gives GPU {gpus[0]} a budget")
        if not gpus and device.startswith("cuda"):
            raise CheckpointError("device 'cuda' asked for, but max_memory names no GPU (only cpu)")
        if any(g >= n for g in gpus):
            raise CheckpointError(f"max_memory names GPU {max(gpus)}, but this machine has {n} CUDA device(s)")
        device = f"cuda:{gpus[0]}" if gpus else "cpu"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CheckpointError("device 'cuda' asked for, but no CUDA device is available")
    dev = torch.device(device)
    return dev, (torch.bfloat16 if dev.type == "cuda" else torch.float32)


def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def weight_bytes(infos: dict[str, CheckpointInfo], dtype: torch.dtype) -> dict[str, int]:
    """Bytes of each checkpoint's weights in `dtype` (params x bytes; a LoRA adapter counts its base)."""
    size = torch.tensor([], dtype=dtype).element_size()
    return {n: i.n_params * size for n, i in infos.items()}


def _gib(b: float) -> str:
    return f"{b / 2**30:.1f}" if b >= 2**30 else f"{b / 2**30:.3f}"


def memory_estimate(infos: dict[str, CheckpointInfo], device: torch.device, dtype: torch.dtype,
                    max_memory: MaxMemory | None = None, resident: int | None = None) -> str:
    """One line said before loading, so a user waits minutes only for what fits: checkpoints resident at once x
    params x dtype bytes, against free memory on the device or the max_memory budget. resident: how many stay in
    memory at once when fewer than all (plan_resident)."""
    sizes, n = weight_bytes(infos, dtype), len(infos)
    where = (f"spread over {describe_budget(max_memory)} (budget {_gib(budget_bytes(max_memory))} GiB)"
             if max_memory else f"on {device} ({_gib(available_bytes(device))} GiB free)")
    dt = str(dtype).replace("torch.", "")
    if resident is not None and resident < n:
        at_once = _gib(_need(list(sizes.values()), resident))
        return (f"loading {n} checkpoints one at a time (about {_gib(sum(sizes.values()))} GiB in {dt} for all) "
                f"{where}: at most {resident} resident, about {at_once} GiB with a working copy; the original stays, "
                "each other checkpoint is loaded when an analysis reaches it (slower: every analysis reads it again)")
    return f"loading {n} checkpoint{'s' if n != 1 else ''}: about {_gib(sum(sizes.values()))} GiB in {dt} {where}"


def check_memory(infos: dict[str, CheckpointInfo], device: torch.device, dtype: torch.dtype,
                 headroom: float = 0.8, overhead: float = 1.2, max_memory: MaxMemory | None = None) -> int:
    """Estimated bytes for all weights (+20% for activations) against `headroom` of free memory, or against the
    whole max_memory budget when one is given (the user sized it); refuses early."""
    per = {n: int(b * overhead) for n, b in weight_bytes(infos, dtype).items()}
    need = sum(per.values())
    have, room = (budget_bytes(max_memory), 1.0) if max_memory else (available_bytes(device), headroom)
    if need > room * have:
        detail = ", ".join(f"{n} {b / 2**30:.1f} GiB" for n, b in per.items())
        where = (f"in the max_memory budget ({describe_budget(max_memory)})" if max_memory else f"on {device}")
        fix = ("Raise the budget (CLI: --max-memory), load fewer checkpoints at once" if max_memory else
               "Load fewer checkpoints at once, spread them over devices (CLI: --max-memory)")
        raise CheckpointError(
            f"not enough memory {where}: the {len(infos)} checkpoints need about {need / 2**30:.1f} GiB "
            f"({detail}) in {str(dtype).replace('torch.', '')}, but only {have / 2**30:.1f} GiB is "
            f"{'budgeted' if max_memory else 'free'}. {fix}, or use a machine with more memory."
        )
    return need


def _need(per: list[int], k: int) -> int:
    """Bytes with the k largest checkpoints resident, plus one working copy of the largest when not all are: the
    copy relearning fine-tunes and quantization rounds is made while its checkpoint is resident."""
    top = sorted(per, reverse=True)
    return sum(top[:k]) + (top[0] if k < len(top) else 0)


def plan_resident(infos: dict[str, CheckpointInfo], device: torch.device, dtype: torch.dtype,
                  max_memory: MaxMemory | None = None, resident: int | None = None, headroom: float = 0.8,
                  overhead: float = 1.2) -> int:
    """How many checkpoints stay in memory at once. resident=None: all of them when they fit (check_memory), else
    as many as fit, at least 2 (the original and the checkpoint an analysis is on); the others are loaded when an
    analysis reaches them (unlearn_core.residency). CheckpointError when even two do not fit, or when `resident`
    asks for more than fits."""
    n = len(infos)
    if resident is not None and (isinstance(resident, bool) or not isinstance(resident, int) or resident < 2):
        raise CheckpointError(f"resident must be an int >= 2 (the original and one checkpoint), got {resident!r}")
    k = n if resident is None else min(resident, n)
    if k == n:
        try:
            check_memory(infos, device, dtype, headroom, overhead, max_memory)
            return n
        except CheckpointError as exc:
            if resident is not None:
                raise
            refused = exc
    per = [int(b * overhead) for b in weight_bytes(infos, dtype).values()]
    have, room = (budget_bytes(max_memory), 1.0) if max_memory else (available_bytes(device), headroom)
    fits = [j for j in range(2, k + 1) if _need(per, j) <= room * have]
    if resident is not None and resident < n:
        if k not in fits:
            raise CheckpointError(
                f"not enough memory for {k} checkpoints at once: about {_need(per, k) / 2**30:.1f} GiB (the {k} "
                f"largest and one working copy) in {str(dtype).replace('torch.', '')}, but only "
                f"{have / 2**30:.1f} GiB is {'budgeted' if max_memory else 'free'}. Keep fewer resident "
                "(CLI: --resident), or use a machine with more memory.")
        return k
    if not fits:
        raise CheckpointError(f"{refused} Even one checkpoint at a time beside the original (about "
                              f"{_need(per, 2) / 2**30:.1f} GiB with a working copy) does not fit.") from refused
    return max(fits)


def load_model(info: CheckpointInfo, name: str, role: str, device: torch.device, dtype: torch.dtype,
               trust_remote_code: bool = False, max_memory: MaxMemory | None = None) -> LoadedModel:
    """max_memory: spread the weights with accelerate's device_map="auto" within that budget instead of moving
    the whole model to `device` (a checkpoint larger than one device); inputs then go to scoring.input_device."""
    _refuse_remote_code(info, trust_remote_code)
    digest = checkpoint_digest(info)
    model = load_weights(info, device, dtype, trust_remote_code, max_memory)
    return LoadedModel(name, role, model, load_tokenizer(info, trust_remote_code), info.path, digest)


def checkpoint_digest(info: CheckpointInfo) -> str:
    """The results-store key of a checkpoint's weights (a LoRA adapter is hashed with its base's hash)."""
    if info.adapter is not None:
        from unlearn_core.adapters import adapter_hash

        return adapter_hash(info.adapter)
    return hash_checkpoint(info.path)


def _refuse_remote_code(info: CheckpointInfo, trust_remote_code: bool) -> None:
    if info.has_remote_code and not trust_remote_code:
        raise CheckpointError(f"{info.path}: the config asks for custom code (auto_map); refusing to run it. "
                              "Opt in with trust_remote_code=True (CLI: --trust-remote-code) if you trust it.")


def load_tokenizer(info: CheckpointInfo, trust_remote_code: bool = False):
    """The checkpoint's tokenizer (an adapter's own, else its base's), with a pad token."""
    from transformers import AutoTokenizer

    _refuse_remote_code(info, trust_remote_code)
    if info.adapter is not None:
        from unlearn_core.adapters import tokenizer_dir

        src = tokenizer_dir(info.adapter)
    else:
        src = info.tokenizer_path or info.path
    tok = AutoTokenizer.from_pretrained(src, trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_weights(info: CheckpointInfo, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False,
                 max_memory: MaxMemory | None = None):
    """The model in eval mode, frozen, with fused activations; placed on `device` or spread within max_memory."""
    from transformers import AutoModelForCausalLM

    _refuse_remote_code(info, trust_remote_code)
    if info.adapter is not None:
        from unlearn_core.adapters import load_merged

        model, _tok = load_merged(info, device, dtype, trust_remote_code, max_memory)
    else:
        placed = {"device_map": "auto", "max_memory": accelerate_max_memory(max_memory)} if max_memory else {}
        model = AutoModelForCausalLM.from_pretrained(
            info.path, dtype=dtype, use_safetensors=info.weight_format == "safetensors",
            trust_remote_code=trust_remote_code, **placed,
        )
        model = (model if max_memory else model.to(device)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    arch.fuse_activations(model)
    return model


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
        infos = {"original": inspect_checkpoint(self.original, self.allow_pickle)}
        for name, path in self.unlearned:
            infos[name] = inspect_checkpoint(path, self.allow_pickle, original=self.original)
        if self.retain_only:
            infos["retain_only"] = inspect_checkpoint(self.retain_only, self.allow_pickle, original=self.original)
        check_compatible(infos["original"], {k: v for k, v in infos.items() if k != "original"})
        return infos

    def load_models(self) -> ModelSet:
        """Every checkpoint in memory when they fit; else the original plus as many as fit, the others loaded when
        an analysis reaches them (plan_resident, unlearn_core.residency). The numbers are the same either way."""
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
            from unlearn_core.residency import OnDemandModel, Residency

            def load(name: str, resident: list) -> object:
                budget = remaining(self.max_memory, resident) if self.max_memory else None
                return load_weights(infos[name], device, dtype, self.trust_remote_code, budget)

            residency = Residency(k, load, pinned=("original",))
            for n, i in infos.items():  # load_tokenizer refuses remote code before anything is read or hashed
                loaded[n] = OnDemandModel(n, role[n], load_tokenizer(i, self.trust_remote_code), i.path,
                                          checkpoint_digest(i), residency, i.n_params)
            residency.get("original")
        return ModelSet(loaded.pop("original"), {n: loaded[n] for n, _ in self.unlearned}, loaded.get("retain_only"))

    def load_data(self, accept_partial: bool = False) -> AuditData:
        def items(path):
            return load_items(path, accept_partial=accept_partial).items if path else ()

        return AuditData(items(self.forget), items(self.retain), items(self.holdout), self.prompt_format)


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
        prompt_format=PromptFormat(meta.get("prompt_template", PromptFormat.template)),
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
