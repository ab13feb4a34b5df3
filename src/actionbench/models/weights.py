"""Loading weights: 2D ImageNet files (torchvision format) into video models, and our own checkpoints.

Every load is strict: a key that is missing, unexpected or of the wrong shape raises `WeightsMismatchError` naming
the keys. (The paper's code loaded with strict=False before wrapping in DDP, so a `module.` prefix made it load
nothing, silently.) The only keys a 2D ImageNet file may lack are the video model's new temporal layers, and the
only ones it may carry unused are GoogLeNet's auxiliary heads and, when the class counts differ, the classifier.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from actionbench.errors import CheckpointError, UsageError
from actionbench.models.base import VideoModel

# torchvision's published ImageNet-1k files (IMAGENET1K_V1), by backbone.
IMAGENET_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    "inception_v1": "https://download.pytorch.org/models/googlenet-1378be20.pth",
}
# Keys a video model adds to its 2D parent: TAM / Conv. (`temporal`), S3D's (3,1,1) convs and their BN (`conv2_t`,
# `bn2_t`, `conv_t`, `bn_t`), non-local blocks.
_NEW_TEMPORAL_KEY = re.compile(r"(^|\.)(temporal|nonlocal_block)\.|(^|\.)(conv|bn)\d*_t\.")
_IGNORED_2D_KEY = re.compile(r"^aux[12]\.")  # GoogLeNet's auxiliary classifiers, unused by video models
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP / DataParallel, torch.compile


class WeightsMismatchError(CheckpointError, ValueError):
    """Weights and model disagree; the message names every key at fault."""


def _key_list(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _raise_if_mismatch(source: str, missing: list[str], unexpected: list[str], wrong_shape: list[str]) -> None:
    problems = []
    if missing:
        problems.append(f"missing keys: {_key_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_key_list(unexpected)}")
    if wrong_shape:
        problems.append(f"shape mismatches: {_key_list(wrong_shape)}")
    if problems:
        raise WeightsMismatchError(f"cannot load {source}: " + "; ".join(problems))


def backbone_of(model: VideoModel) -> str:
    """`tam_resnet50` -> `resnet50`."""
    name = model.name
    for backbone in IMAGENET_URLS if model.has_imagenet_parent else ():
        if name.endswith("_" + backbone):
            return backbone
    raise UsageError(f"model {name!r} has no 2D ImageNet parent; train it from scratch (model.pretrained=null)")


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes: what names a weights file exactly (a path may be written again)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write `state` to `path` so that a crash at any moment leaves either the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist (model.pretrained / model.init_from)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated download or a pickle of arbitrary objects
        reason = str(exc).split(". ")[0].splitlines()[0][:160]
        raise CheckpointError(f"cannot read weights file {path}: damaged, or not a torch.save()d state dict "
                              f"({reason})") from exc
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]  # our checkpoints
    elif isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]  # other toolboxes' checkpoints
    if not isinstance(state, Mapping):
        raise CheckpointError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    return dict(state)


def checkpoint_normalisation(source: str | Path | None) -> dict | None:
    """`{"mean", "std", "channel_order"}` when `source` is an actionbench checkpoint (ours or converted) that
    records the input normalisation its weights expect; None for 2D ImageNet files and anything else."""
    if not source or str(source) == "imagenet" or not Path(source).is_file():
        return None
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception:  # load_pretrained reports unreadable files with their reason
        return None
    model = state.get("config", {}).get("model", {}) if isinstance(state, Mapping) else {}
    if model.get("mean") is None:
        return None
    return {"mean": model["mean"], "std": model["std"], "channel_order": model.get("channel_order", "RGB")}


def strip_wrapper_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove DDP's `module.` and torch.compile's `_orig_mod.` prefixes."""
    out = {}
    for key, value in state.items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def imagenet_state_dict(backbone: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights for `backbone`, downloaded once into torch.hub's cache."""
    url = IMAGENET_URLS[backbone]
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True, weights_only=True)
    except OSError as exc:  # URLError, socket errors, ...
        raise CheckpointError(
            f"could not download ImageNet weights for {backbone} from {url} ({exc}). Offline? Download that file "
            f"on a connected machine and pass its path: pretrained=/path/to/{url.rsplit('/', 1)[1]} "
            f"(or model.pretrained=... on the command line)."
        ) from exc


