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
import logging
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from actionbench.models.convert.source import ConversionError, Source
from actionbench.models.weights import file_sha256

__all__ = ["SOURCES", "ConversionError", "Source", "convert_checkpoint", "detect_source", "read_checkpoint",
           "source_of"]

log = logging.getLogger(__name__)
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


_GLOBAL_IN_ERROR = re.compile(r"GLOBAL ([\w.]+)")


def _file_kind(path: Path) -> str | None:
    """What a file that is not a PyTorch checkpoint is, from its first bytes; None when it may be one."""
    head = path.read_bytes()[:512] if path.stat().st_size else b""
    if not head:
        return "empty (0 bytes)"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return None  # a cut-off zip: torch.load says so below
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            return ("a TorchScript archive (torch.jit.save): load it with torch.jit.load and torch.save its "
                    "state_dict()")
        return None
    if head.startswith(b"\x80"):
        return None  # a pickle: the legacy torch.save format
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array, not a checkpoint of a model"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<")):
        return "an HTML or XML page (a failed download? fetch the file itself)"
    return f"not a PyTorch file (it starts with {head[:8]!r})"


def _describe(exc: Exception) -> str:
    text = str(exc)
    if any(m in text for m in ("central directory", "zip archive", "unexpected EOF", "corrupted")) or \
            isinstance(exc, EOFError | IndexError):
        return "the file is truncated or damaged (an interrupted download? fetch it again)"
    return f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else 'unreadable'}"


def _unsafe_globals(path: Path, exc: Exception) -> list[str]:
    """The globals a weights_only load refused: listed by torch for zip files, named in the error for legacy ones."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # a legacy (non-zip) file: torch names one global per attempt in its error
        return _GLOBAL_IN_ERROR.findall(str(exc))


def read_checkpoint(path: str | Path) -> object:
    """`torch.load(weights_only=True)`, allowing only the harmless globals such files hold (named in errors). Any
    other file (a folder, HTML, NumPy, TorchScript, truncated) is a ConversionError saying what it is."""
    path = Path(path)
    if path.is_dir():
        raise ConversionError(f"{path} is a folder, not a checkpoint file: give the .pth / .pt / .pyth file in it")
    if not path.is_file():
        raise ConversionError(f"checkpoint {path} does not exist")
    kind = _file_kind(path)
    if kind:
        raise ConversionError(f"{path} is {kind}")
    allowed: list = []
    needed: set[str] = set()
    while True:
        try:
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            names = [n for n in _unsafe_globals(path, exc) if n not in needed]
            if not names:
                raise ConversionError(f"cannot read {path}: {_describe(exc)}") from None
        except Exception as exc:  # truncated, damaged
            raise ConversionError(f"cannot read {path}: {_describe(exc)}") from None
        refused = [name for name in names if not _HARMLESS_GLOBALS.match(name)]
        if refused:
            raise ConversionError(
                f"{path} holds objects that loading would have to run code for: {', '.join(refused)}. Only "
                "tensors, numbers, strings and plain containers are read. Re-save its weights where that code is "
                "installed: torch.save({'state_dict': ckpt['state_dict']}, 'weights.pth')")
        for name in names:
            needed.add(name)
            module, _, attr = name.rpartition(".")
            try:
                allowed.append(getattr(importlib.import_module(module), attr))
            except (ImportError, AttributeError) as exc:
                raise ConversionError(f"{path} needs {name}, which this Python does not have ({exc})") from None
        if any(name.startswith("numpy.") for name in names):  # arrays' dtypes unpickle as their classes
            import numpy as np

            allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]


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


def _contradictions(guess: Mapping, model: str | None, temporal_pooling: bool | None,
                    options: Mapping) -> list[str]:
    """What the user asked that the file says otherwise, each as 'what: the file says a, asked b'."""
    said = {"--model": guess.get("model"), "--temporal-pooling": guess.get("temporal_pooling"),
            **{f"--option {k}": v for k, v in guess.get("options", {}).items()}}
    asked = {"--model": model, "--temporal-pooling": temporal_pooling,
             **{f"--option {k}": v for k, v in options.items()}}
    return [f"{what}: the file says {said[what]!r}, you asked {value!r}" for what, value in asked.items()
            if value is not None and said.get(what) is not None and said[what] != value]


def _classifier_size(state: Mapping[str, torch.Tensor], source: Source) -> int:
    for key, value in state.items():
        if rename_key(key, source.rules) == "fc.weight":
            return int(value.shape[0])
    raise ConversionError("the checkpoint has no classifier weights (a backbone only?); nothing to evaluate")


def convert_checkpoint(path: str | Path, *, source: str | None = None, model: str | None = None,
                       frames: int | None = None, temporal_pooling: bool | None = None,
                       options: Mapping | None = None, preprocessing: Mapping | None = None,
                       classes: list[str] | None = None, force: bool = False) -> dict:
    """Read a released checkpoint and return an actionbench checkpoint (`model`, `config`, `classes`,
    `preprocessing`, `source`) whose model computes the original's function. Arguments fill in what the file does
    not say; one that contradicts what it says is an error unless `force` (then it wins, and says so). What neither
    says falls back to the source's documented defaults (printed by `actionbench convert`)."""
    from actionbench.config import Config, ConfigError, to_dict, update_config
    from actionbench.models.factory import build_from_config

    path = Path(path)
    raw = read_checkpoint(path)
    if isinstance(raw, Mapping) and {"model", "config", "classes"} <= set(raw):
        raise ConversionError(f"{path} is already an actionbench checkpoint: use it as it is (actionbench test / "
                              "predict --checkpoint, model.pretrained=, actionbench.load_model)")
    if source is not None and isinstance(raw, Mapping) and not source_of(source).detect(raw):
        try:
            looks = f"it looks like a {detect_source(raw, path)} checkpoint (drop --from, or --from that)"
        except ConversionError:
            looks = "its keys match no codebase we convert"
        raise ConversionError(f"{path} is not a {source} checkpoint: {looks}")
    source = source or detect_source(raw, path)
    module = source_of(source)
    state, info = module.unwrap(raw)
    guess = module.guess(state, info, path)
    overrides = _contradictions(guess, model, temporal_pooling, options or {})
    if overrides and not force:
        raise ConversionError(f"{path}: {'; '.join(overrides)}. Converted that way it would compute another "
                              "function than the file's; add --force to convert it all the same")
    for line in overrides:
        log.warning("%s: forced: %s", path, line)
    unknown = [k for k, v in {**guess.get("options", {}), **(options or {})}.items() if v is None]
    if unknown:
        raise ConversionError(f"{path}: the file does not say {', '.join(unknown)} (variants with the same keys); "
                              f"give it: --option {unknown[0]}=...")
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
                   **{k: v for k, v in info.items() if isinstance(v, str | int | float) and not k.startswith("_")}},
    }
