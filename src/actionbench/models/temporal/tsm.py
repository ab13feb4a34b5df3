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

from actionbench.models.layers import FrameConv2d, compiled_layout, in_layout_of, trace_mode


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


def _shift_conv(x, weight, bias, stride, padding, dilation, groups, fold):
    """conv(shift(x)) on `(N, T, C, H, W)`: x shifted in place, convolved, shifted back (x is unchanged after)."""
    data = x.data  # its own version counter: the shift is undone before anything else reads x
    lost = _shift_(data, fold)
    try:
        y = F.conv2d(data.flatten(0, 1), weight, bias, stride, padding, dilation, groups)
    finally:
        _unshift_(data, fold, lost)
    return y.view(x.shape[0], x.shape[1], *y.shape[1:])


def _shift_conv_backward(grad, x, weight, has_bias, stride, padding, dilation, groups, fold, mask):
    """The gradients of `_shift_conv` (None where `mask` says not needed; x's and weight's in their layouts),
    computed in grad's dtype (autocast's)."""
    n, t = x.shape[:2]
    dtype = grad.dtype
    data = x.data
    lost = _shift_(data, fold)
    try:
        gx, gw, gb = torch.ops.aten.convolution_backward(
            grad.flatten(0, 1), data.flatten(0, 1).to(dtype), weight.to(dtype),
            [weight.shape[0]] if has_bias else None, stride, padding, dilation, False, [0, 0], groups,
            [mask[0], mask[1], has_bias and mask[2]])
    finally:
        _unshift_(data, fold, lost)
    if gx is not None:
        gx = in_layout_of(gx.view(n, t, *gx.shape[1:]).to(x.dtype), x)
        _unshift_(gx, fold, None)  # the shift's transpose, in place on our own tensor
    gw = None if gw is None else in_layout_of(gw.to(weight.dtype), weight)
    return gx, gw, None if gb is None else gb.to(weight.dtype)


class _ShiftConvFunction(torch.autograd.Function):
    """conv(shift(x)) without a shifted copy of x, in eager mode.

    The block input is shifted in place through `x.data` (so the saved references to x of other layers stay
    valid), convolved and shifted back; backward shifts it again for the weight gradient and applies the shift's
    transpose to the input gradient in place. Under autocast the convolution runs in the autocast dtype, and so
    does its backward here.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, fold):
        ctx.save_for_backward(x, weight)
        ctx.conf = (bias is not None, stride, padding, dilation, groups, fold)
        return _shift_conv(x, weight, bias, stride, padding, dilation, groups, fold)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        return (*_shift_conv_backward(grad, x, weight, *ctx.conf, ctx.needs_input_grad[:3]),
                None, None, None, None, None)


# The same kernels as torch.library custom ops, for torch.compile: inductor calls them as they are (a traced copy
# of the shift and the convolution ran the compiled TSM training step at 0.86-0.93x TSN's). They compute in x's
# dtype (under autocast, the dtype the previous layer produced); the masked-out gradients are empty tensors.
@torch.library.custom_op("actionbench::shift_conv2d", mutates_args=())
def shift_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: list[int],
                 padding: list[int], dilation: list[int], groups: int, fold: int) -> torch.Tensor:
    """conv2d(shift(x)) on `(N, T, C, H, W)`, per frame; x is left as it was."""
    bias = None if bias is None else bias.to(x.dtype)
    return _shift_conv(x, weight.to(x.dtype), bias, stride, padding, dilation, groups, fold)


@shift_conv2d.register_fake
def _(x, weight, bias, stride, padding, dilation, groups, fold):
    y = F.conv2d(x.flatten(0, 1), weight.to(x.dtype), None, stride, padding, dilation, groups)
    return y.view(x.shape[0], x.shape[1], *y.shape[1:])


@torch.library.custom_op("actionbench::shift_conv2d_backward", mutates_args=())
def shift_conv2d_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, has_bias: bool,
                          stride: list[int], padding: list[int], dilation: list[int], groups: int, fold: int,
                          mask: list[bool]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of `shift_conv2d` for x, weight and bias (empty where `mask` is False)."""
    grads = _shift_conv_backward(grad, x, weight, has_bias, stride, padding, dilation, groups, fold, mask)
    return tuple(grad.new_empty(0) if g is None else g for g in grads)


@shift_conv2d_backward.register_fake
def _(grad, x, weight, has_bias, stride, padding, dilation, groups, fold, mask):
    return (torch.empty_like(x) if mask[0] else grad.new_empty(0),
            torch.empty_like(weight) if mask[1] else grad.new_empty(0),
            weight.new_empty(weight.shape[:1]) if has_bias and mask[2] else grad.new_empty(0))


def _setup_shift_conv2d(ctx, inputs, output):
    x, weight, bias, *conf = inputs
    ctx.save_for_backward(x, weight)
    ctx.conf = (bias is not None, *conf)


def _backward_shift_conv2d(ctx, grad):
    x, weight = ctx.saved_tensors
    mask = list(ctx.needs_input_grad[:3])
    grads = torch.ops.actionbench.shift_conv2d_backward(grad, x, weight, *ctx.conf, mask)
    return (*(g if ok else None for g, ok in zip(grads, mask, strict=True)), None, None, None, None, None)


shift_conv2d.register_autograd(_backward_shift_conv2d, setup_context=_setup_shift_conv2d)


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
        mode = trace_mode()
        if mode == "export":
            return super().forward(shifted(x, fold))
        if mode == "eager":
            conv = _ShiftConvFunction.apply
        else:
            conv, x = torch.ops.actionbench.shift_conv2d, compiled_layout(x)
        return conv(x, self.weight, self.bias, list(self.stride), list(self.padding), list(self.dilation),
                    self.groups, fold)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", shift fold_div={self.fold_div}"