def inflate(weight_2d: torch.Tensor, time_size: int, divide: bool) -> torch.Tensor:
    """(O, I, kh, kw) -> (O, I, kt, kh, kw), copied along time; divided by kt when `divide` (I3D paper)."""
    weight = weight_2d.unsqueeze(2).repeat(1, 1, time_size, 1, 1)
    return weight / time_size if divide else weight


def load_pretrained(model: VideoModel, source: str | Path | Mapping[str, torch.Tensor]) -> VideoModel:
    """Load 2D ImageNet weights (a torchvision-format file, a state dict, or "imagenet") into a video model.

    2D designs take them as they are; I3D/S3D kernels are inflated along time (divided by kt if the model was built
    with `inflate_divide=True`). New temporal layers keep their own initialisation; the classifier is loaded only
    when its shape matches (same number of classes), otherwise it keeps its initialisation.
    """
    if isinstance(source, Mapping):
        label, state = "the given state dict", strip_wrapper_prefixes(source)
    elif str(source) == "imagenet":
        backbone = backbone_of(model)
        label, state = f"ImageNet {backbone} weights", imagenet_state_dict(backbone)
    else:
        label, state = str(source), strip_wrapper_prefixes(_read_state_dict(source))
    divide = model.inflate_divide
    target = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    unexpected, wrong_shape = [], []
    for key, value in state.items():
        if _IGNORED_2D_KEY.match(key):
            continue
        if key not in target:
            unexpected.append(key)
            continue
        want = target[key]
        if value.shape == want.shape:
            loaded[key] = value
        elif value.dim() == 4 and want.dim() == 5 and want.shape[:2] + want.shape[3:] == value.shape:
            loaded[key] = inflate(value, want.shape[2], divide)
        elif key.startswith("fc."):
            continue  # another number of classes: the head is replaced
        else:
            wrong_shape.append(f"{key} {tuple(value.shape)} vs model {tuple(want.shape)}")
    missing = [
        k for k in target
        if k not in state and not _NEW_TEMPORAL_KEY.search(k) and not k.startswith("fc.")
        and not k.endswith("num_batches_tracked")  # absent from some older torchvision-format files; harmless
    ]
    _raise_if_mismatch(label, missing, unexpected, wrong_shape)
    model.load_state_dict(loaded, strict=False)  # the keys left out were checked above
    return model


def load_weights(model: nn.Module, source: str | Path | Mapping[str, torch.Tensor]) -> nn.Module:
    """Load a checkpoint of the same model (any frame count, with or without DDP/compile prefixes), strictly."""
    if isinstance(source, Mapping):
        label = "the given state dict"
        state = dict(source["model"]) if isinstance(source.get("model"), Mapping) else dict(source)
    else:
        label, state = str(source), _read_state_dict(source)
    state = strip_wrapper_prefixes(state)
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    wrong_shape = [
        f"{k} {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in state.items()
        if k in target and v.shape != target[k].shape
    ]
    _raise_if_mismatch(label, missing, unexpected, wrong_shape)
    model.load_state_dict(state)
    return model


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file; a run directory stands for its best.pt (else last.pt)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} is a directory without best.pt or last.pt: not a finished or started run")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def load_checkpoint(path: str | Path) -> dict:
    """An actionbench checkpoint (ours, or converted with `actionbench convert`), read with weights_only=True."""
    path = resolve_checkpoint(path)
    if path.suffix in (".yaml", ".yml", ".json", ".txt", ".csv"):
        raise CheckpointError(f"{path} is a {path.suffix[1:].upper()} file, not a checkpoint: pass a .pt file "
                              "written by actionbench train or actionbench convert (or a run directory)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = _load_failure(exc)
        raise CheckpointError(
            f"cannot read {path}: damaged or not a checkpoint ({reason}). Point to another checkpoint (best.pt, "
            "last.pt, an older copy); a checkpoint of another codebase needs `actionbench convert` first.") from exc
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path} is not an actionbench checkpoint (no model and config entries); a checkpoint "
                              "of another codebase needs `actionbench convert` first")
    return state


def _load_failure(exc: Exception) -> str:
    """What torch.load's error means, in words (its zip reader says "failed finding central directory (101)")."""
    text = str(exc)
    if "central directory" in text or "zip archive" in text:
        return "the file is truncated, or not a PyTorch file"
    if "invalid load key" in text or "could not find MARK" in text or isinstance(exc, EOFError):
        return "not a PyTorch checkpoint, or truncated"
    return text.split(". ")[0].splitlines()[0][:160]
