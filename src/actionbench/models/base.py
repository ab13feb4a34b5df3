"""The contract every zoo model keeps: `VideoModel`.

A model takes `(B, 3, T, H, W)` float clips normalised with its own `mean` / `std` (0-1 units, in `channel_order`)
and returns logits `(B, num_classes)`; its classifier is `fc` (an `nn.Linear`, key `fc.weight` as in torchvision).
These are attributes of the class, set by its constructor and changed only through `set_preprocessing` (checked),
never patched on from outside.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

CHANNEL_ORDERS = ("RGB", "BGR")


class VideoModel(nn.Module):
    """Base class of the zoo's models (VideoResNet, VideoInceptionV1, SlowFast)."""

    has_imagenet_parent: ClassVar[bool] = True  # a 2D ImageNet model its weights can be inflated from
    fc: nn.Linear

    def __init__(self, *, num_classes: int, num_frames: int, mean: tuple[float, float, float],
                 std: tuple[float, float, float]) -> None:
        super().__init__()
        self.num_classes, self.num_frames = num_classes, num_frames
        self.name = ""  # the registry name, set by build_model
        self.inflate_divide = False  # I3D/S3D: inflated 2D kernels divided by their temporal size
        self.mean, self.std, self.channel_order = tuple(mean), tuple(std), "RGB"
        self.classes: list[str] | None = None  # class names, when loaded from a checkpoint that has them

    def set_preprocessing(self, *, mean=None, std=None, channel_order: str | None = None) -> VideoModel:
        """The input normalisation the weights expect (a converted or fine-tuned checkpoint's); None keeps one."""
        for what, value in (("mean", mean), ("std", std)):
            if value is not None:
                if len(value) != 3 or not all(isinstance(v, int | float) for v in value):
                    raise ValueError(f"{what}: expected 3 numbers (one per channel, 0-1 units), got {value}")
                if what == "std" and min(value) <= 0:
                    raise ValueError(f"std: every value must be positive, got {value}")
                setattr(self, what, tuple(float(v) for v in value))
        if channel_order is not None:
            if channel_order not in CHANNEL_ORDERS:
                raise ValueError(f"channel_order: {channel_order!r} is not one of {', '.join(CHANNEL_ORDERS)}")
            self.channel_order = channel_order
        return self
