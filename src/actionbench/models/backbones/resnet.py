"""ResNet-18/34/50/101 in every temporal design of the paper, with torchvision's state-dict keys.

One network, parameterised by a `Design`:
- 2D designs (tsn, tsm, tam, tconv, nln) run per-frame Conv2d on `(N, T, C, H, W)` activations; TSM / TAM / Conv.
  act on each block's input inside its residual branch, NLN adds non-local blocks after some blocks.
- 3D designs (i3d, s3d) run Conv3d on `(N, C, T, H, W)`: I3D turns every 3x3 into 3x3x3 and conv1 into 3x7x7;
  S3D factorises each 3x3x3 into (1,3,3)+BN+ReLU then (3,1,1)+BN+ReLU (new keys `convK_t`, `bnK_t`).
- i3d3x1: the I3D of the non-local paper that PySlowFast, PyTorchVideo and MMAction2 ship (`I3D_8x8_R50`,
  `i3d_r50`): conv1 5x7x7, a 3x1x1 kernel on the first 1x1 conv of every block of res2, of alternate blocks of
  res3/res4 (from the first) and of the middle block of res5; every 3x3 stays 1x3x3.
Temporal pooling (optional), `pool_style`: "paper" max-pools time (kernel 3, stride 2) after layer1, layer2 and
layer3 (I3D/S3D: temporal stride 2 in the first block of layer2..4 instead, as the paper's code); "tsm" once after
layer1 (the TSM repo, MMAction2's TSM and I3D); "c2d" once after layer1 with kernel 2 and no padding (PySlowFast's
C2D and I3D, PyTorchVideo's i3d_r50).
"""

from __future__ import annotations

from dataclasses import dataclass
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
from actionbench.models.temporal import NonLocalBlock, ShiftConv2d, TemporalAggregation

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# pool style -> (layers followed by a temporal max pool, kernel, padding); stride 2 everywhere
POOL_STYLES = {"paper": ((1, 2, 3), 3, 1), "tsm": ((1,), 3, 1), "c2d": ((1,), 2, 0)}
# i3d3x1: temporal kernel of each block's first conv, cycled over the blocks of res2..res5 (PySlowFast's basis)
I3D3X1_KERNELS = ((3,), (3, 1), (3, 1), (1, 3))


