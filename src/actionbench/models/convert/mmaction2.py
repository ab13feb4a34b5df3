"""MMAction2 (0.x and 1.x): TSN, TSM, TSM+NL (`ResNetTSM`) and I3D (`ResNet3d`) ResNet checkpoints.

A checkpoint is `{"meta", "state_dict", "optimizer", ...}` with `backbone.*` keys in mmcv's ConvModule naming
(`conv1.conv` / `conv1.bn` for torchvision's `conv1` / `bn1`, `downsample.conv` / `downsample.bn` for
`downsample.0` / `.1`) and the classifier at `cls_head.fc_cls`. TSM wraps shifted convs (`conv1.conv.net`) and
blocks followed by a non-local block (`layer2.0.block.*`, the block's `non_local_block.{g,theta,phi,conv_out}`:
mmcv's NonLocal3d, phi and g max-pooled after their convs, `conv_out` without a bias). Their I3D-R50
(`i3d_imagenet-pretrained-r50`) is our `i3d3x1_resnet50` with MMAction2's strides: conv1 and the first max pool
stride 2 in time, `pool2` after layer1: MaxPool3d((2,1,1), stride (2,1,1)), our `c2d`; 32 frames taken every 2nd.
Inputs are normalised with mean (123.675, 116.28, 103.53) and std (58.395, 57.12, 57.375) on 0-255 RGB values:
ImageNet's 0-1 values times 255, our ResNets' normalisation exactly.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from actionbench.models.convert.source import ConversionError, Source, only_tensors, strip_prefix

log = logging.getLogger(__name__)

_RULES = [
    (r"^backbone\.", ""),
    (r"^cls_head\.fc_cls\.", "fc."),
    (r"^(layer\d)\.net\.", r"\1."),  # temporal pooling: TemporalPool(layer2).net
    (r"^(layer\d+\.\d+)\.block\.", r"\1."),  # NL3DWrapper
    (r"\.conv\.net\.", ".conv."),  # a shifted conv: TemporalShift(conv).net
    (r"(^|\.)conv(\d)\.conv\.", r"\1conv\2."),
    (r"(^|\.)conv(\d)\.bn\.", r"\1bn\2."),
    (r"\.downsample\.conv\.", ".downsample.0."),
    (r"\.downsample\.bn\.", ".downsample.1."),
    (r"\.non_local_block\.(g|phi)\.0\.", r".non_local_block.\1."),  # sub-sampled: Sequential(conv, pool)
    (r"\.non_local_block\.(g|theta|phi)\.conv\.", r".nonlocal_block.\1."),
    (r"\.non_local_block\.conv_out\.conv\.", ".nonlocal_block.w."),
    (r"\.non_local_block\.conv_out\.bn\.", ".nonlocal_block.bn."),
]
_ZERO_KEYS = r"\.nonlocal_block\.w\.bias$"  # mmcv's conv_out has a norm and therefore no bias
_PREPROCESSING = {"data.size": 224, "data.scale_size": 256, "data.sampling": "uniform", "test.num_clips": 1,
                 "test.num_crops": 3}


def _detect(raw: Mapping) -> bool:
    state = raw.get("state_dict", raw)
    keys = [str(k) for k in state] if isinstance(state, Mapping) else []
    return any(k.startswith("backbone.") for k in keys) and any(k.startswith("cls_head.") for k in keys)


def _unwrap(raw: Mapping) -> tuple[dict[str, torch.Tensor], dict]:
    state = raw.get("state_dict", raw)
    meta = raw.get("meta") if isinstance(raw.get("meta"), Mapping) else {}
    info = {k: meta[k] for k in ("epoch", "iter", "mmengine_version", "mmaction2_version", "mmaction_version")
            if isinstance(meta.get(k), str | int)}
    cfg = meta.get("cfg", meta.get("config"))
    if isinstance(cfg, str):
        info["_cfg"] = cfg  # their whole config as text (mmengine's pretty_text); read, not recorded
    return strip_prefix(only_tensors(state, "MMAction2 checkpoint"), "module."), info


def _guess(state: Mapping[str, torch.Tensor], info: Mapping, path) -> dict:
    keys = list(state)
    layer3 = {int(m[1]) for k in keys if (m := re.match(r"backbone\.layer3\.(\d+)\.", k))}
    bottleneck = any(".conv3." in k for k in keys)
    depth = {(False, 2): 18, (False, 6): 34, (True, 6): 50, (True, 23): 101}.get((bottleneck, len(layer3)))
    if depth is None:
        raise ConversionError(f"{path}: a ResNet with {len(layer3)} layer3 blocks is not in our zoo")
    stem = state.get("backbone.conv1.conv.weight")
    if stem is not None and stem.dim() == 5:  # ResNet3d
        if stem.shape[2] != 5 or any(v.dim() == 5 and v.shape[2] == 3 and ".conv2." in k for k, v in state.items()):
            raise ConversionError(f"{path}: an MMAction2 ResNet3d other than I3D-R50/R101 with 3x1x1 inflation "
                                  f"(conv1 {tuple(stem.shape)}); not in our zoo")
        return {"model": f"i3d3x1_resnet{depth}", "temporal_pooling": True,
                "options": {"pool_style": "c2d", "stem_temporal_stride": 2},  # pool2: MaxPool3d((2,1,1), (2,1,1))
                "preprocessing": {"data.frames": 32, "data.sampling": "dense", "data.stride": 2,
                                  "test.num_clips": 10, "test.num_crops": 3, "test.scale_size": 256,
                                  "test.size": 256, **test_protocol(info, path)}}
    shifted = any(".conv.net." in k for k in keys)
    options = {}
    if any(".non_local_block." in k for k in keys):
        sub = "after" if any(".non_local_block.g.0." in k for k in keys) else "none"
        options = {"nonlocal_blocks": True, "nonlocal_at": _nonlocal_at(keys, path), "nonlocal_subsample": sub,
                   "nonlocal_mode": _nonlocal_mode(info, path)}
    return {"model": f"{'tsm' if shifted else 'tsn'}_resnet{depth}", "options": options,
            "preprocessing": {"data.frames": 8, **test_protocol(info, path)}}


_CROPS = {"CenterCrop": 1, "ThreeCrop": 3, "TenCrop": 10}


def _pipeline(text: str) -> list[dict] | None:
    """The steps of `test_pipeline = [dict(type=...), ...]` in a config's text (mmengine's pretty_text is Python),
    as dicts of their literal arguments; None when the text has none."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "test_pipeline" for t in node.targets)
                and isinstance(node.value, ast.List)):
            steps = []
            for item in node.value.elts:
                if isinstance(item, ast.Call) and getattr(item.func, "id", None) == "dict":
                    step = {}
                    for kw in item.keywords:
                        with contextlib.suppress(ValueError, TypeError):
                            step[kw.arg] = ast.literal_eval(kw.value)
                    steps.append(step)
            return steps
    return None


