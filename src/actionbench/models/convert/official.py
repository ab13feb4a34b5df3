"""The paper's own code, IBM/action-recognition-pytorch: its released models and whatever its `train.py` writes.

A `train.py` checkpoint is `{"epoch", "arch", "state_dict" (DDP: `module.` keys), "best_top1" (maybe a CUDA
tensor), "optimizer", "scheduler"}`; `arch` names the model, e.g. `kinetics400-rgb-TAM-b3-sum-resnet-50-f32-...`
(its `network_name`, then `-f<frames>`). Our keys are theirs except:
- TAM `<block>.tam.{prev,curr,next}_se.fc1.weight` -> one `temporal.weight` (C, 3) (Conv.: `-allc`, full 1x1
  convs -> one `temporal.conv.weight` (3C, C, 1, 1)); InceptionV1's `tam1`..`tam5b` -> `temporal.conv1`..
  `temporal.inception5b`;
- S3D-InceptionV1's temporal convs have a bias, which the BN right after them makes redundant: it is folded into
  that BN's running mean (exact in eval and train mode);
- their I3D-InceptionV1 pools time with kernel 3 before inception5a (`last_time_pool=3`; the paper's model: 2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from actionbench.models.convert.source import ConversionError, Source, only_tensors, strip_prefix

_RULES = []  # their keys are ours, once `combine` has merged TAM and folded the S3D biases
_PREPROCESSING = {"data.size": 224, "data.scale_size": 256, "data.sampling": "uniform", "test.num_clips": 10,
                 "test.num_crops": 3}  # mean/std: the backbone's, as our models (ImageNet; InceptionV1 0.5/0.5)

_TAM = re.compile(r"^(?P<module>.*?)\.?(?P<name>tam\w*)\.(?P<which>prev|curr|next)_se\.fc1\.weight$")
_INCEPTION_TAM = {"tam1": "conv1", "tam2": "conv2", "tam3": "conv3"}
_ARCH = re.compile(
    r"(?P<tam>TAM-b(?P<blend>\d+)-(?P<method>\w+?)(?P<allc>-allc)?-)?"
    r"(?P<net>resnet-(?P<depth>\d+)|inception-v1|i3d-resnet-(?P<i3d_depth>\d+)|s3d-resnet-(?P<s3d_depth>\d+)"
    r"|i3d_v2|s3d)(?P<dw>-dw-t-conv)?(?P<ts>-ts(-(?P<pool>max|avg))?)?-f(?P<frames>\d+)")


def _detect(raw: Mapping) -> bool:
    state = raw.get("state_dict")
    if isinstance(raw.get("arch"), str) and isinstance(state, Mapping):
        return bool(_ARCH.search(raw["arch"]))
    keys = list(state if isinstance(state, Mapping) else raw)
    return any(".tam." in k or re.match(r"^(module\.)?tam\d", k) for k in keys)


def _unwrap(raw: Mapping) -> tuple[dict[str, torch.Tensor], dict]:
    state = raw["state_dict"] if isinstance(raw.get("state_dict"), Mapping) else raw
    info = {"arch": raw.get("arch"), "epoch": raw.get("epoch")}
    best = raw.get("best_top1")
    if best is not None:
        info["best_top1"] = float(best)  # a CUDA tensor in some files: map_location already brought it here
    return strip_prefix(only_tensors(state, "official checkpoint"), "module."), {k: v for k, v in info.items()
                                                                               if v is not None}


def _guess(state: Mapping[str, torch.Tensor], info: Mapping, path) -> dict:
    match = _ARCH.search(info.get("arch") or "")
    if not match:
        return {}
    if match["dw"]:
        raise ConversionError(f"{path}: arch {info['arch']!r} uses depthwise temporal convs (dw_t_conv), which our "
                              "S3D does not have")
    if match["tam"] and (match["blend"] != "3" or match["method"] != "sum"):
        raise ConversionError(f"{path}: arch {info['arch']!r}: only TAM with 3 blended frames summed is supported")
    if match["pool"] == "avg":
        raise ConversionError(f"{path}: arch {info['arch']!r} pools time by averaging; ours max-pools")
    net = match["net"]
    options = {}
    if net.startswith("resnet-"):
        design = ("tconv" if match["allc"] else "tam") if match["tam"] else "tsn"
        name = f"{design}_resnet{match['depth']}"
    elif net == "inception-v1":
        name = f"{('tconv' if match['allc'] else 'tam') if match['tam'] else 'tsn'}_inception_v1"
    elif net.startswith(("i3d-resnet", "s3d-resnet")):
        name = f"{net[:3]}_resnet{match['i3d_depth'] or match['s3d_depth']}"
    else:
        name = "i3d_inception_v1" if net == "i3d_v2" else "s3d_inception_v1"
        if net == "i3d_v2":
            options["last_time_pool"] = 3  # the public code's last temporal pool (the paper's model had 2)
    protocol = {"data.frames": int(match["frames"])}
    classes = {v.shape[0] for k, v in state.items() if k.endswith("fc.weight") and v.dim() == 2}
    if classes == {400}:  # their Kinetics releases are tested with dense sampling (frames_per_group 2) at 256
        protocol.update({"data.sampling": "dense", "data.stride": 2, "test.size": 256, "test.scale_size": 256})
    return {"model": name, "frames": int(match["frames"]), "temporal_pooling": bool(match["ts"]),
            "options": options, "preprocessing": protocol}


def _tam_target(module: str, name: str) -> str:
    if name == "tam":  # a ResNet block's TAM
        return f"{module}.temporal"
    return f"temporal.{_INCEPTION_TAM.get(name, 'inception' + name[3:])}"


def _combine(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key in [k for k in state if _TAM.match(k)]:
        m = _TAM.match(key)
        parts.setdefault(_tam_target(m["module"], m["name"]), {})[m["which"]] = state.pop(key)
    for target, found in parts.items():
        if set(found) != {"prev", "curr", "next"}:
            raise ConversionError(f"{target}: TAM needs prev, curr and next weights, found {sorted(found)}")
        prev, cur, nxt = found["prev"], found["curr"], found["next"]
        if prev.shape[1] == 1:  # depthwise: (C, 1, 1, 1) each -> (C, [prev, cur, next])
            state[f"{target}.weight"] = torch.stack([w.flatten() for w in (prev, cur, nxt)], dim=1)
        else:  # Conv.: full (C, C, 1, 1) each, stacked along the output channels
            state[f"{target}.conv.weight"] = torch.cat([prev, cur, nxt], dim=0)
    for key in [k for k in state if k.endswith(".conv_t.bias")]:
        bn = key.removesuffix("conv_t.bias") + "bn_t.running_mean"
        if bn not in state:
            raise ConversionError(f"{key}: no {bn} to fold the bias into")
        state[bn] = state[bn] - state.pop(key)  # BN(conv(x) + b) with mean m == BN(conv(x)) with mean m - b
    return state


SOURCE = Source(
    "official",
    detect=_detect,
    unwrap=_unwrap,
    guess=_guess,
    rules=_RULES,
    preprocessing=_PREPROCESSING,
    combine=_combine,
)