@dataclass(frozen=True)
class Design:
    """How a 2D ResNet becomes a video network."""

    name: str
    volumetric: bool = False  # Conv3d on (N, C, T, H, W) instead of per-frame Conv2d
    factorised: bool = False  # S3D: (1,3,3) then (3,1,1)
    temporal_padding: str = "zeros"

    @property
    def time_dim(self) -> int:
        return VOLUME_TIME_DIM if self.volumetric else FRAMES_TIME_DIM

    @property
    def inflates_3x3(self) -> bool:
        """I3D / S3D give the 3x3 convs time; i3d3x1 gives it to the first 1x1 conv of some blocks instead."""
        return self.volumetric and self.name != "i3d3x1"

    def conv(self, cin: int, cout: int, kernel: int, stride: int = 1, kt: int = 1, t_stride: int = 1) -> nn.Module:
        """A kernel x kernel spatial conv; for 3D designs kt frames deep with temporal stride t_stride."""
        pad = kernel // 2
        if not self.volumetric:
            return FrameConv2d(cin, cout, kernel, stride, pad, bias=False)
        return TimeConv3d(
            cin, cout, (kt, kernel, kernel), (t_stride, stride, stride), (kt // 2, pad, pad),
            bias=False, temporal_padding=self.temporal_padding,
        )

    def spatial_conv3x3(self, cin: int, cout: int, stride: int = 1, t_stride: int = 1,
                        shift: bool = False) -> nn.Module:
        if self.inflates_3x3 and not self.factorised:
            return self.conv(cin, cout, 3, stride, kt=3, t_stride=t_stride)
        if shift:
            return ShiftConv2d(cin, cout, 3, stride, 1, bias=False)
        return self.conv(cin, cout, 3, stride)

    def first_conv1x1(self, cin: int, cout: int, kt: int, shift: bool) -> nn.Module:
        """A bottleneck's first conv: TSM shifts its input (fused, `ShiftConv2d`), i3d3x1 gives it time."""
        return ShiftConv2d(cin, cout, 1, bias=False) if shift else self.conv(cin, cout, 1, kt=kt)

    def temporal_conv(self, channels: int, t_stride: int = 1) -> nn.Module | None:
        """S3D's (3,1,1) conv following each spatial 3x3; None for other designs."""
        if not self.factorised:
            return None
        return TimeConv3d(channels, channels, (3, 1, 1), (t_stride, 1, 1), (1, 0, 0), bias=False,
                          temporal_padding=self.temporal_padding)

    def bn(self, channels: int) -> nn.Module:
        return nn.BatchNorm3d(channels) if self.volumetric else FrameBatchNorm2d(channels)

    def branch_module(self, channels: int) -> nn.Module | None:
        """The temporal module on a block's input inside its residual branch (TSM's shift lives in conv1)."""
        if self.name in ("tam", "tconv"):
            return TemporalAggregation(channels, full=self.name == "tconv")
        return None


class _Block(nn.Module):
    """Shared by both block types: the optional temporal module, S3D temporal convs, the residual."""

    def _add_temporal_conv(self, index: int, channels: int, design: Design, t_stride: int = 1) -> None:
        conv_t = design.temporal_conv(channels, t_stride)
        setattr(self, f"conv{index}_t", conv_t)
        setattr(self, f"bn{index}_t", design.bn(channels) if conv_t is not None else None)

    def _conv_bn(self, index: int, x: torch.Tensor, last: bool) -> torch.Tensor:
        """convK -> bnK (-> ReLU -> convK_t -> bnK_t for S3D), ReLU unless it is the block's last conv."""
        x = getattr(self, f"bn{index}")(getattr(self, f"conv{index}")(x))
        conv_t = getattr(self, f"conv{index}_t", None)
        if conv_t is not None:
            x = getattr(self, f"bn{index}_t")(conv_t(self.relu(x)))
        return x if last else self.relu(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.temporal is None else self.temporal(x)
        for index in range(1, self.num_convs + 1):
            out = self._conv_bn(index, out, last=index == self.num_convs)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(out + identity)
        return out if self.nonlocal_block is None else self.nonlocal_block(out)


class BasicBlock(_Block):
    expansion = 1
    num_convs = 2

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, design: Design,
                 t_stride: int = 1, temporal: bool = True, kt: int = 1):
        super().__init__()
        self.temporal = design.branch_module(inplanes) if temporal else None
        self.conv1 = design.spatial_conv3x3(inplanes, planes, stride, t_stride, shift=temporal and design.name == "tsm")
        self.bn1 = design.bn(planes)
        self._add_temporal_conv(1, planes, design, t_stride)
        self.conv2 = design.spatial_conv3x3(planes, planes)
        self.bn2 = design.bn(planes)
        self._add_temporal_conv(2, planes, design)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.nonlocal_block = None


class Bottleneck(_Block):
    expansion = 4
    num_convs = 3

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, design: Design,
                 t_stride: int = 1, temporal: bool = True, kt: int = 1):
        super().__init__()
        self.temporal = design.branch_module(inplanes) if temporal else None
        self.conv1 = design.first_conv1x1(inplanes, planes, kt, shift=temporal and design.name == "tsm")
        self.bn1 = design.bn(planes)
        self.conv2 = design.spatial_conv3x3(planes, planes, stride, t_stride)  # stride here: ResNet v1.5
        self.bn2 = design.bn(planes)
        self._add_temporal_conv(2, planes, design, t_stride)
        self.conv3 = design.conv(planes, planes * 4, 1)
        self.bn3 = design.bn(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.nonlocal_block = None  # NLN: set on some blocks, applied after the residual sum


NONLOCAL_AT = ("odd", "even")


def nonlocal_positions(num_blocks: int, limit: int, at: str = "odd") -> list[int]:
    """Blocks followed by a non-local block, at most `limit` of them.

    "odd": every other block from index 1 (R50: [1, 3], [1, 3, 5]): the paper's NLN and PySlowFast's C2D-NLN.
    "even": from index 0 (R50: [0, 2], [0, 2, 4]): the TSM repo and MMAction2's TSM+NL configs.
    """
    if at not in NONLOCAL_AT:
        raise ValueError(f"nonlocal_at must be one of {', '.join(NONLOCAL_AT)}, got {at!r}")
    return list(range(1 if at == "odd" else 0, num_blocks, 2))[:limit]


class VideoResNet(VideoModel):
    def __init__(
        self,
        block: type[_Block],
        layers: list[int],
        design: Design,
        num_classes: int,
        num_frames: int,
        temporal_pooling: bool = False,
        dropout: float = 0.5,
        base_channels: int = 64,
        nonlocal_blocks: bool = False,
        *,
        pool_style: str = "paper",
        shift_every: int = 1,
        nonlocal_at: str = "odd",
        nonlocal_subsample: str = "none",
        nonlocal_scale: bool = False,
        nonlocal_mode: str = "embedded_gaussian",
        stem_temporal_stride: int = 1,
    ) -> None:
        super().__init__(num_classes=num_classes, num_frames=num_frames, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        if pool_style not in POOL_STYLES:
            raise ValueError(f"pool_style must be one of {', '.join(POOL_STYLES)}, got {pool_style!r}")
        self.design = design
        self.temporal_pooling, self.pool_style = temporal_pooling, pool_style
        self.inplanes = base_channels
        if design.volumetric:
            stem_kt = 5 if design.name == "i3d3x1" else 3
            self.conv1 = design.conv(3, base_channels, 7, 2, kt=stem_kt, t_stride=stem_temporal_stride)
            self.maxpool = nn.MaxPool3d((1, 3, 3), (stem_temporal_stride, 2, 2), (0, 1, 1))
        else:
            self.conv1 = design.conv(3, base_channels, 7, 2)
            self.maxpool = FrameMaxPool2d(3, 2, 1)
        self.bn1 = design.bn(base_channels)
        self.relu = nn.ReLU(inplace=True)
        widths = [base_channels * 2**i for i in range(4)]
        nl_limits = {2: 2, 3: 3} if nonlocal_blocks else {}
        nl_options = {"subsample": nonlocal_subsample, "scale": nonlocal_scale, "mode": nonlocal_mode}
        # The paper's I3D/S3D put the temporal stride in the first block of layer2..4 (its 3x3x3 conv and
        # shortcut); every other design max-pools time after the layers its pool style names.
        strided_time = temporal_pooling and design.inflates_3x3 and pool_style == "paper"
        pooled_after, kernel, padding = POOL_STYLES[pool_style]
        if not temporal_pooling or strided_time:
            pooled_after = ()
        for i, (width, count) in enumerate(zip(widths, layers, strict=True), start=1):
            t_stride = 2 if strided_time and i > 1 else 1
            kts = I3D3X1_KERNELS[i - 1] if design.name == "i3d3x1" else (1,)
            layer = self._make_layer(block, width, count, 1 if i == 1 else 2, t_stride, design, kts, shift_every,
                                     nonlocal_positions(count, nl_limits.get(i, 0), nonlocal_at), nl_options)
            setattr(self, f"layer{i}", layer)
        self.time_pools = nn.ModuleDict(
            {f"layer{i}": TemporalMaxPool(design.time_dim, kernel, 2, padding) for i in pooled_after})
        self.head = VideoHead(dropout)
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)
        self._init_weights()

    def _make_layer(self, block, planes, blocks, stride, t_stride, design, kts, shift_every, nonlocal_at,
                    nl_options) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                design.conv(self.inplanes, planes * block.expansion, 1, stride, t_stride=t_stride),
                design.bn(planes * block.expansion),
            )
        modules: list[_Block] = []
        for i in range(blocks):
            first = i == 0
            modules.append(block(self.inplanes, planes, stride if first else 1, downsample if first else None,
                                 design, t_stride if first else 1, temporal=i % shift_every == 0,
                                 kt=kts[i % len(kts)]))
            self.inplanes = planes * block.expansion
        # Non-local blocks live inside the block they follow, so torchvision's block indices (keys) stay intact.
        for i in nonlocal_at:
            modules[i].nonlocal_block = NonLocalBlock(self.inplanes, **nl_options)
        return nn.Sequential(*modules)

    def _init_weights(self) -> None:
        # torchvision's init for the 2D parts; temporal layers start as the identity so that ImageNet weights
        # keep their meaning at the start of fine-tuning (TAM / Conv. centre weight 1, S3D (3,1,1) Dirac).
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d | nn.Conv3d):
                if name.endswith("_t"):
                    nn.init.dirac_(m.weight)
                else:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():
            if isinstance(m, TemporalAggregation):
                m.reset_parameters()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """`(N, 3, T, H, W)` -> pooled features `(N, T', C)`."""
        if not self.design.volumetric:
            x = x.transpose(1, 2).contiguous()
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            if name in self.time_pools:
                x = self.time_pools[name](x)
        return pool_volume(x) if self.design.volumetric else pool_frames(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x), self.fc)


