"""The one way from a model config (`model.*` keys) to a model: training, studies' checks, convert, profile,
test and predict all build through `build_from_config`."""

from __future__ import annotations

from pathlib import Path

from actionbench.config import ModelConfig
from actionbench.models.base import VideoModel
from actionbench.models.registry import build_model


def model_options(model: ModelConfig) -> dict:
    """The builder options of a model config: `model.options`, and `base_channels` for the ResNet family (not
    SlowFast, not InceptionV1), and `inflate_divide` when set."""
    name = model.name
    width = {"base_channels": model.base_channels} if "resnet" in name and not name.startswith("slowfast") else {}
    divide = {"inflate_divide": True} if model.inflate_divide else {}
    return {**width, **model.options, **divide}


def build_from_config(model: ModelConfig, num_classes: int, num_frames: int, *, weights: bool = True) -> VideoModel:
    """The model `model` describes, with its input normalisation; `weights=False` leaves out `model.pretrained`
    and `model.init_from` (a checkpoint's own weights replace them, or only shapes are wanted)."""
    from actionbench.models.weights import load_weights

    net = build_model(model.name, num_classes, num_frames, temporal_pooling=model.temporal_pooling,
                      dropout=model.dropout, pretrained=model.pretrained if weights else None,
                      **model_options(model))
    net.set_preprocessing(mean=model.mean, std=model.std, channel_order=model.channel_order)
    if weights and model.init_from:
        load_weights(net, model.init_from)
    return net


def model_from_checkpoint(state: dict) -> VideoModel:
    """The model an actionbench checkpoint's contents (`model`, `config`, `classes`) describe, its weights loaded
    (they replace `model.pretrained` / `model.init_from`); its class names are `model.classes`."""
    from actionbench.config import from_dict

    cfg = from_dict(state["config"])
    net = build_from_config(cfg.model, len(state["classes"]), cfg.data.frames, weights=False)
    net.load_state_dict(state["model"])
    net.classes = list(state["classes"])
    return net


def load_model(path: str | Path, device: str = "cpu") -> VideoModel:
    """The model of an actionbench checkpoint (a run directory's best.pt or last.pt, or one made by `actionbench
    convert`), in eval mode on `device`."""
    from actionbench.models.weights import load_checkpoint

    return model_from_checkpoint(load_checkpoint(path)).eval().to(device)
