"""Released checkpoints of other codebases -> actionbench checkpoints that compute the same function.

One small module per source codebase declares what it is as a `Source` (source.py: detection, unwrapping, what
the file says, key rules as data, its authors' preprocessing): `official` (IBM/action-recognition-pytorch, the
paper's code), `tsm` (mit-han-lab/temporal-shift-module), `mmaction2`, `pytorchvideo`, `pyslowfast`.

`convert_checkpoint` applies them, then checks strictly: every key of theirs must land on a key of ours with the
same shape (2D convs may come as 1-frame 3D kernels), every key of ours must be filled; anything else is an error
naming the keys. Files are read with `torch.load(weights_only=True)`; the few harmless non-tensor types such
files hold (NumPy arrays and scalars in MMAction2's meta data) are allow-listed by name, nothing else.
"""

from __future__ import annotations

import importlib
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from actionbench.models.convert.source import ConversionError, Source
from actionbench.models.weights import file_sha256

__all__ = ["SOURCES", "ConversionError", "Source", "convert_checkpoint", "detect_source", "read_checkpoint",
           "source_of"]

SOURCES = ("official", "tsm", "mmaction2", "pytorchvideo", "pyslowfast")
# Globals a weights_only load may construct beyond torch's own allow-list: data, never code.
_HARMLESS_GLOBALS = re.compile(
    r"^(numpy\.(_core|core)\.multiarray\.(_reconstruct|scalar)|numpy\.ndarray|numpy\.dtype|numpy\.dtypes\.\w+DType"
    r"|collections\.(OrderedDict|defaultdict|Counter)|builtins\.(list|dict|set|tuple))$")


def source_of(name: str) -> Source:
    """The `Source` of a codebase by name (its module's `SOURCE`)."""
    if name not in SOURCES:
        raise ConversionError(f"unknown source {name!r}; choose one of {', '.join(SOURCES)}")
    return importlib.import_module(f"actionbench.models.convert.{name}").SOURCE


