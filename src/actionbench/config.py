"""Typed run configuration: the schema, loaded from YAML with `key=value` overrides, and its facts.

An unknown key (with the closest known names) or a value of the wrong type or outside its allowed values
(`Literal` types) is an error naming the key. The keys below are a stable contract: scripts outside the project
rely on them (docs/training.md). A run reads its config once resolved (engine/assembly.py: absolute paths, adopted
normalisation, output directory, threads) and then frozen (`freeze`): no later step can change what it records.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from actionbench.errors import UsageError


class _Section:
    """A config section; `freeze` makes assigning to it an error (a resolved run config)."""

    _frozen = False

    def __setattr__(self, name: str, value) -> None:
        if self._frozen:
            raise dataclasses.FrozenInstanceError(
                f"cannot set {name}: a resolved run config is frozen (make a changed copy with thaw())")
        object.__setattr__(self, name, value)


# Annotation formats (data/formats/ has one reader per name; a test keeps the two lists equal).
AnnotationFormat = Literal["list", "plain", "rawframes", "ibm", "csv", "kinetics", "ssv2", "mit", "ucf101", "hmdb51"]
FORMAT_NAMES: tuple[str, ...] = typing.get_args(AnnotationFormat)


@dataclass
class ModelConfig(_Section):
    name: str = "tsn_resnet18"
    pretrained: str | None = None  # path to a torchvision-format 2D file, "imagenet", or null
    temporal_pooling: bool = False
    dropout: float = 0.5
    base_channels: int = 64  # ResNet width (reduced for CPU runs)
    inflate_divide: bool = False
    init_from: str | None = None  # a checkpoint of the same model at another frame count (f8 -> f16)
    # builder options selecting a variant (docs/models.md): pool_style, nonlocal_blocks, nonlocal_at,
    # nonlocal_subsample, nonlocal_scale, stem_temporal_stride, last_time_pool, slow_frames, temporal_padding
    options: dict = field(default_factory=dict)
    mean: list[float] | None = None  # input normalisation in 0-1 units (default: the backbone's ImageNet values)
    std: list[float] | None = None
    channel_order: Literal["RGB", "BGR"] = "RGB"  # the order of the model's input channels


@dataclass
class DataConfig(_Section):
    root: str = ""  # folder the annotation paths are relative to (default: the annotation file's folder)
    train_list: str = ""
    val_list: str = ""
    test_list: str | None = None  # default: val_list
    format: AnnotationFormat | None = None  # detected when null
    frames: int = 8
    sampling: Literal["uniform", "dense"] = "uniform"
    stride: int = 2  # dense sampling: frames between sampled frames
    size: int = 224
    scale_size: int | None = None  # val/test: shorter side before cropping (default: size)
    short_side_range: list[int] | None = None  # train: random shorter side in [a, b] + random crop; null: TSN crops
    train_scales: list[float] = field(default_factory=lambda: [1.0, 0.875, 0.75, 0.66])  # TSN multi-scale crops
    batch_size: int = 8  # GLOBAL batch, split across ranks
    workers: int = 2
    flip: str = "false"  # false | true | path to a class-swap map
    seed_offset: int = 0
    # train_list a folder of classes (root/<class>/<video>) and val_list the same folder: this fraction of every
    # class is held out for validation, chosen with split_seed
    val_fraction: float = 0.0
    split_seed: int = 0
    # where videos' frame indexes are kept so later epochs and runs skip building them: "auto"
    # ($XDG_CACHE_HOME/actionbench/video-index), a folder, or null (rebuilt for every clip)
    index_cache: str | None = "auto"
    clip_timeout: float = 120.0  # seconds a clip may take to decode in a worker before it counts as a bad video
    # MB of whole decoded videos each data process keeps (0: none): a set that fits (the demo's, a low-resolution
    # subset) is decoded once per run instead of once per epoch; the same frames either way
    decoded_cache_mb: int = 0
    # a split whose unreadable videos are more than this share of its videos stops the run (DataError): a wrong
    # data.root or a half-finished download is an error, not a silently smaller dataset
    max_bad_fraction: float = 0.05
    # how data-loader workers start: forkserver (default: from a clean single-threaded server, never from a process
    # with threads, which can deadlock), spawn, or fork (fastest start, the old way)
    worker_start: Literal["forkserver", "spawn", "fork"] = "forkserver"


@dataclass
class OptimConfig(_Section):
    epochs: int = 75
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    no_decay_bn_bias: bool = False
    schedule: Literal["cosine", "multistep", "constant"] = "cosine"
    milestones: list[int] = field(default_factory=list)  # multistep: epochs where the rate drops
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    warmup_start_lr: float = 0.01
    clip_grad: float | None = None


@dataclass
class TrainConfig(_Section):
    amp: Literal["none", "bf16", "fp16"] = "none"  # fp16 uses a grad scaler on CUDA
    grad_accum: int = 1
    sync_bn: bool = False  # CUDA only; plain BN with a warning on CPU
    freeze_bn: bool = False  # BN layers kept in eval mode (fine-tuning with small batches)
    channels_last: bool = False
    checkpoint_every: int = 0  # also write last.pt every N iterations (0: only at epoch ends)
    resume: bool = False
    deterministic: bool = False
    eval_every: int = 1  # epochs between validations
    log_every: int = 10
    tensorboard: bool = True
    progress: bool = True
    threads: int = 0  # intra-op threads per process; 0: the cores left after data.workers (or OMP_NUM_THREADS)
    dist_timeout: float = 1800.0  # seconds any collective (and joining the group) may wait before failing


@dataclass
class TestConfig(_Section):
    num_clips: int = 10  # video level: m clips x k crops (paper: 10 x 3 on Kinetics, 2 x 3 on SSV2)
    num_crops: int = 3
    aggregate: Literal["logits", "softmax"] = "logits"
    scale_size: int | None = None  # shorter side for the test crops (default: data.scale_size or data.size)
    size: int | None = None  # crop size of the video-level test (paper 4.2: 3 crops of 256; default: data.size)
    batch_size: int | None = None
    # a converted checkpoint carries its authors' protocol (input size, frames, sampling, clips x crops): "checkpoint"
    # evaluates under it, "config" under this config's data.* / test.* keys
    preprocessing: Literal["checkpoint", "config"] = "checkpoint"


@dataclass
class Config(_Section):
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    seed: int = 0
    output_dir: str = ""  # the run directory; empty: a new one, runs/<model>_<dataset>_<time>
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dataset: str = ""  # a name for reports (default: the annotation folder's name)


class ConfigError(UsageError):
    """A bad key or value; the message names it."""


def _check_type(key: str, value, hint):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_type(key, value, arg)
            except ConfigError as exc:
                errors.append(str(exc))
        null = " (or null)" if type(None) in args and typing.get_origin(args[0]) is Literal else ""
        raise ConfigError(errors[0] + null if errors else f"{key}: bad value {value!r}")
    if origin is Literal:
        if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value) in args:
            return str(value)
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(args)}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_check_type(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if hint is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{key}: expected a mapping of names to values, got {value!r}")
        return dict(value)
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool | int | float):
            return str(value).lower() if isinstance(value, bool) else str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {hint}")


# Keys users of MMAction2, the TSM repo and PySlowFast type, and ours for them (suggested, never applied silently).
KEY_ALIASES = {
    "train.epochs": "optim.epochs", "train.max_epochs": "optim.epochs", "train.batch_size": "data.batch_size",
    "train.lr": "optim.lr", "model.arch": "model.name", "model.backbone": "model.name",
    "data.num_segments": "data.frames", "data.clip_len": "data.frames", "data.num_frames": "data.frames",
    "data.num_workers": "data.workers", "data.frame_interval": "data.stride", "test.num_views": "test.num_clips",
}


def _apply(obj, values: dict, prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in names:
            if key in KEY_ALIASES:
                raise ConfigError(f"unknown config key {key!r}; actionbench calls it {KEY_ALIASES[key]}")
            close = difflib.get_close_matches(name, names, n=3)
            hint = f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""
            raise ConfigError(f"unknown config key {key!r}{hint}")
        current = getattr(obj, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a mapping of {key}.* keys, got {value!r}")
            _apply(current, value, f"{key}.")
        elif hints[name] is dict:  # free-form options merge: model.options.pool_style=tsm keeps the others
            setattr(obj, name, {**current, **_check_type(key, value, dict)})
        else:
            setattr(obj, name, _check_type(key, value, hints[name]))


def nested(values: dict) -> dict:
    """{"model.name": x, "data.size": y} -> {"model": {"name": x}, "data": {"size": y}}; the inverse of `flat`."""
    out: dict = {}
    for key, value in values.items():
        node = out
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def flat(values: dict, prefix: str = "") -> dict:
    """{"optim": {"lr": 0.1}} -> {"optim.lr": 0.1} (model.options stays one value); the inverse of `nested`."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "options":
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


