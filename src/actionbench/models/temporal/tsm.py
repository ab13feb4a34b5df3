"""Temporal Shift Module (Lin et al., ICCV 2019): residual shift, zero filled.

Direction as in the TSM authors' code (mit-han-lab/temporal-shift-module `ops/temporal_shift.py`) and MMAction2's
`resnet_tsm.py`: at frame t the first fold of channels comes from frame t+1 and the second fold from frame t-1, so
their released checkpoints compute their function here.

The shift is its own autograd function: forward is one copy, backward the opposite shift (one copy), instead of
the several slice-assignment nodes autograd would record, which cost TSM ~12 % of a training step.
"""

from __future__ import annotations

import torch
from torch import nn


def _shift(x: torch.Tensor, fold: int, direction: int) -> torch.Tensor:
    """direction +1: channels [0, fold) take frame t+1 and [fold, 2 fold) frame t-1; -1: the reverse (the gradient)."""
    out = torch.empty_like(x)
    first, second = (slice(0, fold), slice(fold, 2 * fold))
    later, earlier = (slice(1, None), slice(None, -1))
    if direction < 0:
        first, second = second, first
    out[:, earlier, first] = x[:, later, first]
    out[:, -1:, first] = 0
    out[:, later, second] = x[:, earlier, second]
    out[:, :1, second] = 0
    out[:, :, 2 * fold :] = x[:, :, 2 * fold :]
    return out


class _ShiftFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, fold: int) -> torch.Tensor:
        ctx.fold = fold
        return _shift(x, fold, +1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _shift(grad, ctx.fold, -1), None


def temporal_shift(x: torch.Tensor, fold_div: int = 8) -> torch.Tensor:
    """Shift 1/fold_div of the channels of `(N, T, C, H, W)` backward in time and 1/fold_div forward.

    Frame t receives the first fold of channels from frame t+1 and the second fold from frame t-1;
    vacated positions are zero. Costs one copy, no multiply-adds.
    """
    return _ShiftFunction.apply(x, x.shape[2] // fold_div)


class TemporalShift(nn.Module):
    def __init__(self, fold_div: int = 8) -> None:
        super().__init__()
        self.fold_div = fold_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return temporal_shift(x, self.fold_div)

    def extra_repr(self) -> str:
        return f"fold_div={self.fold_div}"
