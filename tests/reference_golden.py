"""Golden outputs of the reference codebases, so that tests check our converters without their code.

`scripts/check_reference_equivalence.py --write-golden` builds each reference model from its own code, fills it
with weights drawn by `draw_state` (seeded, in its key order), saves it as that codebase saves checkpoints, and
records here-readable JSON: the keys and shapes, the seed, the checkpoint's wrapping, the input's seed and shape
and the reference's eval-mode logits in float64. The tests redraw the same weights, write the same file, convert
it and compare our logits.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import torch

GOLDEN_DIR = Path(__file__).parent / "golden"


def draw_state(shapes: list[tuple[str, list[int], str]], seed: int,
               scale: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """Weights for `(key, shape, dtype)` in order: BN statistics near identity, He-scaled kernels; `scale`:
    {key regex: factor} for keys whose random values would make the reference overflow (un-normalised
    dot-product attention in eval mode)."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape, dtype in shapes:
        if dtype == "int64":
            state[key] = torch.zeros(shape, dtype=torch.int64)
            continue
        if key.endswith("running_var"):
            value = rng.uniform(0.5, 1.5, shape)
        elif key.endswith("running_mean") or key.endswith("bias"):
            value = rng.normal(0.0, 0.1, shape)
        elif len(shape) == 1:  # a norm's scale
            value = rng.uniform(0.5, 1.5, shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0.0, (2.0 / fan_in) ** 0.5, shape)
        factor = next((f for pattern, f in (scale or {}).items() if re.search(pattern, key)), 1.0)
        state[key] = torch.from_numpy(np.asarray(value * factor, dtype=np.float32))
    return state


def state_shapes(state: dict[str, torch.Tensor]) -> list[tuple[str, list[int], str]]:
    return [(k, list(v.shape), "int64" if v.dtype == torch.int64 else "float32") for k, v in state.items()]


def wrap(state: dict[str, torch.Tensor], wrapper: dict) -> dict:
    """The checkpoint dictionary a codebase writes around its weights (`wrapper` from the golden file)."""
    weights = {wrapper.get("prefix", "") + k: v for k, v in state.items()}
    if not wrapper.get("container"):
        return weights
    return {**wrapper.get("extra", {}), wrapper["container"]: weights}


def draw_input(shape: list[int], seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(0.0, 1.0, shape))


def write_golden(name: str, record: dict) -> Path:
    GOLDEN_DIR.mkdir(exist_ok=True)
    path = GOLDEN_DIR / f"{name}.json.gz"
    with gzip.GzipFile(path, "wb", mtime=0) as f:  # no time stamp: regenerating unchanged goldens changes nothing
        f.write(json.dumps(record, separators=(",", ":")).encode())
    return path


def load_golden(path: Path) -> dict:
    with gzip.open(path, "rt") as f:
        return json.load(f)


def golden_files() -> list[Path]:
    return sorted(GOLDEN_DIR.glob("*.json.gz"))
