"""What a source codebase is to the converter: `Source`, one per module of this package, and the helpers they share."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from actionbench.errors import CheckpointError

StateDict = dict[str, torch.Tensor]


class ConversionError(CheckpointError, ValueError):
    """A checkpoint that cannot be converted; the message names the file, keys or values at fault."""


@dataclass(frozen=True)
class Source:
    """A codebase whose checkpoints convert: how to recognise them, unwrap them, read what they say, rename their
    keys, and the evaluation protocol its authors used.

    - `detect(raw) -> bool`: the file is one of its checkpoints (its key layout);
    - `unwrap(raw) -> (state, info)`: the weights without wrappers or prefixes, and what else the file says;
    - `guess(state, info, path) -> dict`: what the file tells of the model (`model`, `frames`, `temporal_pooling`,
      `options`) and of its authors' protocol (`preprocessing`: config keys such as `model.mean`, `data.size`);
    - `rules`: `(pattern, replacement)` regex substitutions, applied in order, from their keys to ours;
    - `preprocessing`: its authors' documented protocol (config keys), what the file itself does not say;
    - `combine(state) -> state`: what renaming cannot do (several keys into one, folded biases);
    - `zero_keys`: a regex of our keys their model lacks and that are zero there (a missing bias).
    """

    name: str
    detect: Callable[[Mapping], bool]
    unwrap: Callable[[Mapping], tuple[StateDict, dict]]
    guess: Callable[[Mapping[str, torch.Tensor], Mapping, Path], dict]
    rules: Sequence[tuple[str, str | Callable]]
    preprocessing: Mapping[str, object] = field(default_factory=dict)
    combine: Callable[[StateDict], StateDict] | None = None
    zero_keys: str | None = None


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def only_tensors(state: object, where: str) -> StateDict:
    if not isinstance(state, Mapping) or not state:
        raise ConversionError(f"{where}: expected a state dict of tensors, found {type(state).__name__}")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConversionError(f"{where}: entries that are not tensors: {', '.join(map(str, bad[:5]))}")
    return dict(state)
