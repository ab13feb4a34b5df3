"""PySlowFast (facebookresearch/SlowFast) `.pyth` checkpoints: SlowFast-R50 8x8, I3D-R50 8x8, C2D(-NLN)-R50.

A checkpoint is `{"epoch", "model_state", "optimizer_state", "cfg"}`; `cfg` is the run's YAML (its MODEL.ARCH,
DATA.NUM_FRAMES / SAMPLING_RATE / MEAN / STD, TEST crops and views are read from it when present). Keys:
`s1.pathway{0,1}_stem.{conv,bn}`, `s{1..4}_fuse.{conv_f2s,bn}` (SlowFast laterals), `s{2..5}.pathway{p}_res{j}.`
`{branch1,branch1_bn,branch2.{a,a_bn,b,b_bn,c,c_bn}}`, `s{k}.pathway0_nonlocal{j}.{conv_theta,conv_phi,conv_g,
conv_out,bn}` (their Nonlocal: the input max-pooled before phi and g, affinities scaled by inner^-0.5),
`head.projection`. C2D's kernels are one-frame 3D kernels (squeezed to 2D here) and its `pathway0_pool` max-pools
time with kernel 2 after res2 (`pool_style="c2d"`); I3D's too. Their loader feeds SlowFast's slow pathway
`linspace(0, T-1, T/alpha)` frames (`slow_frames="linspace"`), normalised with mean 0.45 and std 0.225.
The older caffe2 `.pkl` checkpoints are not read: they cannot be loaded without unpickling arbitrary objects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import yaml

from actionbench.models.convert.source import ConversionError, Source, only_tensors, strip_prefix

_PARTS = {"a": "conv1", "a_bn": "bn1", "b": "conv2", "b_bn": "bn2", "c": "conv3", "c_bn": "bn3"}
_NONLOCAL = {"conv_theta": "theta", "conv_phi": "phi", "conv_g": "g", "conv_out": "w", "bn": "bn"}


def _stage(m: re.Match) -> str:
    """`s3.pathway1_res2.` -> `fast_stages.1.2.` (SlowFast) or `layer2.2.` (one pathway: `pathway0` only)."""
    stage, pathway, block = int(m["stage"]), int(m["pathway"]), m["block"]
    if m.string.startswith("multi:"):
        return f"{('slow', 'fast')[pathway]}_stages.{stage - 2}.{block}."
    return f"layer{stage - 1}.{block}."


_RULES = [
    (r"^(multi:)?s1\.pathway0_stem\.conv\.", lambda m: "slow_conv1." if m[1] else "conv1."),
    (r"^(multi:)?s1\.pathway0_stem\.bn\.", lambda m: "slow_bn1." if m[1] else "bn1."),
    (r"^multi:s1\.pathway1_stem\.(conv|bn)\.", lambda m: f"fast_{m[1]}1."),
    (r"^multi:s(\d)_fuse\.(conv_f2s|bn)\.", lambda m: f"laterals.{int(m[1]) - 1}.{'conv' if m[2] != 'bn' else 'bn'}."),
    (r"^(multi:)?s(?P<stage>\d)\.pathway(?P<pathway>\d)_nonlocal(?P<block>\d+)\.(?P<part>\w+)\.",
     lambda m: f"{_stage(m)}nonlocal_block.{_NONLOCAL.get(m['part'], m['part'])}."),
    (r"^(multi:)?s(?P<stage>\d)\.pathway(?P<pathway>\d)_res(?P<block>\d+)\.branch2\.(?P<part>\w+)\.",
     lambda m: f"{_stage(m)}{_PARTS.get(m['part'], m['part'])}."),
    (r"^(multi:)?s(?P<stage>\d)\.pathway(?P<pathway>\d)_res(?P<block>\d+)\.branch1(?P<bn>_bn)?\.",
     lambda m: f"{_stage(m)}downsample.{1 if m['bn'] else 0}."),
    (r"^(multi:)?head\.projection\.", "fc."),
]
_PREPROCESSING = {"model.mean": [0.45, 0.45, 0.45], "model.std": [0.225, 0.225, 0.225], "data.sampling": "dense",
                 "data.size": 256, "data.scale_size": 256, "test.num_clips": 10, "test.num_crops": 3}


def _detect(raw: Mapping) -> bool:
    state = raw.get("model_state", raw)
    return isinstance(state, Mapping) and any(str(k).removeprefix("module.").startswith("s1.pathway0_stem.")
                                              for k in state)


def _unwrap(raw: Mapping) -> tuple[dict[str, torch.Tensor], dict]:
    state = strip_prefix(only_tensors(raw.get("model_state", raw), "PySlowFast checkpoint"), "module.")  # DDP
    if "s1.pathway1_stem.conv.weight" in state:  # two pathways: the rules tell them from single-pathway keys
        state = {f"multi:{k}": v for k, v in state.items()}
    info = {"epoch": raw["epoch"]} if isinstance(raw.get("epoch"), int) else {}
    if isinstance(raw.get("cfg"), str):
        info["cfg"] = raw["cfg"]
    return state, info


def _cfg(info: Mapping, path) -> dict:
    try:
        cfg = yaml.safe_load(info.get("cfg") or "") or {}
    except yaml.YAMLError as exc:
        raise ConversionError(f"{path}: its cfg is not readable YAML ({exc})") from exc
    return cfg if isinstance(cfg, dict) else {}


def _guess(state: Mapping[str, torch.Tensor], info: Mapping, path) -> dict:
    cfg = _cfg(info, path)
    data, test = cfg.get("DATA", {}), cfg.get("TEST", {})
    protocol = {"data.frames": data.get("NUM_FRAMES"), "data.stride": data.get("SAMPLING_RATE"),
                "model.mean": data.get("MEAN"), "model.std": data.get("STD"), "data.size": data.get("TEST_CROP_SIZE"),
                "data.scale_size": data.get("TEST_CROP_SIZE"), "test.num_clips": test.get("NUM_ENSEMBLE_VIEWS"),
                "test.num_crops": test.get("NUM_SPATIAL_CROPS")}
    protocol = {k: v for k, v in protocol.items() if v is not None}
    if cfg.get("MODEL", {}).get("HEAD_ACT", "softmax") not in ("softmax", "none"):
        raise ConversionError(f"{path}: head activation {cfg['MODEL']['HEAD_ACT']!r} is not a softmax classifier")
    if any(k.startswith("multi:") for k in state):
        slowfast = cfg.get("SLOWFAST", {})
        if (slowfast.get("ALPHA", 4), slowfast.get("BETA_INV", 8), slowfast.get("FUSION_KERNEL_SZ", 7)) != (4, 8, 7):
            raise ConversionError(f"{path}: SlowFast with {slowfast}; ours is the 8x8 R50 (alpha 4, beta 1/8, "
                                  "fusion kernel 7)")
        return {"model": "slowfast_resnet50", "options": {"slow_frames": "linspace"},
                "preprocessing": {"data.frames": 32, "data.stride": 2, **protocol}}
    depth = len({m[1] for k in state if (m := re.match(r"s4\.pathway0_res(\d+)\.", k))})
    depth = {6: 50, 23: 101}.get(depth)
    stem = state.get("s1.pathway0_stem.conv.weight")
    if depth is None or stem is None or stem.dim() != 5:
        raise ConversionError(f"{path}: not a ResNet-50/101 PySlowFast model")
    if stem.shape[2] == 5:
        return {"model": f"i3d3x1_resnet{depth}", "temporal_pooling": True, "options": {"pool_style": "c2d"},
                "preprocessing": {"data.frames": 8, "data.stride": 8, **protocol}}
    nonlocal_blocks = [k for k in state if "_nonlocal" in k]
    if nonlocal_blocks and cfg.get("NONLOCAL", {}).get("INSTANTIATION", "softmax") != "softmax":
        raise ConversionError(f"{path}: only the softmax (embedded Gaussian) non-local instantiation is supported")
    options = {"pool_style": "c2d"}
    if nonlocal_blocks:
        options.update(nonlocal_subsample="before", nonlocal_scale=True)
    return {"model": f"{'nln' if nonlocal_blocks else 'tsn'}_resnet{depth}", "temporal_pooling": True,
            "options": options, "preprocessing": {"data.frames": 8, "data.stride": 8, **protocol}}


SOURCE = Source(
    "pyslowfast",
    detect=_detect,
    unwrap=_unwrap,
    guess=_guess,
    rules=_RULES,
    preprocessing=_PREPROCESSING,
)
