"""InceptionV1 (GoogLeNet as in torchvision: no aux heads, the "5x5" branch is 3x3) in the paper's designs.

- tsn / tam / tconv: per-frame Conv2d on `(N, T, C, H, W)`; TAM (or Conv.) follows conv1, conv2, conv3 and every
  inception module, as in the paper's code (`temporal.<layer>` keys).
- i3d / s3d: Conv3d on `(N, C, T, H, W)`; conv1 7x7x7, every 3x3 -> 3x3x3 (S3D: (1,3,3)+BN+ReLU then
  (3,1,1)+BN+ReLU; conv1 3x7x7, not factorised), with I3D's temporal pools before inception3a/4a/5a. Their
  spatial max pools are the paper's code's (kernel 3, padding 1, floor; S3D's last: kernel 2), not torchvision's
  2D GoogLeNet ones (no padding, ceil): same sizes, other windows.
Temporal pooling (optional): max pool kernel 3 stride 2 in time after maxpool2, maxpool3 and maxpool4 (I3D/S3D:
their own temporal pools at those places get stride 2).
State-dict keys of the 2D designs are torchvision's (`conv1.conv.weight`, `inception3a.branch2.1.bn.weight`, ...).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from actionbench.models.base import VideoModel
from actionbench.models.head import VideoHead, pool_frames, pool_volume
from actionbench.models.layers import (
    FRAMES_TIME_DIM,
    VOLUME_TIME_DIM,
    FrameBatchNorm2d,
    FrameConv2d,
    FrameMaxPool2d,
    TemporalMaxPool,
    TimeConv3d,
)
from actionbench.models.registry import register_model
from actionbench.models.temporal import TemporalAggregation

INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
_VOLUMETRIC = ("i3d", "s3d")


class BasicConv(nn.Module):
    """conv (no bias) -> BN (eps 1e-3) -> ReLU; for S3D followed by a (kt,1,1) conv -> BN -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, design: str, stride: int = 1, kt: int | None = None,
                 temporal_padding: str = "zeros") -> None:
        super().__init__()
        pad = kernel // 2
        self.conv_t = self.bn_t = None
        if design not in _VOLUMETRIC:
            self.conv = FrameConv2d(cin, cout, kernel, stride, pad, bias=False)
            self.bn = FrameBatchNorm2d(cout, eps=0.001)
        else:
            kt = kernel if kt is None else kt
            factorise = design == "s3d" and kt > 1 and kernel > 1 and cin != 3
            conv_kt = 1 if factorise else kt
            self.conv = TimeConv3d(cin, cout, (conv_kt, kernel, kernel), (1, stride, stride), (conv_kt // 2, pad, pad),
                                   bias=False, temporal_padding=temporal_padding)
            self.bn = nn.BatchNorm3d(cout, eps=0.001)
            if factorise:
                self.conv_t = TimeConv3d(cout, cout, (kt, 1, 1), 1, (kt // 2, 0, 0), bias=False,
                                         temporal_padding=temporal_padding)
                self.bn_t = nn.BatchNorm3d(cout, eps=0.001)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(x)))
        if self.conv_t is not None:
            x = self.relu(self.bn_t(self.conv_t(x)))
        return x


class Inception(nn.Module):
    def __init__(self, cin: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int, pool_proj: int,
                 conv: partial, pool: nn.Module) -> None:
        super().__init__()
        self.branch1 = conv(cin, ch1x1, 1)
        self.branch2 = nn.Sequential(conv(cin, ch3x3red, 1), conv(ch3x3red, ch3x3, 3))
        self.branch3 = nn.Sequential(conv(cin, ch5x5red, 1), conv(ch5x5red, ch5x5, 3))
        self.branch4 = nn.Sequential(pool, conv(cin, pool_proj, 1))
        self.channel_dim = 1 if isinstance(pool, nn.MaxPool3d) else 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x))
        return torch.cat(branches, self.channel_dim)


# name: (in, 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool proj), torchvision's widths
_INCEPTIONS = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}
# I3D/S3D's own temporal max pools (kernel, padding) in front of these modules, i.e. right after maxpool2/3/4.
# They have stride 2 with temporal pooling and stride 1 without. The last one has kernel 2 and no padding in the
# model the paper measured (Table 3's 33.6 GFLOPs) and in the public S3D; the public I3D has kernel 3 / padding 1
# there (33.8 GFLOPs: `last_time_pool=3` builds it, for its checkpoints). Kernel 2 without temporal pooling drops
# one frame (8 -> 7), which we keep to match the published numbers.
_I3D_TIME_POOLS = {"inception3a": (3, 1), "inception4a": (3, 1)}
_LAST_TIME_POOLS = {2: (2, 0), 3: (3, 1)}  # kernel -> (kernel, padding)


