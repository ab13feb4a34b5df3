"""Parameter counting."""

from torch import nn


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (every one, as the paper counts, or only trainable ones)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