def test_protocol(info: Mapping, path) -> dict:
    """The authors' test protocol, from the `test_pipeline` of the config the checkpoint carries (`meta['cfg']`):
    SampleFrames (clip length, frame interval, clips; TSN-style segments when clip_len is 1), Resize's short side,
    CenterCrop / ThreeCrop / TenCrop and their size. A step we cannot reproduce is refused by name."""
    steps = _pipeline(info.get("_cfg", ""))
    if not steps:
        return {}
    protocol: dict = {}
    where = f"{path}: its meta['cfg'] test_pipeline"
    for step in steps:
        kind = step.get("type")
        if kind == "SampleFrames":
            clip_len, interval = int(step.get("clip_len", 1)), int(step.get("frame_interval", 1))
            clips = int(step.get("num_clips", 1))
            if clip_len == 1:  # TSN/TSM: num_clips segments, one frame each
                protocol.update({"data.frames": clips, "data.sampling": "uniform", "test.num_clips": 1})
                if step.get("twice_sample"):
                    log.warning("%s asks for twice_sample (segment starts as a second view); not reproduced: the "
                                "test uses the segment centres only (test.num_clips=1)", where)
            else:
                protocol.update({"data.frames": clip_len, "data.sampling": "dense", "data.stride": interval,
                                 "test.num_clips": clips})
        elif kind == "Resize":
            scale = step.get("scale")
            if isinstance(scale, tuple | list) and len(scale) == 2 and scale[0] == -1:
                protocol["test.scale_size"] = int(scale[1])
            elif step.get("keep_ratio") is False or not isinstance(scale, tuple | list):
                raise ConversionError(f"{where} resizes to {scale} (keep_ratio={step.get('keep_ratio')}); we resize "
                                      "the shorter side only: give --protocol test.scale_size=N to use ours")
            else:
                protocol["test.scale_size"] = int(min(scale))
        elif kind in _CROPS:
            size = step.get("crop_size")
            protocol["test.num_crops"] = _CROPS[kind]
            if size is not None:
                protocol["test.size"] = int(size if isinstance(size, int) else min(size))
        elif kind in ("MultiScaleCrop", "RandomResizedCrop", "Flip", "Imgaug"):
            raise ConversionError(f"{where} has {kind}, a training-time augmentation we do not apply at test time")
    return protocol


