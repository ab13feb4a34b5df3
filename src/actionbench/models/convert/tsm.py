"""The TSM authors' code, mit-han-lab/temporal-shift-module (`main.py` checkpoints and their released models).

A checkpoint is `{"epoch", "arch", "state_dict", "optimizer", "best_prec1"}` with DDP/DataParallel keys
`module.base_model.<torchvision ResNet key>`; a shifted conv is wrapped (`conv1.net.weight`), a block followed by a
non-local block too (`layer2.0.block.*`, the block's `nl.{theta,phi.0,g.0,W.0,W.1}`: convs with biases, phi and g
max-pooled after their convs), and the classifier is `new_fc` (or torchvision's `fc` when dropout was 0). The
file name says the frames (`segment8`) and temporal pooling (`tpool`, once after layer1); the weights do not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from actionbench.models.convert.source import ConversionError, Source, only_tensors, strip_prefix

_RULES = [
    (r"^base_model\.", ""),
    (r"\.net\.", "."),  # a shifted conv: TemporalShift(conv).net
    (r"^(layer\d+\.\d+)\.block\.", r"\1."),  # a block wrapped by NL3DWrapper
    (r"^(layer\d+\.\d+)\.nl\.", r"\1.nonlocal_block."),
    (r"\.nonlocal_block\.(g|phi)\.0\.", r".nonlocal_block.\1."),
    (r"\.nonlocal_block\.W\.0\.", ".nonlocal_block.w."),
    (r"\.nonlocal_block\.W\.1\.", ".nonlocal_block.bn."),
    (r"^new_fc\.", "fc."),
]
_PREPROCESSING = {"data.size": 224, "data.scale_size": 256, "data.sampling": "uniform", "test.num_clips": 1,
                 "test.num_crops": 1}  # ImageNet mean/std, as our ResNets; their test script's 1 clip x 1 crop


def _detect(raw: Mapping) -> bool:
    state = raw.get("state_dict", raw)
    return isinstance(state, Mapping) and any(str(k).startswith(("module.base_model.", "base_model."))
                                              for k in state)


def _unwrap(raw: Mapping) -> tuple[dict[str, torch.Tensor], dict]:
    state = raw.get("state_dict", raw)
    info = {k: raw[k] for k in ("arch", "epoch") if k in raw}
    if "best_prec1" in raw:
        info["best_prec1"] = float(raw["best_prec1"])
    return strip_prefix(only_tensors(state, "TSM checkpoint"), "module."), info


def _guess(state: Mapping[str, torch.Tensor], info: Mapping, path) -> dict:
    keys = [k.removeprefix("base_model.") for k in state]
    layer3 = {int(m[1]) for k in keys if (m := re.match(r"layer3\.(\d+)\.", k))}
    bottleneck = any(".conv3." in k for k in keys)
    if not layer3:
        raise ConversionError(f"{path}: no ResNet layer3 keys; only the TSM repo's ResNet models are supported")
    depth = {(False, 2): 18, (False, 6): 34, (True, 6): 50, (True, 23): 101}.get((bottleneck, len(layer3)))
    if depth is None:
        raise ConversionError(f"{path}: a ResNet with {len(layer3)} layer3 blocks is not in our zoo")
    if any(re.match(r"layer\d+\.\d+\.net\.", k) for k in keys) or "_block_" in Path(str(path)).name:
        raise ConversionError(f"{path}: the TSM repo's shift_place=block (the shift wraps the whole block); we "
                              "shift residually (blockres) only: not convertible")
    division = re.search(r"shift(\d+)", Path(str(path)).name)
    if division and int(division[1]) != 8:
        raise ConversionError(f"{path}: shift_div={division[1]} (a 1/{division[1]} fold shifted each way); our TSM "
                              "shifts 1/8: not convertible")
    shifted = any(re.search(r"\.conv\d\.net\.", k) for k in keys)
    name = f"{'tsm' if shifted else 'tsn'}_resnet{depth}"
    options = {}
    if any(".nl." in k for k in keys):
        sub = "after" if any(".nl.g.0." in k for k in keys) else "none"
        options = {"nonlocal_blocks": True, "nonlocal_at": "even", "nonlocal_subsample": sub}
    file_name = str(path)
    segments = re.search(r"segment(\d+)", file_name)
    pooled = "tpool" in file_name
    if pooled:
        options["pool_style"] = "tsm"
    # their README tests dense models with 10 clips x 3 full-resolution (256) crops, uniform ones 1 x 1 at 224
    protocol = ({"data.sampling": "dense", "data.stride": 8, "test.num_clips": 10, "test.num_crops": 3,
                 "test.size": 256, "test.scale_size": 256} if "dense" in file_name else {})
    if segments:
        protocol["data.frames"] = int(segments[1])
    return {"model": name, "temporal_pooling": pooled, "options": options, "preprocessing": protocol}


SOURCE = Source(
    "tsm",
    detect=_detect,
    unwrap=_unwrap,
    guess=_guess,
    rules=_RULES,
    preprocessing=_PREPROCESSING,
)
