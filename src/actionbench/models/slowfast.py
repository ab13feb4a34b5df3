"""SlowFast-ResNet50 8x8 (Feichtenhofer et al., ICCV 2019).

Input `(N, 3, 32, H, W)`: the fast pathway sees all 32 frames with 1/8 of the channels (beta), the slow pathway
8 of them (alpha = 4): every 4th (`slow_frames="stride"`, the default) or `linspace(0, T-1, T/alpha)` rounded down
(`"linspace"`, what PySlowFast's and PyTorchVideo's loaders feed their checkpoints). Fast-to-slow lateral
connections (7x1x1 convs, temporal stride alpha, 2x the fast channels; PySlowFast's FUSION_KERNEL_SZ and
PyTorchVideo's default) are concatenated to the slow pathway after the stem and after res2, res3 and res4.
Temporal kernels as in the paper: slow conv1 1x7x7 and 1x1x1 "a" convs in res2-3, 3x1x1 in res4-5; fast conv1
5x7x7 and 3x1x1 "a" convs everywhere. The bottleneck puts the temporal kernel in its first (1x1) conv, unlike
I3D's 3x3x3 middle conv, so it has its own block here.
"""

from __future__ import annotations

import torch
from torch import nn

from actionbench.models.backbones.resnet import IMAGENET_MEAN, IMAGENET_STD
from actionbench.models.base import VideoModel
from actionbench.models.head import VideoHead
from actionbench.models.registry import register_model


def _conv_bn(cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int] = (1, 1, 1)):
    padding = tuple(k // 2 for k in kernel)
    return nn.Conv3d(cin, cout, kernel, stride, padding, bias=False), nn.BatchNorm3d(cout)


class SlowFastBottleneck(nn.Module):
    """Tx1x1 conv a -> 1x3x3 conv b (spatial stride) -> 1x1x1 conv c, with a projection shortcut when needed."""

    def __init__(self, cin: int, width: int, cout: int, temporal_kernel: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, width, (temporal_kernel, 1, 1))
        self.conv2, self.bn2 = _conv_bn(width, width, (1, 3, 3), (1, stride, stride))
        self.conv3, self.bn3 = _conv_bn(width, cout, (1, 1, 1))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(*_conv_bn(cin, cout, (1, 1, 1), (1, stride, stride)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def _stage(cin: int, width: int, blocks: int, temporal_kernel: int, stride: int) -> nn.Sequential:
    layers = [SlowFastBottleneck(cin, width, width * 4, temporal_kernel, stride)]
    layers += [SlowFastBottleneck(width * 4, width, width * 4, temporal_kernel, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class Lateral(nn.Module):
    """Fast -> slow fusion: 7x1x1 conv with temporal stride alpha, BN, ReLU."""

    def __init__(self, fast_channels: int, alpha: int, ratio: int = 2, kernel: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv3d(fast_channels, fast_channels * ratio, (kernel, 1, 1), (alpha, 1, 1), (kernel // 2, 0, 0),
                              bias=False)
        self.bn = nn.BatchNorm3d(fast_channels * ratio)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, fast: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(fast)))


SLOW_FRAMES = ("stride", "linspace")


class SlowFast(VideoModel):
    has_imagenet_parent = False  # trained from scratch, as in the SlowFast paper

    def __init__(self, num_classes: int, num_frames: int = 32, alpha: int = 4, beta_inv: int = 8,
                 dropout: float = 0.5, layers: tuple[int, ...] = (3, 4, 6, 3), slow_frames: str = "stride") -> None:
        super().__init__(num_classes=num_classes, num_frames=num_frames, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        if num_frames % alpha:
            raise ValueError(f"SlowFast needs a frame count divisible by alpha={alpha}, got {num_frames}")
        if slow_frames not in SLOW_FRAMES:
            raise ValueError(f"slow_frames must be one of {', '.join(SLOW_FRAMES)}, got {slow_frames!r}")
        self.alpha, self.slow_frames = alpha, slow_frames
        slow_w, fast_w = 64, 64 // beta_inv
        self.slow_conv1, self.slow_bn1 = _conv_bn(3, slow_w, (1, 7, 7), (1, 2, 2))
        self.fast_conv1, self.fast_bn1 = _conv_bn(3, fast_w, (5, 7, 7), (1, 2, 2))
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        self.laterals = nn.ModuleList()
        self.slow_stages = nn.ModuleList()
        self.fast_stages = nn.ModuleList()
        slow_in, fast_in = slow_w, fast_w
        for i, blocks in enumerate(layers):
            self.laterals.append(Lateral(fast_in, alpha))
            slow_in += 2 * fast_in  # concatenated fast features
            stride = 1 if i == 0 else 2
            self.slow_stages.append(_stage(slow_in, slow_w * 2**i, blocks, 1 if i < 2 else 3, stride))
            self.fast_stages.append(_stage(fast_in, fast_w * 2**i, blocks, 3, stride))
            slow_in, fast_in = slow_w * 2**i * 4, fast_w * 2**i * 4
        self.laterals = self.laterals[: len(layers)]
        self.head = VideoHead(dropout)
        self.fc = nn.Linear(slow_in + fast_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def slow_pathway_input(self, x: torch.Tensor) -> torch.Tensor:
        """The slow pathway's frames of `(N, 3, T, H, W)`."""
        t = x.shape[2]
        if self.slow_frames == "stride":
            return x[:, :, :: self.alpha]
        return x[:, :, torch.linspace(0, t - 1, t // self.alpha).long()]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        slow = self.maxpool(self.relu(self.slow_bn1(self.slow_conv1(self.slow_pathway_input(x)))))
        fast = self.maxpool(self.relu(self.fast_bn1(self.fast_conv1(x))))
        for lateral, slow_stage, fast_stage in zip(self.laterals, self.slow_stages, self.fast_stages, strict=True):
            slow = slow_stage(torch.cat([slow, lateral(fast)], dim=1))
            fast = fast_stage(fast)
        pooled = torch.cat([slow.mean(dim=(2, 3, 4)), fast.mean(dim=(2, 3, 4))], dim=1)
        return pooled.unsqueeze(1)  # (N, 1, C): one time step for the shared head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x), self.fc)


@register_model("slowfast_resnet50")
def build_slowfast_resnet50(num_classes: int, num_frames: int = 32, temporal_pooling: bool = False,
                            dropout: float = 0.5, *, slow_frames: str = "stride") -> SlowFast:
    """SlowFast-R50 8x8; `temporal_pooling` does not apply (its pathways set their own temporal resolution)."""
    if temporal_pooling:
        raise ValueError("slowfast_resnet50 has no temporal pooling option: its pathways fix their frame rates")
    return SlowFast(num_classes, num_frames, dropout=dropout, slow_frames=slow_frames)
