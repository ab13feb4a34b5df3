"""Temporal Shift Module (Lin et al., ICCV 2019): residual shift, zero filled.

Direction as in the TSM authors' code (mit-han-lab/temporal-shift-module `ops/temporal_shift.py`) and MMAction2's
`resnet_tsm.py`: at frame t the first fold of channels comes from frame t+1 and the second fold from frame t-1, so
their released checkpoints compute their function here.

In a residual block the shift feeds the block's first convolution only; `ShiftConv2d` is that convolution with the
shift folded in: it shifts the block input in place (moving just the two shifted folds, a quarter of the channels),
convolves, and shifts it back, in forward and again in backward, instead of copying the whole input into a new
tensor that the convolution would keep until backward. Half the memory traffic of a shifted copy, and one block
input less held per block (docs/performance.md). `temporal_shift` is the plain function, for other uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from actionbench.models.layers import FrameConv2d, tracing


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


def shifted(x: torch.Tensor, fold: int) -> torch.Tensor:
    """The shift of `(N, T, C, ...)` as plain tensor ops (a new tensor): what compilers and exporters trace."""
    first, second, rest = x[:, :, :fold], x[:, :, fold : 2 * fold], x[:, :, 2 * fold :]
    zero = torch.zeros_like(first[:, :1])
    return torch.cat([torch.cat([first[:, 1:], zero], 1), torch.cat([zero, second[:, :-1]], 1), rest], 2)


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


def _shift_(x: torch.Tensor, fold: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The shift in place on `(N, T, C, ...)`, frame by frame; returns the two frames it overwrote."""
    t = x.shape[1]
    first, second = slice(0, fold), slice(fold, 2 * fold)
    lost = (x[:, 0, first].clone(), x[:, t - 1, second].clone())
    for j in range(t - 1):
        x[:, j, first].copy_(x[:, j + 1, first])
    x[:, t - 1, first].zero_()
    for j in range(t - 1, 0, -1):
        x[:, j, second].copy_(x[:, j - 1, second])
    x[:, 0, second].zero_()
    return lost


def _unshift_(x: torch.Tensor, fold: int, lost: tuple[torch.Tensor, torch.Tensor] | None) -> None:
    """Undo `_shift_` in place with the frames it returned; with `lost=None`, the shift's transpose (zeros)."""
    t = x.shape[1]
    first, second = slice(0, fold), slice(fold, 2 * fold)
    for j in range(t - 1, 0, -1):
        x[:, j, first].copy_(x[:, j - 1, first])
    for j in range(t - 1):
        x[:, j, second].copy_(x[:, j + 1, second])
    if lost is None:
        x[:, 0, first].zero_()
        x[:, t - 1, second].zero_()
    else:
        x[:, 0, first].copy_(lost[0])
        x[:, t - 1, second].copy_(lost[1])


class _ShiftConvFunction(torch.autograd.Function):
    """conv(shift(x)) on `(N, T, C, H, W)` without a shifted copy of x.

    The block input is shifted in place through `x.data` (its own version counter: the shift is undone before
    anything else reads x, so the saved references to x of other layers stay valid), convolved and shifted back;
    backward shifts it again for the weight gradient and applies the shift's transpose to the input gradient in
    place. Under autocast the convolution runs in the autocast dtype, and so does its backward here.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, fold):
        data = x.data
        lost = _shift_(data, fold)
        try:
            y = F.conv2d(data.flatten(0, 1), weight, bias, stride, padding, dilation, groups)
        finally:
            _unshift_(data, fold, lost)
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation, groups, fold, bias is not None, y.dtype)
        return y.view(x.shape[0], x.shape[1], *y.shape[1:])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups, fold, has_bias, dtype = ctx.conf
        n, t = x.shape[:2]
        data = x.data
        lost = _shift_(data, fold)
        try:
            shifted = data.flatten(0, 1).to(dtype)
            mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], has_bias and ctx.needs_input_grad[2]]
            gx, gw, gb = torch.ops.aten.convolution_backward(
                grad.flatten(0, 1).to(dtype), shifted, weight.to(dtype), [weight.shape[0]] if has_bias else None,
                stride, padding, dilation, False, [0, 0], groups, mask)
        finally:
            _unshift_(data, fold, lost)
        if gx is not None:
            gx = gx.view(n, t, *gx.shape[1:]).to(x.dtype)
            _unshift_(gx, fold, None)  # the shift's transpose, in place on our own tensor
        return (gx, None if gw is None else gw.to(weight.dtype), None if gb is None else gb.to(weight.dtype),
                None, None, None, None, None)


class ShiftConv2d(FrameConv2d):
    """A per-frame Conv2d whose input is temporally shifted first (TSM's "residual shift" placement); the same
    parameters and state-dict keys as the convolution it replaces."""

    def __init__(self, *args, fold_div: int = 8, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fold_div = fold_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fold = x.shape[2] // self.fold_div
        if fold == 0:
            return super().forward(x)  # too few channels to shift any
        if tracing():
            return super().forward(shifted(x, fold))
        return _ShiftConvFunction.apply(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                                        self.groups, fold)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", shift fold_div={self.fold_div}"
