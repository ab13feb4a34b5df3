"""Model registry: `build_model(name, ...)` and `list_models()` (timm-style decorator registration)."""

from __future__ import annotations

import difflib
from collections.abc import Callable

from torch import nn

from actionbench.errors import UsageError
from actionbench.models.base import VideoModel

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


class UnknownModelError(UsageError):
    """A model name the registry does not have (a ValueError too)."""


def register_model(name: str) -> Callable:
    """Register `builder(num_classes, num_frames, temporal_pooling, dropout, **options)` under `name`."""

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = builder
        return builder

    return decorator


def _load_builders() -> None:
    # Importing the builder modules registers their models.
    from actionbench.models import slowfast  # noqa: F401
    from actionbench.models.backbones import inception, resnet  # noqa: F401


def list_models() -> list[str]:
    """Names of every model `build_model` knows, sorted."""
    _load_builders()
    return sorted(_BUILDERS)


def check_model_name(name: str) -> None:
    """A ValueError naming the closest known models when `name` is not one."""
    _load_builders()
    if name not in _BUILDERS:
        close = difflib.get_close_matches(name, _BUILDERS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown model {name!r}.{hint} `actionbench profile --all` lists every model.")


def build_model(
    name: str,
    num_classes: int,
    num_frames: int,
    temporal_pooling: bool = False,
    dropout: float = 0.5,
    pretrained: str | None = None,
    **options,
) -> VideoModel:
    """Build a video model taking `(B, 3, T, H, W)` and returning logits `(B, num_classes)`.

    `pretrained`: a local torchvision-format 2D ImageNet state dict, or "imagenet" (downloaded when online);
    I3D/S3D inflate it. Options: `base_channels` (ResNet width), `temporal_padding` ("zeros" | "replicate"),
    `inflate_divide` (divide inflated kernels by their temporal size, as the I3D paper does).
    """
    check_model_name(name)
    inflate_divide = options.pop("inflate_divide", False)
    model = _BUILDERS[name](num_classes, num_frames, temporal_pooling, dropout, **options)
    if not isinstance(model, VideoModel):
        raise TypeError(f"the builder of {name!r} returned a {type(model).__name__}, not a VideoModel")
    model.name, model.inflate_divide = name, bool(inflate_divide)
    if pretrained:
        from actionbench.models.weights import load_pretrained

        load_pretrained(model, pretrained)
    return model