_OVERRIDE = re.compile(r"^([a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+|seed|output_dir|device|dataset)=")


def is_override(text: str) -> bool:
    """`optim.lr=0.1`, `model.options.pool_style=tsm`, `seed=3`: a config override, not a file or a name."""
    return bool(_OVERRIDE.match(text))


def split_overrides(args: argparse.Namespace, positionals: tuple[str, ...]) -> None:
    """Move every override among `positionals` (attribute names of args) to `args.overrides`, keeping order: one
    parsing rule for every command (an override may stand anywhere among its positionals)."""
    overrides = list(getattr(args, "overrides", None) or [])
    for name in positionals:
        value = getattr(args, name, None)
        if isinstance(value, list):
            setattr(args, name, [v for v in value if not is_override(v)])
            overrides += [v for v in value if is_override(v)]
        elif isinstance(value, str) and is_override(value):
            setattr(args, name, None)
            overrides.insert(0, value)
    args.overrides = overrides


def _parse_override(text: str) -> dict:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value (e.g. optim.lr=0.02)")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"override {text!r}: its value is not valid YAML ({problem}); close its brackets or "
                          "quotes") from None
    return nested({key: value})


def update_config(cfg: Config, values: dict) -> Config:
    """Set dotted keys (`{"data.size": 256}`), each checked against the schema, then validate the whole."""
    _apply(cfg, nested(values))
    validate(cfg)
    return cfg


