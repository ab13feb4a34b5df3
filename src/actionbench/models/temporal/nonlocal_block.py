"""Non-local block (Wang et al., CVPR 2018), embedded Gaussian, over all T*H*W positions of a clip."""

from __future__ import annotations

import torch
from torch import nn

from actionbench.models.layers import FrameBatchNorm2d, FrameConv2d


class NonLocalBlock(nn.Module):
    """`x + BN(W(softmax(theta(x)^T phi(x)) g(x)))` on `(N, T, C, H, W)`; inner width C/2, no subsampling.

    The BN after W starts at zero so that the block is the identity when inserted into a pretrained network.
    """

    def __init__(self, channels: int, inner_channels: int | None = None) -> None:
        super().__init__()
        inner = inner_channels or channels // 2
        self.theta = FrameConv2d(channels, inner, 1)
        self.phi = FrameConv2d(channels, inner, 1)
        self.g = FrameConv2d(channels, inner, 1)
        self.w = FrameConv2d(inner, channels, 1)
        self.bn = FrameBatchNorm2d(channels)
        nn.init.zeros_(self.bn.weight)

    @staticmethod
    def _positions(y: torch.Tensor) -> torch.Tensor:
        # (N, T, C, H, W) -> (N, T*H*W, C)
        return y.permute(0, 1, 3, 4, 2).flatten(1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _, h, w = x.shape
        theta, phi, g = self._positions(self.theta(x)), self._positions(self.phi(x)), self._positions(self.g(x))
        attention = torch.softmax(theta @ phi.transpose(1, 2), dim=-1)  # (N, THW, THW)
        y = (attention @ g).view(n, t, h, w, -1).permute(0, 1, 4, 2, 3)
        return x + self.bn(self.w(y.contiguous()))
