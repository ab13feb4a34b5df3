"""PyTorchVideo (facebookresearch/pytorchvideo): `create_slowfast` SlowFast-R50 8x8 and `create_resnet` I3D-R50
(the hub's `slowfast_r50` and `i3d_r50`), as plain state dicts or `.pyth` files (`{"model_state": ...}`).

Their `Net` is a list of blocks: `blocks.0` the stem (`conv`, `norm`; SlowFast: `multipathway_blocks.{0,1}`), then
one block per stage (`res_blocks.{j}.{branch1_conv,branch1_norm,branch2.{conv_a,norm_a,conv_b,norm_b,conv_c,
norm_c}}`; SlowFast: under `multipathway_blocks.{p}`, with the lateral at `multipathway_fusion.{conv_fast_to_slow,
norm}`), I3D's max pool after the first stage (no weights, but it shifts the block numbers), then the head's
`proj`. Their loaders feed SlowFast's slow pathway `linspace(0, T-1, T/alpha)` frames (`slow_frames="linspace"`);
both normalise with mean 0.45 and std 0.225.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from actionbench.models.convert.source import ConversionError, Source, only_tensors, strip_prefix

_PARTS = {"conv_a": "conv1", "norm_a": "bn1", "conv_b": "conv2", "norm_b": "bn2", "conv_c": "conv3",
          "norm_c": "bn3"}

_RULES = [
    # `unwrap` rewrites each stage's block number to `stage<k>` (1-based), whatever blocks lie between them.
    (r"^blocks\.0\.multipathway_blocks\.(\d)\.(conv|norm)\.",
     lambda m: f"{('slow', 'fast')[int(m[1])]}_{'conv' if m[2] == 'conv' else 'bn'}1."),
    (r"^blocks\.0\.(conv|norm)\.", lambda m: "conv1." if m[1] == "conv" else "bn1."),
    (r"^blocks\.(\d)\.multipathway_fusion\.(conv_fast_to_slow|norm)\.",
     lambda m: f"laterals.{m[1]}.{'conv' if m[2] != 'norm' else 'bn'}."),
    (r"^stage(\d)\.multipathway_blocks\.(\d)\.res_blocks\.(\d+)\.",
     lambda m: f"{('slow', 'fast')[int(m[2])]}_stages.{int(m[1]) - 1}.{m[3]}."),
    (r"^stage(\d)\.res_blocks\.(\d+)\.", lambda m: f"layer{m[1]}.{m[2]}."),
    (r"\.branch2\.(conv_[abc]|norm_[abc])\.", lambda m: f".{_PARTS[m[1]]}."),
    (r"\.branch1_(conv|norm)\.", lambda m: f".downsample.{0 if m[1] == 'conv' else 1}."),
    (r"^head\.proj\.", "fc."),
]
_PREPROCESSING = {"model.mean": [0.45, 0.45, 0.45], "model.std": [0.225, 0.225, 0.225], "data.sampling": "dense",
                 "data.size": 256, "data.scale_size": 256, "test.num_clips": 10, "test.num_crops": 3}


def _detect(raw: Mapping) -> bool:
    state = raw.get("model_state", raw)
    return isinstance(state, Mapping) and any(re.match(r"(module\.)?blocks\.0\.(multipathway_blocks\.0\.)?conv\.",
                                                       str(k)) for k in state)


def _unwrap(raw: Mapping) -> tuple[dict[str, torch.Tensor], dict]:
    state = strip_prefix(only_tensors(raw.get("model_state", raw), "PyTorchVideo checkpoint"), "module.")
    stage_blocks = sorted({int(m[1]) for k in state if (m := re.match(r"blocks\.(\d+)\.(multipathway_blocks\.\d\.)?"
                                                                       r"res_blocks\.", k))})
    head_block = max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    renamed = {}
    for key, value in state.items():
        m = re.match(r"blocks\.(\d+)\.(?!multipathway_fusion)", key)
        block = int(m[1]) if m else None
        if block in stage_blocks:
            key = f"stage{stage_blocks.index(block) + 1}.{key[m.end():]}"
        elif block == head_block and ".proj." in key:
            key = f"head.{key[m.end():]}"
        elif block is not None and block != 0:
            key = f"block{block}.{key[m.end():]}"  # nothing else has weights; named so that errors show it
        renamed[key] = value
    info = {"epoch": raw["epoch"]} if isinstance(raw.get("epoch"), int) else {}
    return renamed, info


def _guess(state: Mapping[str, torch.Tensor], info: Mapping, path) -> dict:
    if any("multipathway_blocks" in k for k in state):
        return {"model": "slowfast_resnet50", "options": {"slow_frames": "linspace"},
                "preprocessing": {"data.frames": 32, "data.stride": 2}}
    stem = state.get("blocks.0.conv.weight")
    depth = {6: 50, 23: 101}.get(len({k.split(".")[2] for k in state if k.startswith("stage3.res_blocks.")}))
    if stem is None or stem.dim() != 5 or stem.shape[2] != 5 or depth is None:
        raise ConversionError(f"{path}: only PyTorchVideo's SlowFast-R50 and I3D-R50/R101 are supported")
    return {"model": f"i3d3x1_resnet{depth}", "temporal_pooling": True, "options": {"pool_style": "c2d"},
            "preprocessing": {"data.frames": 8, "data.stride": 8}}


SOURCE = Source(
    "pytorchvideo",
    detect=_detect,
    unwrap=_unwrap,
    guess=_guess,
    rules=_RULES,
    preprocessing=_PREPROCESSING,
)
