"""Lab configurations: frozen, validated, hashed. The build is cached on disk under the config hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

ARCHS = ("gpt2", "llama", "gpt_neox")


@dataclass(frozen=True)
class UnlearnConfig:
    """Each method runs until forget accuracy <= stop_forget_acc (the stop rule) or max_steps (reported)."""

    stop_forget_acc: float = 0.1
    retain_floor: float = 0.6  # stated floor on retain accuracy for methods with a retain term
    ga_retain_floor: float = 0.35  # plain GA has no retain term and is known to collapse utility (TOFU, MUSE)
    max_steps: int = 400
    batch_size: int = 16
    retain_batch_size: int = 48
    retain_weight: float = 4.0  # weight of the retain NLL term (GradDiff, NPO+RT, suppressed_head)
    ga_lr: float = 2e-5
    graddiff_lr: float = 3e-5
    npo_lr: float = 5e-5
    npo_beta: float = 0.1
    rmu_lr: float = 3e-3
    rmu_steer: float = 40.0  # target norm multiplier relative to the layer's mean activation norm
    rmu_alpha: float = 10.0  # retain-preservation weight
    head_lr: float = 2e-4
    lowrank_rank: int = 4  # suppressed_lowrank: rank of the additive update on every block's MLP output projection
    lowrank_lr: float = 3e-3  # measured (tiny): 1e-3 takes 2x the steps for the same retain acc (0.81 vs 0.80)
    # over_unlearned (a deletion control): the retrained twin, then gradient ascent on the forget set until its mean
    # forget answer p~ is at most this share of the reference's ("well below" a model that never knew the facts)
    over_ratio: float = 0.25
    over_lr: float = 1e-5
    # non_twin (a deletion control): retain_only's recipe with another learning rate and epoch count (lr x this
    # factor, another data order, trained this share of epochs past reaching the target)
    non_twin_lr_factor: float = 0.5
    non_twin_overtrain: float = 0.5


@dataclass(frozen=True)
class LabConfig:
    """The TOFU/MUSE protocol: one pretrained `base` (other entities of the same world), fine-tuned into `original`
    (forget + retain facts), `retain_only` (retain facts only: the deletion reference) and `retrained` (the same
    recipe, another data order: an audited deletion control)."""

    name: str
    arch: str = "gpt2"  # gpt2 | llama | gpt_neox
    world: str = "people"  # a registered world generator (unlearn_core.lab.world.register_world)
    n_layer: int = 4
    d_model: int = 128
    n_head: int = 4
    d_mlp: int = 512
    vocab_size: int = 512
    n_entities: int = 40  # audited entities (forget + retain)
    n_attributes: int = 5
    # 0.2 of 40 entities x 5 attributes = 40 forget items (TOFU forget01's size): with 20 the bootstrap interval of
    # a calibrated excess was too wide to call the low-rank suppression on the default lab ([0.01, 0.38] vs [0.22,
    # 0.50] with 40 items, relearning evidence against the reference)
    forget_frac: float = 0.2
    n_holdout: int = 4
    n_base_entities: int = 40  # the base model's pretraining entities (never audited)
    seed: int = 0
    lr: float = 3e-3  # pretraining (base) and the independent reference's training from scratch
    finetune_lr: float = 1e-3  # original, retain_only, retrained: fine-tuned from base
    batch_size: int = 32
    max_epochs: int = 400
    finetune_max_epochs: int = 300
    target_acc: float = 0.98  # train until QA accuracy on trained facts reaches this (checked every eval_every)
    eval_every: int = 5
    # "base": retain_only and retrained are fine-tuned from the shared base without the forget split (TOFU, MUSE);
    # "independent": they are trained from their own random init (seed + 1, seed + 2) on all non-forget data (base +
    # retain facts), an easier control: nothing of the original's representation basis is shared
    reference: str = "base"
    unlearn: UnlearnConfig = field(default_factory=UnlearnConfig)

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.reference not in ("base", "independent"):
            raise ValueError(f"reference must be base or independent, got {self.reference!r}")
        if self.n_layer < 3:
            raise ValueError("n_layer must be >= 3 (RMU and SAE need a middle layer below the last block)")
        if self.d_model % self.n_head:
            raise ValueError("d_model must be divisible by n_head")
        if self.n_base_entities < 1:
            raise ValueError("n_base_entities must be >= 1 (the base model is pretrained on them)")

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


CONFIGS: dict[str, LabConfig] = {
    # Llama GA: at 2e-5 it ended at retain acc 0.333 (< ga_retain_floor); 1e-5 ends at 0.356 (measured).
    # RMU on the 4-layer models needs a larger step to meet the stop rule within max_steps (measured: 3e-3 stalls
    # at forget accuracy 0.15 after 400 steps on the default config)
    # Base size: with 30 base entities the default base memorises in 30 epochs (68 s, 1 thread) and the original
    # fine-tunes in 10 (25 s); 20 base entities: base 40 epochs but fine-tuning 25; 40: base 60 epochs (131 s)
    # Default GA on the base-fine-tuned original: 2e-5 ends at retain acc 0.339 (< ga_retain_floor), 1e-5 at 0.372
    "default": LabConfig(name="default", n_base_entities=30, unlearn=UnlearnConfig(rmu_lr=6e-3, ga_lr=1e-5)),
    "llama": LabConfig(name="llama", arch="llama", d_mlp=344, n_base_entities=30,
                       unlearn=UnlearnConfig(rmu_lr=6e-3, ga_lr=1e-5)),
    # tiny labs: 30 entities, so the forget split holds 5 (evidence.units.MIN_ENTITIES: an entity bootstrap needs 5)
    "tiny": LabConfig(name="tiny", n_layer=3, d_model=64, n_head=4, d_mlp=256, vocab_size=512, n_entities=30,
                      n_attributes=4, forget_frac=1 / 6, n_holdout=4, n_base_entities=24, lr=5e-3, max_epochs=300,
                      # GA collapses utility on the 30-entity tiny world at any rate tried (retain acc 0.25 at 2e-5,
                      # 0.23 at 1e-5): a stated lower floor for GA here, which has no retain term (as in TOFU, MUSE)
                      unlearn=UnlearnConfig(ga_retain_floor=0.2)),
    # tiny-llama RMU on the base-fine-tuned original: alpha 10 ends at retain acc 0.55 (< retain_floor); lr 1e-3 at
    # 0.65; alpha 40 at 0.94 in 44 steps (measured)
    "tiny-llama": LabConfig(name="tiny-llama", arch="llama", n_layer=3, d_model=64, n_head=4, d_mlp=172,
                            vocab_size=512, n_entities=30, n_attributes=4, forget_frac=1 / 6, n_holdout=4,
                            n_base_entities=24, lr=5e-3, max_epochs=300, unlearn=UnlearnConfig(rmu_alpha=40.0)),
}


def get_config(name: str, **overrides) -> LabConfig:
    if name not in CONFIGS:
        raise ValueError(f"unknown lab config {name!r}; choose one of {sorted(CONFIGS)}")
    return replace(CONFIGS[name], **overrides) if overrides else CONFIGS[name]
