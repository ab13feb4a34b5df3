"""Non-local block (Wang et al., CVPR 2018), embedded Gaussian, over all T*H*W positions of a clip.

The peers compute three variants of the same block; `subsample` and `scale` select one, so that each one's
checkpoints compute their function here:
- the paper's NLN-R50 (196 GFLOPs, 31.0 M): no sub-sampling, no scaling (our default);
- the TSM repo's `non_local.py` and mmcv's `NonLocal3d(sub_sample=True, use_scale=False)` (MMAction2's TSM+NL):
  phi and g max-pooled (1, 2, 2) after their 1x1 convs (`subsample="after"`), no scaling;
- PySlowFast's `Nonlocal` (C2D-NLN): the input max-pooled (1, 2, 2) before phi's and g's convs
  (`subsample="before"`) and the affinities scaled by inner_channels^-0.5 (`scale=True`).
`mode="dot_product"` is mmcv's and PySlowFast's other instantiation: affinities theta phi^T divided by the number of
positions instead of a softmax (the same keys as embedded Gaussian: only a checkpoint's config tells them apart).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from actionbench.models.layers import FrameBatchNorm2d, FrameConv2d, FrameMaxPool2d

SUBSAMPLING = ("none", "after", "before")
MODES = ("embedded_gaussian", "dot_product")


class NonLocalBlock(nn.Module):
    """`x + BN(W(softmax(theta(x)^T phi(x)) g(x)))` on `(N, T, C, H, W)`; inner width C/2.

    The BN after W starts at zero so that the block is the identity when inserted into a pretrained network.
    """

    def __init__(self, channels: int, inner_channels: int | None = None, subsample: str = "none",
                 scale: bool = False, mode: str = "embedded_gaussian") -> None:
        super().__init__()
        if subsample not in SUBSAMPLING:
            raise ValueError(f"non-local subsample must be one of {', '.join(SUBSAMPLING)}, got {subsample!r}")
        if mode not in MODES:
            raise ValueError(f"nonlocal_mode must be one of {', '.join(MODES)}, got {mode!r}")
        inner = inner_channels or channels // 2
        self.subsample, self.scale, self.mode = subsample, scale, mode
        self.theta = FrameConv2d(channels, inner, 1)
        self.phi = FrameConv2d(channels, inner, 1)
        self.g = FrameConv2d(channels, inner, 1)
        self.w = FrameConv2d(inner, channels, 1)
        self.bn = FrameBatchNorm2d(channels)
        self.pool = FrameMaxPool2d(2, 2) if subsample != "none" else nn.Identity()
        nn.init.zeros_(self.bn.weight)

    @staticmethod
    def _positions(y: torch.Tensor) -> torch.Tensor:
        # (N, T, C, H, W) -> (N, T*H*W, C)
        return y.permute(0, 1, 3, 4, 2).flatten(1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _, h, w = x.shape
        theta = self._positions(self.theta(x))
        if self.subsample == "before":
            pooled = self.pool(x)
            phi, g = self.phi(pooled), self.g(pooled)
        else:
            phi, g = self.pool(self.phi(x)), self.pool(self.g(x))
        phi, g = self._positions(phi), self._positions(g)
        # softmax(theta phi^T) g as one attention call: fused kernels that never hold the (THW)^2 affinities
        # (1.3 GB per clip in layer2 at 32 frames without sub-sampling) and accumulate in float32 under autocast,
        # where fp16 affinities would overflow
        if self.mode == "dot_product":  # (theta phi^T / P) g as theta (phi^T g) / P: no (THW)^2 matrix at all
            y = theta @ (phi.transpose(1, 2) @ g) / phi.shape[1]
        else:
            scale = theta.shape[-1] ** -0.5 if self.scale else 1.0
            y = F.scaled_dot_product_attention(theta.unsqueeze(1), phi.unsqueeze(1), g.unsqueeze(1),
                                               scale=scale).squeeze(1)
        y = y.view(n, t, h, w, -1).permute(0, 1, 4, 2, 3)
        return x + self.bn(self.w(y.contiguous()))

    def extra_repr(self) -> str:
        return f"subsample={self.subsample!r}, scale={self.scale}, mode={self.mode!r}"
