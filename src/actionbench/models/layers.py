"""Layers shared by every backbone.

2D designs keep activations as `(N, T, C, H, W)` and run per-frame 2D ops on the folded `(N*T, C, H, W)` view
(a free reshape), so temporal modules always see T and the state-dict keys stay torchvision's.
3D designs keep the usual `(N, C, T, H, W)` layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FRAMES_TIME_DIM = 1  # (N, T, C, H, W)
VOLUME_TIME_DIM = 2  # (N, C, T, H, W)


def trace_mode() -> str:
    """How the model is being run, for the temporal modules' three paths (the same function in all three):
    "eager" (hand-written in-place kernels, fastest), "compile" (torch.compile: the same kernels as opaque
    torch.library custom ops with fake kernels and autograd, so inductor keeps them) or "export" (torch.export,
    both ONNX exporters, torch.jit.trace: plain tensor ops, so the file needs no actionbench to run). Called in every
    TSM / TAM forward: flag reads only (torch.onnx's own check imported torch.onnx in eager training)."""
    if torch.jit.is_tracing() or torch.compiler.is_exporting():
        return "export"
    return "compile" if torch.compiler.is_compiling() else "eager"


def compiled_layout(x: torch.Tensor) -> torch.Tensor:
    """`(N, T, C, H, W)` frames laid out as torch.compile runs CPU convolutions (channels_last), for the custom ops
    between convolutions: the previous kernel then writes that layout directly and no transpose is needed on
    either side (in the default layout, inductor added a copy per TAM and ran TSM's convolution in NCHW, 3-10 %
    of a compiled inference). Other devices keep the layout they have."""
    if x.device.type != "cpu":
        return x
    return x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, x.shape[:2])


def in_layout_of(tensor: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """`tensor` with `reference`'s strides (a copy only where they differ): gradients in their input's layout, as
    the custom ops' fake kernels promise (`empty_like(reference)`), whatever layout the kernels inside chose."""
    if tensor.stride() == reference.stride():
        return tensor
    return torch.empty_like(reference, dtype=tensor.dtype).copy_(tensor)


def _per_frame(op, x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    y = op(x.flatten(0, 1))
    return y.view(n, -1, *y.shape[1:])


class FrameConv2d(nn.Conv2d):
    """A Conv2d applied to every frame of an `(N, T, C, H, W)` tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _per_frame(super().forward, x)


class FrameBatchNorm2d(nn.Module):
    """BatchNorm over all frames of an `(N, T, C, H, W)` tensor (statistics over N*T*H*W): a plain
    `nn.BatchNorm2d` (`.bn`) on the folded `(N*T, C, H, W)` view.

    The BN is a child, not this module's base class, so that torch's own `SyncBatchNorm.convert_sync_batchnorm`
    (what PyTorch's DDP docs and Lightning's `sync_batchnorm=True` call) replaces just it with a SyncBatchNorm that
    sees channels where they are; a BatchNorm2d subclass that reshaped inside its forward was rebuilt as a plain
    SyncBatchNorm taking T for the channels. State-dict keys stay the BN's own (`bn1.weight`, torchvision's): the
    child's `bn.` is taken out of them on saving and put back on loading.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, eps, momentum, affine, track_running_stats)
        self.register_state_dict_post_hook(_unnest_bn_keys)
        self.register_load_state_dict_pre_hook(_nest_bn_keys)

    @property
    def weight(self) -> nn.Parameter:
        return self.bn.weight

    @property
    def bias(self) -> nn.Parameter:
        return self.bn.bias

    @property
    def num_features(self) -> int:
        return self.bn.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _per_frame(self.bn, x)


def _unnest_bn_keys(module: nn.Module, state_dict: dict, prefix: str, local_metadata) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "bn.")]:
        state_dict[prefix + key[len(prefix) + 3:]] = state_dict.pop(key)


def _nest_bn_keys(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        if prefix + name in state_dict:
            state_dict[prefix + "bn." + name] = state_dict.pop(prefix + name)


class FrameMaxPool2d(nn.MaxPool2d):
    """MaxPool2d applied to every frame of an `(N, T, C, H, W)` tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _per_frame(super().forward, x)


class TimeConv3d(nn.Conv3d):
    """Conv3d whose temporal padding can replicate the border frames instead of adding zeros.

    Replicate padding in time (spatial padding stays zero) makes an inflated I3D see a static clip exactly
    as its 2D parent sees one image: the "boring video" property of the I3D paper.
    """

    def __init__(self, *args, temporal_padding: str = "zeros", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if temporal_padding not in ("zeros", "replicate"):
            raise ValueError(f"temporal_padding must be 'zeros' or 'replicate', got {temporal_padding!r}")
        self.time_pad = 0
        if temporal_padding == "replicate" and self.padding[0] > 0:
            self.time_pad = self.padding[0]
            self.padding = (0, *self.padding[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_pad:
            x = F.pad(x, (0, 0, 0, 0, self.time_pad, self.time_pad), mode="replicate")
        return super().forward(x)


def temporal_max_pool(x: torch.Tensor, time_dim: int, kernel: int = 3, stride: int = 2, padding: int = 1):
    """Max pool along time only (the paper's temporal pooling: kernel 3, stride 2, padding 1)."""
    if time_dim == VOLUME_TIME_DIM:
        return F.max_pool3d(x, (kernel, 1, 1), (stride, 1, 1), (padding, 0, 0))
    y = F.max_pool3d(x.transpose(1, 2), (kernel, 1, 1), (stride, 1, 1), (padding, 0, 0))
    return y.transpose(1, 2).contiguous()


class TemporalMaxPool(nn.Module):
    """Module form of :func:`temporal_max_pool` for a given layout."""

    def __init__(self, time_dim: int, kernel: int = 3, stride: int = 2, padding: int = 1) -> None:
        super().__init__()
        self.time_dim, self.kernel, self.stride, self.padding = time_dim, kernel, stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return temporal_max_pool(x, self.time_dim, self.kernel, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}, padding={self.padding}"
