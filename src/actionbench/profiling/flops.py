"""Multiply-add counting in two conventions.

- `paper_macs`: multiply-adds of convolutions only (output elements x Cin/groups x kernel volume). This is the
  convention of the paper's Table 3 and of its code (its "GFLOPs" are these MACs / 1e9); FC, BN, pooling, ReLU,
  softmax and matmuls are not counted. Modules that compute a convolution without an nn.Conv (our fast TAM)
  declare the MACs of the equivalent convolution through a `conv_macs(inputs, output)` method.
- `all_macs`: every multiply-add: convolutions, linear layers and matrix products (attention in non-local
  blocks) plus `conv_macs` modules. The paper's NLN figure (196 "GFLOPs") counts each of these as 2 FLOPs.

Counting runs on the meta device by default: shapes only, no arithmetic, so a 224x224 I3D-R50 is counted in a
fraction of a second and exactly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

_CONV_OPS = {torch.ops.aten.convolution, torch.ops.aten._convolution, torch.ops.aten.convolution_backward}


@dataclass(frozen=True)
class FlopCounts:
    paper_macs: int
    all_macs: int

    @property
    def paper_gflops(self) -> float:
        return self.paper_macs / 1e9

    @property
    def gmacs(self) -> float:
        return self.all_macs / 1e9


def count_flops(model: nn.Module, input_shape: tuple[int, ...], on_meta: bool = True) -> FlopCounts:
    """Count multiply-adds of one forward pass of `model` on an input of `input_shape` (batch included)."""
    if on_meta:
        model = copy.deepcopy(model).to("meta")
    device = next(model.parameters()).device
    custom: list[int] = []

    def hook(module, inputs, output):
        custom.append(int(module.conv_macs(inputs, output)))

    handles = [m.register_forward_hook(hook) for m in model.modules() if hasattr(m, "conv_macs")]
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    per_op = counter.get_flop_counts().get("Global", {})
    conv_flops = sum(v for op, v in per_op.items() if getattr(op, "_overloadpacket", op) in _CONV_OPS)
    extra = sum(custom)
    return FlopCounts(paper_macs=conv_flops // 2 + extra, all_macs=counter.get_total_flops() // 2 + extra)