def read_yaml_mapping(path: Path, what: str, expected: str) -> dict:
    """The YAML mapping in `path`; a ConfigError naming the file when it is missing, not YAML or not a mapping."""
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected {expected}")
    return values


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the YAML file (if any), then `key=value` overrides, each checked against the schema."""
    cfg = Config()
    if path:
        path = Path(path)
        values = read_yaml_mapping(path, "config file", "a mapping at the top level")
        base = values.pop("base", None)
        if base:  # a preset may build on another: `base: other.yaml` (relative to this file)
            cfg = load_config(path.parent / base)
        try:
            _apply(cfg, values)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """`key=value` texts onto `cfg`, each checked against the schema, then the whole validated."""
    for text in overrides:
        _apply(cfg, _parse_override(text))
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """What one key's type cannot say: ranges and value combinations (allowed values are `Literal` types)."""
    if cfg.test.num_crops not in (1, 3, 5, 10):
        raise ConfigError(f"test.num_crops: {cfg.test.num_crops} crops is not a crop layout; use 1 (centre), 3 (along "
                          "the long side), 5 (corners + centre) or 10 (those and their flips)")
    positive = {"optim.lr": cfg.optim.lr, "data.size": cfg.data.size, "data.stride": cfg.data.stride,
                "test.num_clips": cfg.test.num_clips, "train.eval_every": cfg.train.eval_every,
                "train.log_every": cfg.train.log_every}
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    at_least_zero = {"optim.weight_decay": cfg.optim.weight_decay, "optim.warmup_epochs": cfg.optim.warmup_epochs,
                     "data.workers": cfg.data.workers, "train.threads": cfg.train.threads,
                     "train.checkpoint_every": cfg.train.checkpoint_every}
    for key, value in at_least_zero.items():
        if value < 0:
            raise ConfigError(f"{key}: must be 0 or more, got {value}")
    if not 0 <= cfg.data.max_bad_fraction <= 1:
        raise ConfigError(f"data.max_bad_fraction: must be in [0, 1], got {cfg.data.max_bad_fraction}")
    for key, value in (("optim.momentum", cfg.optim.momentum), ("model.dropout", cfg.model.dropout)):
        if not 0 <= value < 1:
            raise ConfigError(f"{key}: must be in [0, 1), got {value}")
    for key, value in (("model.mean", cfg.model.mean), ("model.std", cfg.model.std)):
        if value is not None and len(value) != 3:
            raise ConfigError(f"{key}: expected 3 values (one per channel, 0-1 units), got {value}")
    for key, value in (("data.frames", cfg.data.frames), ("data.batch_size", cfg.data.batch_size),
                       ("optim.epochs", cfg.optim.epochs), ("train.grad_accum", cfg.train.grad_accum)):
        if value < 1:
            raise ConfigError(f"{key}: must be at least 1, got {value}")


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


# Keys that change how a run is watched or fed, not what it computes: a resume may change them, and they are not
# part of a study run's identity.
RESUME_MAY_CHANGE = ("output_dir", "device", "data.workers", "data.index_cache", "data.decoded_cache_mb",
                     "train.resume", "train.progress", "train.log_every", "train.tensorboard", "train.checkpoint_every",
                     "train.threads")
# Keys holding paths, made absolute when a config is resolved (relative ones from the working directory or the
# study file).
PATH_KEYS = ("data.root", "data.train_list", "data.val_list", "data.test_list", "model.pretrained",
             "model.init_from")


def absolute_paths(cfg: Config, base: Path | None = None) -> Config:
    """The config with its data and weights paths absolute (relative ones taken from `base`, default the cwd)."""
    base = Path(base or os.getcwd())
    for key in PATH_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value and value != "imagenet" and not Path(value).is_absolute():
            setattr(getattr(cfg, section), name, str((base / value).resolve()))
    flip = cfg.data.flip
    if flip and not Path(flip).is_absolute() and (base / flip).is_file():  # a class-swap map file
        cfg.data.flip = str((base / flip).resolve())
    return cfg


def freeze(cfg: Config) -> Config:
    """A frozen copy of `cfg`: the value every step of a run reads once it is resolved."""
    frozen = from_dict(to_dict(cfg))
    for section in (frozen, *(getattr(frozen, f.name) for f in dataclasses.fields(frozen)
                              if dataclasses.is_dataclass(getattr(frozen, f.name)))):
        object.__setattr__(section, "_frozen", True)
    return frozen


def thaw(cfg: Config) -> Config:
    """A changeable copy of a (frozen) config."""
    return from_dict(to_dict(cfg))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def from_dict(values: dict) -> Config:
    cfg = Config()
    _apply(cfg, values)
    return cfg
