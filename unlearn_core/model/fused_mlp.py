"""GPT-2's MLP input projection and tanh-GELU as one oneDNN call, for inference on small float32 CPU models.

torch's tanh-GELU kernel costs ~2.3 ns per element on one core of the project's VM (its erf-GELU 0.55 ns, tanh alone
0.4 ns), so on the demo lab's width-128 models it took ~24% of every forward pass, more than the 128 x 512 matrix
product in front of it. oneDNN applies the same function as a post-op of that product
(`torch.ops.mkldnn._linear_pointwise`, the fused kernel torch's own compiler emits for CPU): a forward of the default
lab's original model on 128 x 32 tokens 95 ms -> 75 ms, outputs equal within float rounding (2.4e-7 on the
activations). Only where it is the same computation and it pays: no autograd (integrated gradients and relearning
need the backward, so they keep the plain path), float32 on the CPU, GPT-2's own Conv1D and GELUTanh modules with no
hooks (a hook on either must see the plain calls), weights resident (not offloaded by accelerate), weights up to
2^20 entries (the GELU's share falls as 1 / width; at GPT-2 small's 768 x 3072 the fused call on a transposed view was
2x slower) and at least 64 rows (a decoding step of a few prompts: the oneDNN call's fixed cost is larger than the
GELU). Measured per call, 128-wide: 512 rows 0.6-0.8 ms vs 1.1-1.25 ms plain, 8 rows 46 us vs 22 us.
"""

from __future__ import annotations

import torch
from torch.nn.modules import module as _module
from transformers.activations import GELUTanh
from transformers.models.gpt2.modeling_gpt2 import GPT2MLP
from transformers.pytorch_utils import Conv1D

MAX_WEIGHT_ENTRIES = 2**20
MIN_ROWS = 64


def available() -> bool:
    return bool(torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def _plain_only(module: torch.nn.Module) -> bool:
    return not (module._forward_hooks or module._forward_pre_hooks or getattr(module, "_hf_hook", None))


class FusedGPT2MLP(GPT2MLP):
    """GPT2MLP whose inference calls fuse c_fc and the activation; every other call is GPT2MLP's own forward."""

    def forward(self, hidden_states):
        fc, act = self.c_fc, self.act
        w = fc.weight
        if (hidden_states.device.type == "cpu" and hidden_states.dtype == torch.float32 and w.dtype == torch.float32
                and w.device.type == "cpu" and type(fc) is Conv1D and type(act) is GELUTanh
                and w.numel() <= MAX_WEIGHT_ENTRIES and hidden_states.numel() >= MIN_ROWS * w.shape[0]
                and not (torch.is_grad_enabled() and (hidden_states.requires_grad or w.requires_grad
                                                      or fc.bias.requires_grad))
                and _plain_only(fc) and _plain_only(act)
                and not (_module._global_forward_hooks or _module._global_forward_pre_hooks)):
            # Conv1D stores [in, out], oneDNN takes [out, in]: a transposed view, read at every call (never a cached
            # copy), so an in-place edit of the weight (noise, quantization, an update revert) is always seen.
            h = torch.ops.mkldnn._linear_pointwise(hidden_states, w.t(), fc.bias, "gelu", [], "tanh")
            return self.dropout(self.c_proj(h))
        return super().forward(hidden_states)


def fuse_mlps(model: torch.nn.Module) -> int:
    """Switch every GPT2MLP of `model` to FusedGPT2MLP (same parameters and state dict); returns how many."""
    if not available():
        return 0
    n = 0
    for mod in model.modules():
        if type(mod) is GPT2MLP:
            mod.__class__ = FusedGPT2MLP
            n += 1
    return n
