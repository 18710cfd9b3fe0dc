"""The real-model lab: SmolLM2-135M-Instruct fine-tuned on invented people in its chat format (TOFU protocol),
unlearned with published methods scaled to its size, plus planted controls whose truth is known.

Public entry points: `build.build_smollm_lab` (through `unlearn_core.lab.build.build_lab`) and `config`.
"""
