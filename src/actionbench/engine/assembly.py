"""Run assembly: a config -> a resolved, frozen config, its run directory, data, model and datasets.

Everything that can be checked is checked before the run directory exists (model names and options, data files,
annotations, labels, batch size vs dataset, weights), so a start that fails leaves no directory behind that would
block its own retry. The config every later step reads is resolved once (absolute paths, the normalisation a
fine-tuned checkpoint expects, threads, the output directory) and frozen.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from actionbench.config import Config, ConfigError, absolute_paths, freeze, save_config, thaw
from actionbench.data import splits
from actionbench.data.dataset import VideoClipDataset
from actionbench.data.decoding import resolve_index_cache
from actionbench.data.records import Annotations
from actionbench.data.splits import dataset_name
from actionbench.engine import rundir
from actionbench.engine.distributed import DistInfo, broadcast_object, job_value
from actionbench.errors import DataError, RunDirError
from actionbench.models.base import VideoModel
from actionbench.models.factory import build_from_config, model_options
from actionbench.models.layers import TemporalMaxPool
from actionbench.models.weights import file_sha256

log = logging.getLogger(__name__)
_EXISTENCE_SAMPLE = 200  # videos of a split looked for before a run starts (200 file lookups)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda was asked for but this machine has no CUDA device; use device=cpu "
                          "(or device=auto)")
    return torch.device(name)


def check_run_config(cfg: Config, files: bool = True) -> None:
    """What cannot work, said before anything starts: unknown model, missing lists (the config error names the
    key and what to do; the file errors name the file). `files=False` leaves out whether the files exist here
    (commands printed for another machine)."""
    from actionbench.models.registry import check_model_name

    check_model_name(cfg.model.name)
    for key in ("train_list", "val_list"):
        if not getattr(cfg.data, key):
            raise ConfigError(f"data.{key} is not set: give the {'training' if key == 'train_list' else 'validation'}"
                              f" annotations, e.g. data.{key}=path/{key.split('_')[0]}.txt")
    for key in ("train_list", "val_list", "test_list") if files else ():
        value = getattr(cfg.data, key)
        if value and not Path(value).exists():
            raise DataError(f"data.{key}: {value} does not exist")


def check_model_config(cfg: Config) -> None:
    """The model's name and builder options, checked by building it on the meta device (shapes only: instant)."""
    with torch.device("meta"):
        try:
            build_from_config(cfg.model, 2, cfg.data.frames, weights=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{cfg.model.name} with options {cfg.model.options}: {exc}") from exc


def adopt_pretrained_normalisation(cfg: Config) -> None:
    """Fine-tuning a converted (or our own) checkpoint: its weights expect its input normalisation, which the
    run's config then records, so that the run's own checkpoints are evaluated with it too."""
    from actionbench.models.weights import checkpoint_normalisation

    found = checkpoint_normalisation(cfg.model.pretrained) if cfg.model.mean is None else None
    if found:
        cfg.model.mean, cfg.model.std, cfg.model.channel_order = found["mean"], found["std"], found["channel_order"]
        log.info("model.pretrained %s: input normalised with its mean %s, std %s (%s)", cfg.model.pretrained,
                 found["mean"], found["std"], found["channel_order"])


def resolve_threads(cfg: Config, info: DistInfo) -> int:
    """Intra-op threads of this process: `train.threads`, else OMP_NUM_THREADS when set, else the cores left to it
    after its data-loader workers (the main process and its workers otherwise oversubscribe the CPU: a tiny run
    took 28 s with torch's default threads and 6 s with one, on 2 cores). Applied to torch; returns the count."""
    threads = cfg.train.threads
    if not threads and not os.environ.get("OMP_NUM_THREADS"):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        threads = max(1, cores // local - cfg.data.workers)
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def resolve_config(cfg: Config, info: DistInfo) -> Config:
    """A resolved copy of `cfg` (not yet frozen: its output directory is decided later): checked, paths absolute,
    the pretrained checkpoint's normalisation adopted, the threads this process uses."""
    cfg = thaw(cfg)
    check_run_config(cfg)
    absolute_paths(cfg)
    adopt_pretrained_normalisation(cfg)
    check_model_config(cfg)
    o = cfg.optim
    if o.warmup_epochs and o.warmup_start_lr > o.lr and info.is_main:
        log.warning("optim.warmup_start_lr=%g is above optim.lr=%g: the warm-up lowers the rate instead of raising "
                    "it (set optim.warmup_start_lr below optim.lr, e.g. %g)", o.warmup_start_lr, o.lr, o.lr / 10)
    cfg.train.threads = resolve_threads(cfg, info)
    return cfg


def load_split(cfg: Config, list_file: str, classes: list[str] | None = None) -> Annotations:
    """The run's training split (`classes` None) or an evaluation split in the model's classes; a DataError when
    it lists no video, or when most of a sample of its videos do not exist (a wrong data.root)."""
    d = cfg.data
    ann = splits.load_split(list_file, format=d.format, root=d.root or None, classes=classes,
                            train_list=d.train_list, val_list=d.val_list, val_fraction=d.val_fraction,
                            split_seed=d.split_seed)
    if not len(ann):
        raise DataError(f"{list_file} lists no video: give annotations with at least one line")
    root = splits.data_root(d.root or None, list_file)
    sample = [ann.records[i] for i in range(0, len(ann), max(1, len(ann) // _EXISTENCE_SAMPLE))]
    missing = [r.path for r in sample if not (root / r.path).exists()]
    if len(missing) > d.max_bad_fraction * len(sample):
        raise DataError(f"{len(missing)} of {len(sample)} videos sampled from {list_file} do not exist under {root} "
                        f"(e.g. {root / missing[0]}): set data.root to the folder the annotation paths are relative "
                        "to")
    return ann


def make_dataset(cfg: Config, ann: Annotations, list_file: str, mode: str, model: VideoModel,
                 bad_video_log: Path | None) -> VideoClipDataset:
    d = cfg.data
    test = mode == "test"
    scale = (cfg.test.scale_size if test else None) or d.scale_size or d.size
    return VideoClipDataset(
        ann, root=splits.data_root(d.root, list_file), num_frames=d.frames, sampling=d.sampling, stride=d.stride,
        mode=mode, num_clips=cfg.test.num_clips if test else 1, num_crops=cfg.test.num_crops if test else 1,
        size=(cfg.test.size if test else None) or d.size, scale_size=scale, mean=model.mean, std=model.std, flip=d.flip,
        train_scales=tuple(d.train_scales), short_side_range=tuple(d.short_side_range) if d.short_side_range else None,
        seed=cfg.seed + d.seed_offset, bad_video_log=bad_video_log,
        normalize=False,  # uint8 through the workers and to the device; `to_model_input` normalises there
        index_cache=resolve_index_cache(d.index_cache), clip_timeout=d.clip_timeout,
        decoded_cache_mb=d.decoded_cache_mb,
    )


def build_run_model(cfg: Config, num_classes: int) -> VideoModel:
    """The run's model: `model.*` at `data.frames`, with its weights (`model.pretrained`, `model.init_from`)."""
    return build_from_config(cfg.model, num_classes, cfg.data.frames)


def make_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """SGD over the model's trainable parameters (BN and biases without weight decay when asked)."""
    o = cfg.optim
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if o.no_decay_bn_bias and (p.dim() <= 1 or name.endswith(".bias")) else decay).append(p)
    groups = [{"params": decay, "weight_decay": o.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov)


def place_model(cfg: Config, model: VideoModel, device: torch.device, info: DistInfo) -> tuple[nn.Module, VideoModel]:
    """The model on its device, in its memory format, with SyncBN and DDP when asked: (what the loop calls, the
    model itself)."""
    sync_bn = cfg.train.sync_bn and info.enabled and device.type == "cuda"
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # torch's own: frame BN holds a plain BN2d child
    elif cfg.train.sync_bn and info.enabled:
        warnings.warn("train.sync_bn needs CUDA: using per-process BatchNorm on CPU", stacklevel=2)
    if cfg.train.channels_last:
        volumetric = any(p.dim() == 5 for p in model.parameters())
        model = model.to(memory_format=torch.channels_last_3d if volumetric else torch.channels_last)
    model.to(device)
    if not info.enabled:
        return model, model
    device_ids = [info.local_rank] if device.type == "cuda" else None
    # SyncBN keeps every rank's running statistics equal: no buffer broadcast before each forward
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=not sync_bn), model


def cost_figures(cfg: Config, num_classes: int) -> dict:
    from actionbench.profiling import profile_model

    p = profile_model(cfg.model.name, cfg.data.frames, cfg.data.size, num_classes, cfg.model.temporal_pooling,
                      **model_options(cfg.model))
    return {"params": p["params"], "paper_gflops": p["paper_gflops"], "gmacs": p["gmacs"]}


def autocast_factory(cfg: Config, device: torch.device):
    if cfg.train.amp == "none":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if cfg.train.amp == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


def configure_backends(cfg: Config, device: torch.device, model: nn.Module, info: DistInfo) -> None:
    """Determinism, TF32 and cuDNN autotuning; one line at start-up wherever CUDA behaves unlike the CPU."""
    warn = log.warning if info.is_main else log.debug
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # fp32 matmuls on tensor cores
        torch.backends.cudnn.benchmark = not cfg.train.deterministic
        if cfg.train.amp == "bf16" and not _native_bf16():
            warn("train.amp=bf16: this GPU has no native bfloat16 (pre-Ampere); it is emulated and slow. "
                 "Use train.amp=fp16 here.")
    elif cfg.train.amp == "fp16":
        warn("train.amp=fp16 on CPU: autocast computes in float16 without loss scaling (CUDA only); "
             "use train.amp=bf16 on CPU.")
    if cfg.train.deterministic:
        if device.type == "cuda":
            # cuBLAS needs a fixed workspace to be deterministic; it must be set before its first call
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.deterministic = True
            if any(isinstance(m, nn.MaxPool3d | TemporalMaxPool) for m in model.modules()):
                warn("train.deterministic=true: this model max-pools in 3D/time, whose CUDA backward has no "
                     "deterministic kernel; its weights may still differ in the last bits between runs.")
        torch.use_deterministic_algorithms(True, warn_only=True)


def _native_bf16() -> bool:
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch: no emulation flag
        return torch.cuda.is_bf16_supported()


def run_outputs(run_dir: Path, tag: str) -> dict[str, Path]:
    """Where an evaluation writes: the training's final one `predictions.csv` / `confusion.csv`, every other one
    files named after what it evaluated (`predictions_best-<hash>.csv`), so that none overwrites another's."""
    if tag == "final":
        return {"predictions": run_dir / "predictions.csv", "confusion": run_dir / "confusion.csv"}
    return {"predictions": run_dir / f"predictions_{tag}.csv", "confusion": run_dir / f"confusion_{tag}.csv"}


def check_bad_share(cfg: Config, bad: int, listed: int, list_file: str, bad_video_log: Path | None) -> None:
    """A DataError when more than `data.max_bad_fraction` of a split's videos could not be read."""
    if bad > cfg.data.max_bad_fraction * listed:
        raise DataError(f"{bad} of the {listed} videos of {list_file} could not be read (see {bad_video_log}): more "
                        f"than data.max_bad_fraction={cfg.data.max_bad_fraction}. Check data.root and the files "
                        f"(actionbench data check {list_file}), or raise data.max_bad_fraction.")


def same_file(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


@dataclass
class AssembledRun:
    """What a training run is made of, assembled from its config before its loop starts."""

    cfg: Config  # resolved and frozen
    run_dir: Path
    resuming: bool
    classes: list[str]
    model: VideoModel
    train_set: VideoClipDataset
    val_set: VideoClipDataset
    bad_video_log: Path
    iters_per_epoch: int


def _shared_run_dir(cfg: Config, info: DistInfo, resume: bool | str, overwrite: bool) -> tuple[Path, bool]:
    """Rank 0 decides (and creates) the run directory; every rank gets its answer, or its error."""
    outcome = None
    if info.is_main:
        try:
            outcome = rundir.prepare(cfg, resume=resume, overwrite=overwrite)
        except RunDirError as exc:
            outcome = exc
    outcome = broadcast_object(outcome, info)
    if isinstance(outcome, RunDirError):
        raise outcome
    run_dir, resuming = outcome
    if info.is_main and info.enabled:
        job_value("run_dir", str(run_dir))  # where a restarted attempt continues
    return run_dir, resuming


def assemble_run(cfg: Config, device: torch.device, info: DistInfo, resume: bool | str,
                 overwrite: bool) -> AssembledRun:
    """The run of `cfg`: everything checked and built, then its directory prepared and its config written."""
    cfg = resolve_config(cfg, info)
    torch.manual_seed(cfg.seed)
    train_ann = load_split(cfg, cfg.data.train_list)
    classes = train_ann.classes
    val_ann = load_split(cfg, cfg.data.val_list, classes)
    model = build_run_model(cfg, len(classes))
    train_set = make_dataset(cfg, train_ann, cfg.data.train_list, "train", model, None)
    val_set = make_dataset(cfg, val_ann, cfg.data.val_list, "val", model, None)
    iters_per_epoch = len(train_set) // cfg.data.batch_size
    if iters_per_epoch == 0:
        raise ConfigError(f"data.batch_size={cfg.data.batch_size} is larger than the training set ({len(train_set)} "
                          f"videos in {cfg.data.train_list}); lower data.batch_size")
    run_dir, resuming = _shared_run_dir(cfg, info, resume, overwrite)
    cfg.output_dir, cfg.train.resume = str(run_dir), resuming
    cfg = freeze(cfg)
    if info.is_main:
        save_config(cfg, run_dir / "config.yaml")
    bad_log = run_dir / "bad_videos.tsv"
    train_set.log_bad_videos_to(bad_log)
    val_set.log_bad_videos_to(bad_log)
    return AssembledRun(cfg, run_dir, resuming, classes, model, train_set, val_set, bad_log, iters_per_epoch)


def results_record(cfg: Config, classes: list[str], metrics: dict, train_time: float, clips_seen: int,
                   bad: dict) -> dict:
    """results.json: the numbers and what produced them."""
    dataset = cfg.dataset or dataset_name(cfg.data.train_list)
    return {
        "model": cfg.model.name, "dataset": dataset, "frames": cfg.data.frames, "sampling": cfg.data.sampling,
        "temporal_pooling": cfg.model.temporal_pooling, "size": cfg.data.size, "num_classes": len(classes),
        **metrics, "num_clips": cfg.test.num_clips, "num_crops": cfg.test.num_crops,
        **cost_figures(cfg, len(classes)), "epochs": cfg.optim.epochs, "base_channels": cfg.model.base_channels,
        "pretrained": cfg.model.pretrained, "init_from": cfg.model.init_from,
        "init_from_sha256": file_sha256(cfg.model.init_from) if cfg.model.init_from else None,
        "train_seconds": round(train_time, 1),
        "train_clips_per_s": round(clips_seen / max(train_time, 1e-9), 2), "bad_videos": len(bad),
        # what produced these numbers
        "checkpoint": "final weights (last.pt after the last epoch)", "config_file": "config.yaml",
        "train_list": cfg.data.train_list, "val_list": cfg.data.val_list,
        "test_list": cfg.data.test_list or cfg.data.val_list, "seed": cfg.seed,
        "deterministic": cfg.train.deterministic, "output_dir": str(cfg.output_dir),
        # best.pt is kept beside last.pt; these numbers are the final weights' (`checkpoint`), not best.pt's
        "validations": -(-cfg.optim.epochs // cfg.train.eval_every),
    }
