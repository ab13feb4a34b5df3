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


def _per_frame(op, x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    y = op(x.flatten(0, 1))
    return y.view(n, -1, *y.shape[1:])


class FrameConv2d(nn.Conv2d):
    """A Conv2d applied to every frame of an `(N, T, C, H, W)` tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _per_frame(super().forward, x)


class FrameBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d over all frames of an `(N, T, C, H, W)` tensor (statistics over N*T*H*W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _per_frame(super().forward, x)


class FrameSyncBatchNorm(nn.SyncBatchNorm):
    """SyncBatchNorm over all frames of an `(N, T, C, H, W)` tensor: what `FrameBatchNorm2d` becomes with SyncBN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _per_frame(super().forward, x)


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Every BatchNorm -> SyncBatchNorm, keeping the per-frame layout of `FrameBatchNorm2d` (torch's converter
    rebuilds it as a plain SyncBatchNorm, which then normalises (N, T, C, H, W) with T as channels). Parameters and
    running statistics are shared with the module converted."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, nn.SyncBatchNorm):
        cls = FrameSyncBatchNorm if isinstance(module, FrameBatchNorm2d) else nn.SyncBatchNorm
        converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                        module.track_running_stats, process_group)
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        if module.track_running_stats:
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, process_group))
    return module


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