def read_checkpoint(path: str | Path) -> object:
    """`torch.load(weights_only=True)`, allowing only the harmless globals such files hold (named in errors)."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as exc:  # truncated download, not a torch file
        raise ConversionError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    refused = [name for name in needed if not _HARMLESS_GLOBALS.match(name)]
    if refused:
        raise ConversionError(
            f"{path} holds objects that loading would have to run code for: {', '.join(refused)}. Only tensors, "
            "numbers, strings and plain containers are read. Re-save its weights where that code is installed: "
            "torch.save({'state_dict': ckpt['state_dict']}, 'weights.pth')")
    allowed = []
    for name in needed:
        module, _, attr = name.rpartition(".")
        try:
            allowed.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError) as exc:
            raise ConversionError(f"{path} needs {name}, which this Python does not have ({exc})") from exc
    if any(name.startswith("numpy.") for name in needed):  # arrays' dtypes unpickle as their classes, unlisted
        import numpy as np

        allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


def detect_source(raw: object, path: str | Path = "") -> str:
    """The codebase that wrote `raw`, from its key layout; an error when none or several match."""
    if not isinstance(raw, Mapping):
        raise ConversionError(f"{path} holds a {type(raw).__name__}, not a checkpoint dictionary")
    found = [name for name in SOURCES if source_of(name).detect(raw)]
    if len(found) != 1:
        what = "no known layout" if not found else f"several layouts ({', '.join(found)})"
        raise ConversionError(f"cannot tell which codebase wrote {path}: {what}. Give --from "
                              f"{'|'.join(SOURCES)}.")
    return found[0]


def rename_key(key: str, rules: list[tuple[str, str | Callable]]) -> str:
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def _key_list(keys: list[str], limit: int = 8) -> str:
    return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def map_state(state: dict[str, torch.Tensor], source: Source, target: Mapping[str, torch.Tensor],
              where: str) -> dict[str, torch.Tensor]:
    """Their state -> ours, strictly: every key of theirs used, every key of ours filled, shapes equal."""
    state = source.combine(dict(state)) if source.combine else dict(state)
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    unexpected, wrong_shape = [], []
    for key, value in state.items():
        ours = rename_key(key, source.rules)
        if ours not in target:
            unexpected.append(f"{key} (as {ours})" if ours != key else key)
            continue
        want = target[ours]
        if value.dim() == want.dim() + 1 and value.dim() == 5 and value.shape[2] == 1:
            value = value[:, :, 0]  # a 2D conv stored as a one-frame 3D kernel (PySlowFast's C2D)
        if value.shape != want.shape:
            wrong_shape.append(f"{key} {tuple(value.shape)} vs {ours} {tuple(want.shape)}")
            continue
        if ours in mapped:
            unexpected.append(f"{key} (a second source for {ours}, after {origin[ours]})")
            continue
        mapped[ours], origin[ours] = value.to(want.dtype), key
    zero = re.compile(source.zero_keys or r"(?!)")
    missing = []
    for key, want in target.items():
        if key in mapped:
            continue
        if key.endswith("num_batches_tracked") or zero.search(key):
            mapped[key] = torch.zeros_like(want, device="cpu")
        else:
            missing.append(key)
    problems = [f"{label}: {_key_list(keys)}" for label, keys in
                (("keys of theirs with no place in ours", unexpected), ("keys of ours they do not fill", missing),
                 ("shape mismatches", wrong_shape)) if keys]
    if problems:
        raise ConversionError(f"{where}: " + "; ".join(problems) +
                              ". Is --model (and its options) the architecture that wrote this file?")
    return mapped


def _classifier_size(state: Mapping[str, torch.Tensor], source: Source) -> int:
    for key, value in state.items():
        if rename_key(key, source.rules) == "fc.weight":
            return int(value.shape[0])
    raise ConversionError("the checkpoint has no classifier weights (a backbone only?); nothing to evaluate")


def convert_checkpoint(path: str | Path, *, source: str | None = None, model: str | None = None,
                       frames: int | None = None, temporal_pooling: bool | None = None,
                       options: Mapping | None = None, preprocessing: Mapping | None = None,
                       classes: list[str] | None = None) -> dict:
    """Read a released checkpoint and return an actionbench checkpoint (`model`, `config`, `classes`,
    `preprocessing`, `source`) whose model computes the original's function. Arguments override what the file
    says; what neither says falls back to the source's documented defaults (printed by `actionbench convert`)."""
    from actionbench.config import Config, ConfigError, to_dict, update_config
    from actionbench.models.factory import build_from_config

    path = Path(path)
    raw = read_checkpoint(path)
    if isinstance(raw, Mapping) and {"model", "config", "classes"} <= set(raw):
        raise ConversionError(f"{path} is already an actionbench checkpoint: use it as it is (actionbench test / "
                              "predict --checkpoint, model.pretrained=, actionbench.load_model)")
    source = source or detect_source(raw, path)
    module = source_of(source)
    state, info = module.unwrap(raw)
    guess = module.guess(state, info, path)
    name = model or guess.get("model")
    if not name:
        raise ConversionError(f"{path}: the file does not say which model it holds; give --model NAME")
    cfg = Config()
    cfg.model.name = name
    cfg.model.pretrained = None
    cfg.model.temporal_pooling = guess.get("temporal_pooling", False) if temporal_pooling is None else temporal_pooling
    cfg.model.options = {**(guess.get("options", {}) if model in (None, guess.get("model")) else {}),
                         **(options or {})}
    protocol = {**module.preprocessing, **guess.get("preprocessing", {}), **(preprocessing or {})}
    if frames:
        protocol["data.frames"] = frames
    try:
        update_config(cfg, protocol)
    except ConfigError as exc:
        raise ConversionError(f"{path}: {exc}") from exc
    num_classes = _classifier_size(state, module)
    if classes is not None and len(classes) != num_classes:
        raise ConversionError(f"{len(classes)} class names given for a classifier of {num_classes} classes")
    try:
        net = build_from_config(cfg.model, num_classes, cfg.data.frames, weights=False)
    except ValueError as exc:
        raise ConversionError(f"{path}: cannot build {name} with options {cfg.model.options}: {exc}") from exc
    weights = map_state(state, module, net.state_dict(), f"{path} ({source} -> {name})")
    net.load_state_dict(weights)
    return {
        "model": net.state_dict(),
        "config": to_dict(cfg),
        "classes": list(classes) if classes else [str(i) for i in range(num_classes)],
        "classes_named": classes is not None,
        "preprocessing": protocol,
        "source": {"format": source, "file": str(path.resolve()), "sha256": file_sha256(path),
                   **{k: v for k, v in info.items() if isinstance(v, str | int | float)}},
    }