class VideoInceptionV1(VideoModel):
    def __init__(self, design: str, num_classes: int, num_frames: int, temporal_pooling: bool = False,
                 dropout: float = 0.5, temporal_padding: str = "zeros", last_time_pool: int = 2) -> None:
        super().__init__(num_classes=num_classes, num_frames=num_frames, mean=INCEPTION_MEAN, std=INCEPTION_STD)
        if last_time_pool not in _LAST_TIME_POOLS or (last_time_pool != 2 and design != "i3d"):
            raise ValueError(f"last_time_pool must be 2 (the paper's model) or 3 (the public I3D code; i3d only), "
                             f"got {last_time_pool} for {design}_inception_v1")
        self.design = design
        self.temporal_pooling = temporal_pooling
        self.volumetric = design in _VOLUMETRIC
        conv = partial(BasicConv, design=design, temporal_padding=temporal_padding)
        if self.volumetric:
            time_dim = VOLUME_TIME_DIM

            def spatial_pool(kernel: int, stride: int) -> nn.Module:
                pad = (kernel - 1) // 2  # 1 for the 3x3 pools, 0 for S3D's last 2x2 one
                return nn.MaxPool3d((1, kernel, kernel), (1, stride, stride), (0, pad, pad))

            branch_pool = nn.MaxPool3d(3, 1, 1, ceil_mode=True)
        else:
            time_dim = FRAMES_TIME_DIM

            def spatial_pool(kernel: int, stride: int) -> nn.Module:
                return FrameMaxPool2d(kernel, stride, ceil_mode=True)

            branch_pool = FrameMaxPool2d(3, 1, 1, ceil_mode=True)
        # S3D's conv1 is not factorised; in the paper's model it is 3x7x7 (its 19.8 GFLOPs / 7.99 M params).
        self.conv1 = conv(3, 64, 7, stride=2, kt=3 if design == "s3d" else None)
        self.maxpool1 = spatial_pool(3, 2)
        self.conv2 = conv(64, 64, 1)
        self.conv3 = conv(64, 192, 3)
        self.maxpool2 = spatial_pool(3, 2)
        for name, widths in _INCEPTIONS.items():
            setattr(self, name, Inception(*widths, conv=conv, pool=branch_pool))
            if name == "inception3b":
                self.maxpool3 = spatial_pool(3, 2)
            elif name == "inception4e":
                self.maxpool4 = spatial_pool(3 if design == "i3d" else 2, 2)
        self.time_pools = nn.ModuleDict()
        if self.volumetric:
            pools = _I3D_TIME_POOLS | {"inception5a": _LAST_TIME_POOLS[last_time_pool]}
            for name, (kernel, padding) in pools.items():
                self.time_pools[name] = TemporalMaxPool(time_dim, kernel, 2 if temporal_pooling else 1, padding)
        pooled = temporal_pooling and not self.volumetric
        self.pool = TemporalMaxPool(time_dim) if pooled else nn.Identity()
        self.temporal = nn.ModuleDict()
        if design in ("tam", "tconv"):
            outputs = {"conv1": 64, "conv2": 64, "conv3": 192} | {n: _module_out(w) for n, w in _INCEPTIONS.items()}
            for name, channels in outputs.items():
                self.temporal[name] = TemporalAggregation(channels, full=design == "tconv")
        self.head = VideoHead(dropout)
        self.fc = nn.Linear(1024, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d | nn.Conv3d):
                if name.endswith("conv_t"):
                    nn.init.dirac_(m.weight)
                else:
                    nn.init.trunc_normal_(m.weight, std=0.01, a=-2, b=2)  # torchvision GoogLeNet's init
        nn.init.trunc_normal_(self.fc.weight, std=0.01, a=-2, b=2)
        nn.init.zeros_(self.fc.bias)
        for m in self.temporal.values():
            m.reset_parameters()

    def _layer(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name in self.time_pools:
            x = self.time_pools[name](x)
        x = getattr(self, name)(x)
        return self.temporal[name](x) if name in self.temporal else x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if not self.volumetric:
            x = x.transpose(1, 2).contiguous()
        x = self.maxpool1(self._layer("conv1", x))
        x = self._layer("conv3", self._layer("conv2", x))
        x = self.pool(self.maxpool2(x))
        for name in _INCEPTIONS:
            x = self._layer(name, x)
            if name == "inception3b":
                x = self.pool(self.maxpool3(x))
            elif name == "inception4e":
                x = self.pool(self.maxpool4(x))
        return pool_volume(x) if self.volumetric else pool_frames(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x), self.fc)


def _module_out(widths: tuple[int, ...]) -> int:
    _, ch1x1, _, ch3x3, _, ch5x5, pool_proj = widths
    return ch1x1 + ch3x3 + ch5x5 + pool_proj


def build_video_inception_v1(design: str, num_classes: int, num_frames: int, temporal_pooling: bool = False,
                             dropout: float = 0.5, *, temporal_padding: str = "zeros",
                             last_time_pool: int = 2) -> VideoInceptionV1:
    return VideoInceptionV1(design, num_classes, num_frames, temporal_pooling, dropout, temporal_padding,
                            last_time_pool)


for _design in ("tsn", "tam", "tconv", "i3d", "s3d"):
    register_model(f"{_design}_inception_v1")(partial(build_video_inception_v1, _design))