_DEPTHS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
}
DESIGNS = ("tsn", "tsm", "tam", "tconv", "nln", "i3d", "s3d")


def build_video_resnet(
    design_name: str,
    backbone: str,
    num_classes: int,
    num_frames: int,
    temporal_pooling: bool = False,
    dropout: float = 0.5,
    *,
    base_channels: int = 64,
    temporal_padding: str = "zeros",
    pool_style: str = "paper",
    nonlocal_blocks: bool = False,
    nonlocal_at: str = "odd",
    nonlocal_subsample: str = "none",
    nonlocal_scale: bool = False,
    nonlocal_mode: str = "embedded_gaussian",
    stem_temporal_stride: int = 1,
) -> VideoResNet:
    """Options beyond the paper's model select a peer's variant (docs/models.md): `pool_style`,
    `nonlocal_blocks` (non-local blocks in a 2D design: TSM+NL; `nln_*` always has them), `nonlocal_*`,
    `stem_temporal_stride` (i3d3x1: MMAction2's I3D strides its conv1 and first max pool by 2 in time)."""
    block, layers = _DEPTHS[backbone]
    nonlocal_blocks = nonlocal_blocks or design_name == "nln"
    if nonlocal_blocks and design_name in ("i3d", "s3d", "i3d3x1"):
        raise ValueError(f"nonlocal_blocks applies to 2D designs (tsn, tsm, tam, tconv, nln), not {design_name}")
    if not nonlocal_blocks and (nonlocal_at, nonlocal_subsample, nonlocal_scale, nonlocal_mode) != (
            "odd", "none", False, "embedded_gaussian"):
        raise ValueError(f"nonlocal_* options need non-local blocks (nln_*, or nonlocal_blocks=True), "
                         f"not {design_name}_{backbone}")
    if stem_temporal_stride != 1 and design_name != "i3d3x1":
        raise ValueError(f"stem_temporal_stride applies to i3d3x1_* models only, not {design_name}_{backbone}")
    design = Design(
        design_name,
        volumetric=design_name in ("i3d", "s3d", "i3d3x1"),
        factorised=design_name == "s3d",
        temporal_padding=temporal_padding,
    )
    # The TSM authors' code and MMAction2 shift in every other block when layer3 has 23 or more blocks (R101).
    shift_every = 2 if design_name == "tsm" and layers[2] >= 23 else 1
    model = VideoResNet(block, layers, design, num_classes, num_frames, temporal_pooling, dropout,
                        base_channels, nonlocal_blocks=nonlocal_blocks, pool_style=pool_style,
                        shift_every=shift_every, nonlocal_at=nonlocal_at, nonlocal_subsample=nonlocal_subsample,
                        nonlocal_scale=nonlocal_scale, nonlocal_mode=nonlocal_mode,
                        stem_temporal_stride=stem_temporal_stride)
    model.name = f"{design_name}_{backbone}"
    return model


for _design in DESIGNS:
    for _backbone in _DEPTHS:
        register_model(f"{_design}_{_backbone}")(partial(build_video_resnet, _design, _backbone))
for _backbone in ("resnet50", "resnet101"):
    register_model(f"i3d3x1_{_backbone}")(partial(build_video_resnet, "i3d3x1", _backbone))