_MODE_NAMES = {"dot_product": "dot_product", "dot-product": "dot_product", "dotproduct": "dot_product",
               "embedded_gaussian": "embedded_gaussian", "embedded-gaussian": "embedded_gaussian",
               "gaussian": "gaussian"}


def _nonlocal_mode(info: Mapping, path) -> str | None:
    """mmcv's NonLocal3d mode, from the config the checkpoint carries and from its file name; both must agree.
    Dot-product and embedded-Gaussian blocks have the same keys: None when neither says (convert asks)."""
    said = {}
    match = re.search(r"non_local_cfg\s*=\s*dict\(.{0,400}?\bmode\s*=\s*['\"](\w+)['\"]", info.get("_cfg", ""), re.S)
    if match:
        said["its meta['cfg']"] = _MODE_NAMES.get(match[1], match[1])
    name = re.search(r"(dot[-_]?product|embedded[-_]gaussian|(?<![a-z_-])gaussian)", Path(str(path)).name)
    if name:
        said["its file name"] = _MODE_NAMES[name[1]]
    if len(set(said.values())) > 1:
        raise ConversionError(f"{path}: the non-local mode is {' but '.join(f'{v} by {k}' for k, v in said.items())}")
    mode = next(iter(said.values()), None)
    if mode == "gaussian":
        raise ConversionError(f"{path}: mmcv's 'gaussian' non-local (no theta/phi convs) is not among our options "
                              "(nonlocal_mode: embedded_gaussian, dot_product)")
    return mode


def _nonlocal_at(keys: list[str], path) -> str:
    blocks = sorted({m[1] for k in keys if (m := re.match(r"backbone\.(layer\d+\.\d+)\.non_local_block\.", k))})
    for at, expected in (("even", ["layer2.0", "layer2.2", "layer3.0", "layer3.2", "layer3.4"]),
                         ("odd", ["layer2.1", "layer2.3", "layer3.1", "layer3.3", "layer3.5"])):
        if blocks == expected:
            return at
    raise ConversionError(f"{path}: non-local blocks after {blocks}: a placement we do not have")


SOURCE = Source(
    "mmaction2",
    detect=_detect,
    unwrap=_unwrap,
    guess=_guess,
    rules=_RULES,
    preprocessing=_PREPROCESSING,
    zero_keys=_ZERO_KEYS,
)
