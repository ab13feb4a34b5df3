"""Temporal Shift Module (Lin et al., ICCV 2019): residual shift, zero filled."""

from __future__ import annotations

import torch
from torch import nn


def temporal_shift(x: torch.Tensor, fold_div: int = 8) -> torch.Tensor:
    """Shift 1/fold_div of the channels of `(N, T, C, H, W)` forward in time and 1/fold_div backward.

    Frame t receives the first fold of channels from frame t-1 and the second fold from frame t+1;
    vacated positions are zero. Costs one copy, no multiply-adds.
    """
    fold = x.shape[2] // fold_div
    out = torch.empty_like(x)
    out[:, 1:, :fold] = x[:, :-1, :fold]
    out[:, :1, :fold] = 0
    out[:, :-1, fold : 2 * fold] = x[:, 1:, fold : 2 * fold]
    out[:, -1:, fold : 2 * fold] = 0
    out[:, :, 2 * fold :] = x[:, :, 2 * fold :]
    return out


class TemporalShift(nn.Module):
    def __init__(self, fold_div: int = 8) -> None:
        super().__init__()
        self.fold_div = fold_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return temporal_shift(x, self.fold_div)

    def extra_repr(self) -> str:
        return f"fold_div={self.fold_div}"
