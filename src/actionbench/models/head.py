"""Classification head shared by every model: dropout, an FC per remaining time step, logits averaged over time."""

from __future__ import annotations

import torch
from torch import nn


class VideoHead(nn.Module):
    """Maps pooled features `(N, T, C)` to logits `(N, num_classes)`.

    The FC lives in the model as `model.fc` (torchvision's key); the head only applies it.
    """

    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, features: torch.Tensor, fc: nn.Linear) -> torch.Tensor:
        return fc(self.dropout(features)).mean(dim=1)


def pool_frames(x: torch.Tensor) -> torch.Tensor:
    """Spatial global average pool of `(N, T, C, H, W)` -> `(N, T, C)`."""
    return x.mean(dim=(3, 4))


def pool_volume(x: torch.Tensor) -> torch.Tensor:
    """Spatial global average pool of `(N, C, T, H, W)` -> `(N, T, C)`."""
    return x.mean(dim=(3, 4)).transpose(1, 2)
