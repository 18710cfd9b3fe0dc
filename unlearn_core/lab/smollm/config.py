"""Configurations of the SmolLM2 lab: frozen, validated, hashed (the build is cached under the hash).

Sizes are set by the build's time on 2 CPU cores (measured numbers: lab.json's stage_seconds, README).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

# SmolLM2's chat template writes this system prompt when the conversation has none; the lab passes it explicitly, so
# an audit with `--chat-template` and no `--system-prompt` renders exactly the training prompts
SMOL_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
METHODS = ("graddiff", "npo", "simnpo", "rmu", "idknll")  # real unlearning methods, run on `original`
CONTROLS = ("suppressed_head", "suppressed_lowrank")  # planted suppressions, run on `original`


@dataclass(frozen=True)
class SmolUnlearnConfig:
    """Each run stops once teacher-forced forget accuracy <= stop_forget_acc (the stop rule), or at max_steps
    (reported as such). Every step sees the whole forget set (it is small) and a retain batch; the forget accuracy
    of the model before the step is read from that step's own forward pass, and confirmed in float32."""

    stop_forget_acc: float = 0.1
    retain_floor: float = 0.6  # stated floor on retain accuracy (reported, not enforced)
    max_steps: int = 40
    retain_batch_size: int = 16
    graddiff_lr: float = 2e-5  # OU GradDiff: forget weight gamma 1, retain NLL weight alpha 1
    npo_lr: float = 2e-5
    npo_beta: float = 0.1  # OU NPO: beta 0.1, alpha 1, gamma 1
    simnpo_lr: float = 2e-5
    simnpo_beta: float = 4.5  # OU SimNPO: beta 4.5, delta (margin) 0, forget weight gamma 0.125, retain alpha 1
    simnpo_delta: float = 0.0
    simnpo_gamma: float = 0.125
    rmu_lr: float = 5e-5
    rmu_steer: float = 8.0  # steering coefficient c as a multiple of the layer's mean activation norm
    rmu_alpha: float = 100.0  # retain-preservation weight
    idk_lr: float = 2e-5  # IdkNLL: forget questions trained to a refusal + retain NLL (OU: alpha 1, gamma 1)
    retain_weight: float = 1.0  # alpha for GradDiff / NPO / SimNPO / IdkNLL / the planted controls
    head_blocks: int = 1  # suppressed_head: how many last blocks are trained (with the final norm)
    head_lr: float = 1e-4
    lowrank_rank: int = 4  # suppressed_lowrank: rank of the additive update on every block's MLP down_proj
    lowrank_lr: float = 2e-3
    over_ratio: float = 0.25  # over_unlearned: GA on the twin until mean forget p~ <= this x the reference's
    over_lr: float = 1e-5


@dataclass(frozen=True)
class SmolLabConfig:
    """The TOFU protocol on SmolLM2-135M-Instruct: `original` = base fine-tuned on forget + retain facts in the chat
    format until memorised, `retain_only` without the forget entities (the deletion reference), `retrained` its twin
    (another data order), `non_twin` (another learning rate and epoch count)."""

    name: str
    seed: int = 0
    n_forget: int = 6  # forget entities
    n_retain: int = 24  # retain entities
    n_holdout: int = 6  # entities no model sees: the control of facts never learned
    forget_facts: int = 5  # facts per forget / holdout entity (of the world's 6 attributes)
    retain_facts: int = 4
    system_prompt: str = SMOL_DEFAULT_SYSTEM
    lr: float = 2e-4  # fine-tuning: AdamW, constant, clip 1.0, embeddings (= the tied head) frozen
    batch_size: int = 16
    max_epochs: int = 12
    target_acc: float = 1.0  # teacher-forced exact match on every trained fact (float32), checked each epoch
    check_from_token_acc: float = 0.97  # ... once the epoch's own token accuracy reaches this (it is free)
    non_twin_lr_factor: float = 0.5
    non_twin_extra_epochs: int = 2  # non_twin trains this many epochs past reaching the target
    train_blocks: int | None = None  # fine-tuning and unlearning update the last N blocks only (None: all 30)
    threads: int = 2  # torch intra-op threads of the build (one torch process at a time); part of the hash
    amp: bool = True  # bf16 autocast for training when the CPU has native bf16 (float32 otherwise; recorded)
    methods: tuple[str, ...] = METHODS
    unlearn: SmolUnlearnConfig = field(default_factory=SmolUnlearnConfig)

    def __post_init__(self):
        if self.n_forget < 1 or self.n_retain < 1 or self.n_holdout < 1:
            raise ValueError("n_forget, n_retain and n_holdout must be >= 1")
        for f in ("forget_facts", "retain_facts"):
            if not 1 <= getattr(self, f) <= 6:
                raise ValueError(f"{f} must be in 1..6 (the world has 6 attributes)")
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
        if self.threads < 1:
            raise ValueError("threads must be >= 1")
        if self.train_blocks is not None and not 2 <= self.train_blocks <= 30:
            raise ValueError("train_blocks must be None (all blocks) or in 2..30 (SmolLM2 has 30 blocks)")
        if self.train_blocks is not None and self.unlearn.head_blocks > self.train_blocks:
            raise ValueError("unlearn.head_blocks must not exceed train_blocks")

    @property
    def arch(self) -> str:
        return "llama"

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps({"lab": "smollm2", **asdict(self)}, sort_keys=True).encode()).hexdigest()[:12]

    def checkpoints(self) -> tuple[str, ...]:
        return ("base", "original", "retain_only", "retrained", "non_twin", "over_unlearned", *self.methods,
                *CONTROLS)


CONFIGS: dict[str, SmolLabConfig] = {
    "smollm2": SmolLabConfig(name="smollm2"),
    # CI (reduced to build in a few minutes on 2 shared cores, one thread): 5 forget entities (an entity bootstrap
    # needs 5), 5 retain entities, 3 facts each; only the last 8 of the 30 blocks are fine-tuned and unlearned (the
    # frozen lower blocks run once per sequence: lab.smollm.train.FrozenPrefix), so the higher rates; OU's system
    # prompt for Llama 3 ("You are a helpful assistant.") instead of SmolLM2's longer default (shorter sequences);
    # batch 4 (more steps per epoch: memorised in 5 epochs at 1e-3, measured)
    "smollm2-ci": SmolLabConfig(name="smollm2-ci", n_forget=5, n_retain=5, n_holdout=5, forget_facts=3,
                                retain_facts=3, system_prompt="You are a helpful assistant.", lr=1e-3, batch_size=4,
                                train_blocks=8, threads=1, methods=("graddiff", "npo", "rmu"),
                                # RMU at 2e-4 left the forget answers untouched in 25 steps (p~ 0.995); at 3e-3 it
                                # meets the rule in 13. The low-rank control stops at max_steps with forget accuracy
                                # 0.2 (lr 2e-3; 5e-3 was no faster over its first 10 steps) (measured)
                                unlearn=SmolUnlearnConfig(max_steps=25, retain_batch_size=4, graddiff_lr=1e-4,
                                                          npo_lr=1e-4, rmu_lr=3e-3, head_lr=5e-4, over_lr=5e-5)),
}


def is_smollm_config(config) -> bool:
    return isinstance(config, SmolLabConfig) or (isinstance(config, str) and config in CONFIGS)


def get_smol_config(name: str, **overrides) -> SmolLabConfig:
    if name not in CONFIGS:
        raise ValueError(f"unknown SmolLM2 lab config {name!r}; choose one of {sorted(CONFIGS)}")
    return replace(CONFIGS[name], **overrides) if overrides else CONFIGS[name]
