"""Temporal Aggregation Module (Fan et al., NeurIPS 2019) and its full-convolution form ("Conv." in the paper).

out[t] = ReLU(W_prev x[t-1] + W_cur x[t] + W_next x[t+1]), frames outside the clip are zeros.
TAM: the three W are depthwise 1x1 convolutions (a weight per channel). Conv.: full CxC 1x1 convolutions.

The paper's TAM used a 3D depthwise convolution that ran at ~1/4 of TSN's speed on a V100. Here TAM is three
multiply-adds on neighbouring frames in one autograd node, and Conv. is one 1x1 convolution to 3C channels followed
by the same shifted sum. TAM is memory bound: on CPUs (float32/float64) a fused C kernel (tam_kernels.c, built on
first use by `models.native`) reads each input once, forward and backward (its backward 1.6x faster than torch ops
at a ResNet-50 stage-1 size); elsewhere, or without a C compiler, tiled torch ops compute the same function.
"""

from __future__ import annotations

import ctypes

import torch
from torch import nn

from actionbench.models import native
from actionbench.models.layers import FrameConv2d, compiled_layout, in_layout_of, trace_mode


def shifted_sum(prev: torch.Tensor, cur: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
    """`cur[t] + prev[t-1] + nxt[t+1]` on `(N, T, ...)` tensors, zero outside the clip; returns a new tensor."""
    out = cur.clone()
    out[:, 1:] += prev[:, :-1]
    out[:, :-1] += nxt[:, 1:]
    return out


_TILE_BYTES = 4 << 20  # clips aggregated together per frame: about what stays in a core's share of L3


def _aggregate(x: torch.Tensor, weight: torch.Tensor, relu: bool) -> torch.Tensor:
    """`w0 x[t-1] + w1 x[t] + w2 x[t+1]` (then ReLU) with per-channel weights `weight` (C, 3), zero outside the clip,
    in torch ops (the path where the C kernels do not apply).

    Computed frame by frame for a few clips at a time, so that the three neighbouring frames and the output stay in
    cache across the multiply-adds: whole-tensor passes read the activations five times from memory; this is 2x
    faster for a ResNet-50 block input at batch 4 (20.7 -> 10.7 ms, docs/performance.md).
    """
    n, t = x.shape[:2]
    # Contiguous weight columns: in a channels_last frame the channels are the innermost loop, and a strided
    # column there blocks vectorisation (2.5x slower).
    w0, w1, w2 = (weight[:, k].to(x.dtype).contiguous().reshape(-1, *([1] * (x.dim() - 3))) for k in range(3))
    out = torch.empty_like(x)
    step = max(1, _TILE_BYTES // max(1, x[0, 0].numel() * x.element_size()))
    for i in range(0, n, step):
        clips = slice(i, i + step)
        for j in range(t):
            o = out[clips, j]
            torch.mul(x[clips, j], w1, out=o)
            if j > 0:
                o.addcmul_(x[clips, j - 1], w0)
            if j < t - 1:
                o.addcmul_(x[clips, j + 1], w2)
            if relu:
                o.relu_()
    return out


def _weight_grad(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(C, 3): per channel, the sums over clips, frames and positions of g[t] x[t-1], g[t] x[t], g[t] x[t+1].

    Half-precision activations (autocast) are summed in float32 (float64 stays float64), a clip or a frame at a
    time: a bf16/fp16 sum over H*W loses the gradient (or overflows under a loss scale).
    """
    n, t, c = x.shape[:3]
    acc = torch.promote_types(x.dtype, torch.float32)
    if x.dim() == 5 and x.shape[3] * x.shape[4] > 1 and \
            x.flatten(0, 1).is_contiguous(memory_format=torch.channels_last):
        # channels_last: each frame is a (H*W, C) matrix with C contiguous; a batched matmul over channels would
        # need C outermost (copies, or per-channel GEMMs: a training step at 0.6x TSN's speed). Instead the three
        # products per frame, each reduced over positions while the frames are in cache.
        gs, xs = g.permute(0, 1, 3, 4, 2).reshape(n, t, -1, c), x.permute(0, 1, 3, 4, 2).reshape(n, t, -1, c)
        sums = torch.zeros(3, c, dtype=acc, device=x.device)
        product = torch.empty(gs.shape[2:], dtype=acc, device=x.device)
        for i in range(n):
            for j in range(t):
                gj = gs[i, j].to(acc)
                for k, s in ((0, j - 1), (1, j), (2, j + 1)):
                    if 0 <= s < t:
                        torch.mul(gj, xs[i, s], out=product)
                        sums[k] += product.sum(0)
        return sums.t()
    # Per channel: the T x T matrix of frame dot products <g[t], x[s]>, summed over the clips, from one batched
    # matmul per clip on strided views of (T, C, H*W) (no transposed copies: 5x faster than copying to
    # (C, T, H*W) first, and 2.6x faster than three multiply-and-reduce passes). The weights' gradients are its
    # three central diagonals (s = t-1, t, t+1).
    gv, xv = g.reshape(n, t, c, -1), x.reshape(n, t, c, -1)
    dots = None
    for i in range(n):
        gi, xi = gv[i].transpose(0, 1).to(acc), xv[i].permute(1, 2, 0).to(acc)
        dots = torch.bmm(gi, xi) if dots is None else dots.baddbmm_(gi, xi)
    return torch.stack([dots.diagonal(-1, 1, 2).sum(-1), dots.diagonal(0, 1, 2).sum(-1),
                        dots.diagonal(1, 1, 2).sum(-1)], dim=1)


_PIECES = 64  # fixed ranges of lines, each with its own weight-gradient sums: the same result on any thread count
_POINTER, _INT, _FLAG = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_ARGTYPES = {"tam_forward": [_POINTER] * 3 + [_INT] * 4 + [_FLAG] * 2,
             "tam_backward": [_POINTER] * 7 + [_INT] * 4 + [_FLAG, _INT, _FLAG]}


def _c_kernel(name: str, dtype: torch.dtype):
    """The C kernel `name` for `dtype` from tam_kernels.c, or None (no compiler, or ACTIONBENCH_NATIVE=0)."""
    lib = native.load("temporal/tam_kernels.c")
    if lib is None:
        return None
    f = getattr(lib, f"{name}_{'f32' if dtype == torch.float32 else 'f64'}")
    if f.argtypes is None:
        f.argtypes, f.restype = _ARGTYPES[name], None
    return f


def _frame_layout(x: torch.Tensor) -> tuple[int, int, bool] | None:
    """(rows, cols, whether a row is a channel) of x's frames for the C kernels, or None where they do not apply:
    CPU float32/float64 tensors, contiguous or with channels_last frames."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or x.dim() < 3 or x.numel() == 0:
        return None
    n, t, c = x.shape[:3]
    positions = x[0, 0, 0].numel()
    if x.is_contiguous():
        return c, positions, True
    if x.dim() == 5 and x.permute(0, 1, 3, 4, 2).is_contiguous():
        return positions, c, False
    return None


def _columns(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return weight.detach().t().to(dtype).contiguous()  # (3, C): each tap's weights contiguous


def _aggregate_relu(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """TAM's forward: the fused C kernel where it applies, else the tiled torch ops."""
    layout = _frame_layout(x)
    kernel = None if layout is None else _c_kernel("tam_forward", x.dtype)
    if kernel is None:
        return _aggregate(x, weight, relu=True)
    rows, cols, channel_rows = layout
    n, t = x.shape[:2]
    w, out = _columns(weight, x.dtype), torch.empty_like(x)
    kernel(x.data_ptr(), w.data_ptr(), out.data_ptr(), n, t, rows, cols, channel_rows, torch.get_num_threads())
    return out


def _fused_backward(grad, x, weight, out, mask):
    """Both gradients in one pass over grad, out and x (the C kernel), or None where it does not apply."""
    layout = _frame_layout(x)
    kernel = None if layout is None or out.stride() != x.stride() else _c_kernel("tam_backward", x.dtype)
    if kernel is None:
        return None
    rows, cols, channel_rows = layout
    n, t, c = x.shape[:3]
    grad = grad.to(x.dtype)
    if grad.stride() != x.stride():
        grad = torch.empty_like(x).copy_(grad)
    pieces = min(_PIECES, n * rows)
    w = _columns(weight, x.dtype)
    grad_x = torch.empty_like(x) if mask[0] else None
    sums = torch.zeros(pieces, 3, c, dtype=torch.float64) if mask[1] else None
    ring = torch.empty(pieces, 3 * cols, dtype=x.dtype)
    kernel(grad.data_ptr(), x.data_ptr(), w.data_ptr(), out.data_ptr(), None if grad_x is None else grad_x.data_ptr(),
           None if sums is None else sums.data_ptr(), ring.data_ptr(), n, t, rows, cols, channel_rows, pieces,
           torch.get_num_threads())
    grad_w = None if sums is None else in_layout_of(sums.sum(0).t().to(weight.dtype), weight)
    return grad_x, grad_w


def aggregate(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """TAM, `ReLU(w0 x[t-1] + w1 x[t] + w2 x[t+1])`, as plain tensor ops: what compilers and exporters trace."""
    w0, w1, w2 = (weight[:, k].to(x.dtype).reshape(1, 1, -1, *([1] * (x.dim() - 3))) for k in range(3))
    zero = torch.zeros_like(x[:, :1])
    return (x * w1 + torch.cat([zero, x[:, :-1]], 1) * w0 + torch.cat([x[:, 1:], zero], 1) * w2).relu()


def _aggregation_backward(grad, x, weight, out, mask):
    """The gradients of TAM for x and weight, in their layouts (None where `mask` says not needed)."""
    fused = _fused_backward(grad, x, weight, out, mask)
    if fused is not None:
        return fused
    g = torch.ops.aten.threshold_backward(grad, out, 0)  # one pass, no boolean mask (masked_fill: 3x slower)
    # x[s] fed out[s] via w1, out[s+1] via w0 and out[s-1] via w2: the same sum with the outer weights swapped.
    grad_x = in_layout_of(_aggregate(g, weight.flip(1), relu=False), x) if mask[0] else None
    grad_w = in_layout_of(_weight_grad(g, x).to(weight.dtype), weight) if mask[1] else None
    return grad_x, grad_w


class _DepthwiseAggregation(torch.autograd.Function):
    """TAM as one autograd node: fused multiply-adds forward, their transposes backward, no slice bookkeeping."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        out = _aggregate_relu(x, weight)
        ctx.save_for_backward(x, weight, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _aggregation_backward(grad, *ctx.saved_tensors, ctx.needs_input_grad)


# The same kernels as torch.library custom ops, for torch.compile: inductor calls them as they are (its own fusion
# of the plain-tensor form ran the compiled TAM training step at 0.60-0.76x TSN's). Masked-out gradients are empty.
@torch.library.custom_op("actionbench::tam_aggregate", mutates_args=())
def tam_aggregate(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """TAM, `ReLU(w0 x[t-1] + w1 x[t] + w2 x[t+1])` on `(N, T, C, ...)` with weight (C, 3)."""
    return _aggregate_relu(x, weight)


@tam_aggregate.register_fake
def _(x, weight):
    return torch.empty_like(x)


@torch.library.custom_op("actionbench::tam_aggregate_backward", mutates_args=())
def tam_aggregate_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor,
                           mask: list[bool]) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of `tam_aggregate` for x and weight (empty where `mask` is False)."""
    return tuple(grad.new_empty(0) if g is None else g for g in _aggregation_backward(grad, x, weight, out, mask))


@tam_aggregate_backward.register_fake
def _(grad, x, weight, out, mask):
    return (torch.empty_like(x) if mask[0] else grad.new_empty(0),
            torch.empty_like(weight) if mask[1] else grad.new_empty(0))


def _setup_tam_aggregate(ctx, inputs, output):
    ctx.save_for_backward(*inputs, output)


def _backward_tam_aggregate(ctx, grad):
    mask = list(ctx.needs_input_grad[:2])
    grads = torch.ops.actionbench.tam_aggregate_backward(grad, *ctx.saved_tensors, mask)
    return tuple(g if ok else None for g, ok in zip(grads, mask, strict=True))


tam_aggregate.register_autograd(_backward_tam_aggregate, setup_context=_setup_tam_aggregate)


class TemporalAggregation(nn.Module):
    """TAM (`full=False`) or Conv. (`full=True`) on `(N, T, C, H, W)` activations."""

    function = _DepthwiseAggregation.apply  # the TAM computation on (x, weight), for tests and reuse

    def __init__(self, channels: int, full: bool = False) -> None:
        super().__init__()
        self.channels, self.full = channels, full
        if full:
            self.conv = FrameConv2d(channels, 3 * channels, 1, bias=False)
        else:
            self.weight = nn.Parameter(torch.empty(channels, 3))  # (C, [prev, cur, next])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Random around the identity (centre weight 1): zero temporal weights leave prev/next with tiny, symmetric
        # gradients, and TAM trained from scratch then learnt no more than TSN in our CPU demo (45 % vs 96 % on the
        # synthetic temporal set, same budget).
        with torch.no_grad():
            if self.full:
                nn.init.normal_(self.conv.weight, std=0.5 / self.channels**0.5)
                self.conv.weight[self.channels : 2 * self.channels, :, 0, 0] += torch.eye(self.channels)
            else:
                nn.init.normal_(self.weight, std=0.5)
                self.weight[:, 1] += 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.full:
            y = self.conv(x)
            prev, cur, nxt = y.chunk(3, dim=2)
            return shifted_sum(prev, cur, nxt).relu_()
        mode = trace_mode()
        if mode == "export":
            return aggregate(x, self.weight)
        if mode == "compile":
            return torch.ops.actionbench.tam_aggregate(compiled_layout(x), self.weight)
        return _DepthwiseAggregation.apply(x, self.weight)

    def conv_macs(self, inputs: tuple, output: torch.Tensor) -> int:
        """Multiply-adds of the equivalent depthwise convolutions (the profiler's conv convention)."""
        return 0 if self.full else 3 * inputs[0].numel()  # Conv.: its FrameConv2d is counted itself

    def extra_repr(self) -> str:
        return f"channels={self.channels}, full={self.full}"
