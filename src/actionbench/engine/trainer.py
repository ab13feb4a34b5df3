"""Training: single process or torchrun DDP, exact resume, per-iteration schedules, checkpoints, final test.

`train(cfg)` returns (and rank 0 writes to `output_dir/results.json`) the run's results.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from actionbench import statistics
from actionbench.config import Config, ConfigError, save_config, to_dict
from actionbench.data.annotations import Annotations, holdout_split, load_annotations
from actionbench.data.dataset import VideoClipDataset
from actionbench.data.decode import resolve_index_cache
from actionbench.engine import rundir
from actionbench.engine.checkpoint import load_checkpoint, restore_rng, rng_state, save_checkpoint
from actionbench.engine.distributed import (
    DistInfo,
    GlobalBatchSampler,
    broadcast_object,
    cleanup_distributed,
    gather_objects,
    init_distributed,
    job_value,
)
from actionbench.engine.evaluation import (
    accuracy_intervals,
    accuracy_metrics,
    aggregate_videos,
    collect_view_logits,
    make_loader,
    shard_loader,
    to_model_input,
    write_confusion,
    write_predictions,
)
from actionbench.engine.logging import MetricsLogger, make_progress
from actionbench.engine.schedules import learning_rate
from actionbench.engine.stopping import StopSignals
from actionbench.errors import DataError, Interrupted, RunDirError, TrainingDiverged
from actionbench.models.layers import TemporalMaxPool, convert_sync_batchnorm
from actionbench.runtime import retain_freed_memory

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was asked for but this machine has no CUDA device; use device=cpu")
    return torch.device(name)


def data_root(cfg: Config, list_file: str) -> Path:
    if cfg.data.root:
        return Path(cfg.data.root)
    return Path(list_file) if Path(list_file).is_dir() else Path(list_file).parent


def load_split(cfg: Config, list_file: str, classes: list[str] | None = None) -> Annotations:
    """Training split when `classes` is None; otherwise an evaluation split with its labels resolved against
    `classes` (the model's): by class name, so that a split may hold a subset of the classes in any order.
    A folder of classes given as both training and validation data is split (`data.val_fraction`)."""
    subset = "train" if classes is None else "test"  # HMDB51's split files list both subsets
    ann = load_annotations(list_file, cfg.data.format, root=data_root(cfg, list_file), subset=subset)
    if Path(list_file).is_dir() and Path(cfg.data.train_list).resolve() == Path(cfg.data.val_list).resolve():
        if not cfg.data.val_fraction:
            raise ConfigError(f"data.train_list and data.val_list are the same folder ({list_file}): set "
                              "data.val_fraction=0.2 to hold out a seeded fifth of every class for validation")
        ann = holdout_split(ann, cfg.data.val_fraction, cfg.data.split_seed, "train" if classes is None else "val")
    if classes is None or ann.classes == classes:
        return ann
    return Annotations([replace(r, label=index) for r, index in
                        zip(ann.records, _label_map(ann, classes, list_file), strict=True)], list(classes), ann.source)


def _label_map(ann: Annotations, classes: list[str], list_file: str) -> list[int]:
    unnamed = [str(i) for i in range(len(classes))]
    if ann.classes == [str(i) for i in range(ann.num_classes)] and ann.num_classes <= len(classes):
        return [r.label for r in ann.records]  # numeric labels without names: indices into the model's classes
    if classes == unnamed and ann.num_classes == len(classes):
        log.warning("%s names its classes but the checkpoint does not (convert it with --classes); its class "
                    "order is taken as the classifier's", list_file)
        return [r.label for r in ann.records]
    unknown = [c for c in ann.classes if c not in classes]
    if unknown:
        raise ValueError(f"{list_file}: classes the model does not know: {', '.join(unknown[:5])}"
                         f"{f' ... ({len(unknown)} in all)' if len(unknown) > 5 else ''}; evaluate with the class "
                         "list (classes.txt) the model was trained on")
    index = {name: i for i, name in enumerate(classes)}
    return [index[ann.classes[r.label]] for r in ann.records]


def make_dataset(cfg: Config, ann: Annotations, list_file: str, mode: str, model: nn.Module,
                 bad_video_log: Path | None) -> VideoClipDataset:
    d = cfg.data
    test = mode == "test"
    scale = (cfg.test.scale_size if test else None) or d.scale_size or d.size
    return VideoClipDataset(
        ann, root=data_root(cfg, list_file), num_frames=d.frames, sampling=d.sampling, stride=d.stride, mode=mode,
        num_clips=cfg.test.num_clips if test else 1, num_crops=cfg.test.num_crops if test else 1, size=d.size,
        scale_size=scale, mean=model.mean, std=model.std, flip=d.flip, train_scales=tuple(d.train_scales),
        short_side_range=tuple(d.short_side_range) if d.short_side_range else None,
        seed=cfg.seed + d.seed_offset, bad_video_log=bad_video_log,
        normalize=False,  # uint8 through the workers and to the device; `to_model_input` normalises there
        index_cache=resolve_index_cache(d.index_cache), clip_timeout=d.clip_timeout,
    )


def model_options(cfg: Config) -> dict:
    """The builder options of the run's model: `model.options`, and `base_channels` for the ResNet family (not
    SlowFast, not InceptionV1)."""
    name = cfg.model.name
    width = {"base_channels": cfg.model.base_channels} if "resnet" in name and not name.startswith("slowfast") else {}
    return {**width, **cfg.model.options}


def build_run_model(cfg: Config, num_classes: int) -> nn.Module:
    from actionbench.models.registry import build_model
    from actionbench.models.weights import load_weights

    options = model_options(cfg)
    if cfg.model.inflate_divide:
        options["inflate_divide"] = True
    model = build_model(cfg.model.name, num_classes, cfg.data.frames, temporal_pooling=cfg.model.temporal_pooling,
                        dropout=cfg.model.dropout, pretrained=cfg.model.pretrained, **options)
    if cfg.model.mean is not None:
        model.mean = tuple(cfg.model.mean)
    if cfg.model.std is not None:
        model.std = tuple(cfg.model.std)
    model.channel_order = cfg.model.channel_order
    if cfg.model.init_from:
        load_weights(model, cfg.model.init_from)
    return model


def _optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
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


def _autocast_factory(cfg: Config, device: torch.device):
    if cfg.train.amp == "none":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if cfg.train.amp == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


def _freeze_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _cost_figures(cfg: Config, num_classes: int) -> dict:
    from actionbench.profiling import profile_model

    options = model_options(cfg)
    p = profile_model(cfg.model.name, cfg.data.frames, cfg.data.size, num_classes, cfg.model.temporal_pooling,
                      **options)
    return {"params": p["params"], "paper_gflops": p["paper_gflops"], "gmacs": p["gmacs"]}


def run_outputs(run_dir: Path, tag: str) -> dict[str, Path]:
    """Where an evaluation writes: the training's final one `predictions.csv` / `confusion.csv`, every other one
    files named after what it evaluated (`predictions_best-<hash>.csv`), so that none overwrites another's."""
    if tag == "final":
        return {"predictions": run_dir / "predictions.csv", "confusion": run_dir / "confusion.csv"}
    return {"predictions": run_dir / f"predictions_{tag}.csv", "confusion": run_dir / f"confusion_{tag}.csv"}


def evaluate_run(cfg: Config, model: nn.Module, classes: list[str], info: DistInfo, device: torch.device,
                 bad_video_log: Path | None, outputs: dict[str, Path] | None = None, progress=None) -> dict:
    """Clip level (val list, 1 centre clip) and video level (test list, m clips x k crops); with `outputs`,
    the video-level predictions and confusion matrix are written there (main rank)."""
    autocast = _autocast_factory(cfg, device)
    batch = cfg.test.batch_size or max(1, cfg.data.batch_size // info.world_size)
    results = {}
    test_list = cfg.data.test_list or cfg.data.val_list
    for level, mode, list_file in (("clip", "val", cfg.data.val_list), ("video", "test", test_list)):
        ann = load_split(cfg, list_file, classes)
        dataset = make_dataset(cfg, ann, list_file, mode, model, bad_video_log)
        loader = shard_loader(dataset, batch_size=batch, workers=cfg.data.workers, device=device, info=info,
                              worker_start=cfg.data.worker_start)
        logits, labels = collect_view_logits(model, loader, device=device, info=info, autocast=autocast,
                                             progress=progress)
        del loader  # its worker processes end here
        scores, truth, bad = aggregate_videos(logits, labels, cfg.test.aggregate)
        metrics = accuracy_metrics(scores, truth, len(classes))
        results.update({f"{level}_top1": round(metrics["top1"], 3), f"{level}_top5": round(metrics["top5"], 3),
                        f"{level}_mean_class_acc": round(metrics["mean_class_acc"], 3),
                        f"{level}_videos": metrics["count"], f"{level}_bad_videos": len(bad),
                        **accuracy_intervals(metrics, len(classes), level)})
        if level == "video" and outputs and info.is_main:
            write_confusion(outputs["confusion"], metrics["confusion"], classes)
            write_predictions(outputs["predictions"], dataset, logits, labels, classes, cfg.test.aggregate)
    results["mean_class_acc"] = results["video_mean_class_acc"]
    results["ci_method"] = f"{statistics.METHOD}; *_wilson: Wilson score interval"
    results["val_is_test"] = _same_file(cfg.data.val_list, test_list)
    return results


def train(cfg: Config, *, resume: bool | str | None = None, overwrite: bool = False) -> dict:
    """Train `cfg` in its run directory (engine/rundir.py), then test it; returns (and writes) results.json.

    `resume`: True continues the run in `cfg.output_dir` (there must be a last.pt and the same config), "auto"
    resumes when there is one (studies), False starts a new run (default: `cfg.train.resume`). `overwrite`
    replaces a run already in `cfg.output_dir`. SIGINT/SIGTERM stop it after writing last.pt (`Interrupted`).
    """
    retain_freed_memory()
    device = resolve_device(cfg.device)
    info = init_distributed(device.type, cfg.train.dist_timeout)
    resume = cfg.train.resume if resume is None else resume
    if info.restart:  # torchrun restarted the job after losing a rank: continue the run the first attempt began
        resume, overwrite = "auto", True
        cfg.output_dir = cfg.output_dir or job_value("run_dir") or ""
    try:
        set_threads(cfg, info)
        return _train(cfg, device, info, resume, overwrite)
    finally:
        cleanup_distributed()


def set_threads(cfg: Config, info: DistInfo) -> int:
    """Intra-op threads of this process: `train.threads`, else OMP_NUM_THREADS when set, else the cores left to it
    after its data-loader workers (the main process and its workers otherwise oversubscribe the CPU: a tiny run
    took 28 s with torch's default threads and 6 s with one, on 2 cores)."""
    threads = cfg.train.threads
    if not threads and not os.environ.get("OMP_NUM_THREADS"):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        threads = max(1, cores // local - cfg.data.workers)
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


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
    cfg.output_dir = str(run_dir)
    if info.is_main and info.enabled:
        job_value("run_dir", str(run_dir))  # where a restarted attempt continues
    return run_dir, resuming


def _adopt_pretrained_normalisation(cfg: Config) -> None:
    """Fine-tuning a converted (or our own) checkpoint: its weights expect its input normalisation, which the
    run's config then records, so that the run's own checkpoints are evaluated with it too."""
    from actionbench.models.weights import checkpoint_normalisation

    found = checkpoint_normalisation(cfg.model.pretrained) if cfg.model.mean is None else None
    if found:
        cfg.model.mean, cfg.model.std, cfg.model.channel_order = found["mean"], found["std"], found["channel_order"]
        log.info("model.pretrained %s: input normalised with its mean %s, std %s (%s)", cfg.model.pretrained,
                 found["mean"], found["std"], found["channel_order"])


def _train(cfg: Config, device: torch.device, info: DistInfo, resume: bool | str, overwrite: bool) -> dict:
    check_run_config(cfg)
    rundir.absolute_paths(cfg)
    _adopt_pretrained_normalisation(cfg)
    run_dir, resuming = _shared_run_dir(cfg, info, resume, overwrite)
    cfg.train.resume = resuming
    if info.is_main:
        save_config(cfg, run_dir / "config.yaml")
    torch.manual_seed(cfg.seed)
    train_ann = load_split(cfg, cfg.data.train_list)
    classes = train_ann.classes
    model = build_run_model(cfg, len(classes))
    configure_backends(cfg, device, model, info)
    bad_log = run_dir / "bad_videos.tsv"
    train_ds = make_dataset(cfg, train_ann, cfg.data.train_list, "train", model, bad_log)
    val_ann = load_split(cfg, cfg.data.val_list, classes)
    val_ds = make_dataset(cfg, val_ann, cfg.data.val_list, "val", model, bad_log)
    selects = cfg.optim.epochs > cfg.train.eval_every  # more than one validation: best.pt is a selection
    if selects and info.is_main and _same_file(cfg.data.val_list, cfg.data.test_list or cfg.data.val_list):
        log.warning("best.pt is chosen on %s, which is also the test list: its test accuracy is optimistic "
                    "(give data.test_list another split)", cfg.data.val_list)
    global_batch = cfg.data.batch_size
    iters_per_epoch = len(train_ds) // global_batch
    if iters_per_epoch == 0:
        raise ConfigError(f"data.batch_size={global_batch} is larger than the training set ({len(train_ds)} "
                          f"videos in {cfg.data.train_list}); lower data.batch_size")
    sync_bn = cfg.train.sync_bn and info.enabled and device.type == "cuda"
    if sync_bn:
        model = convert_sync_batchnorm(model)  # keeps the per-frame BN of 2D designs (torch's converter does not)
    elif cfg.train.sync_bn and info.enabled:
        warnings.warn("train.sync_bn needs CUDA: using per-process BatchNorm on CPU", stacklevel=2)
    volumetric = any(p.dim() == 5 for p in model.parameters())
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last_3d if volumetric else torch.channels_last)
    model.to(device)
    core = model
    if info.enabled:
        device_ids = [info.local_rank] if device.type == "cuda" else None
        # SyncBN keeps every rank's running statistics equal: no buffer broadcast before each forward
        model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=not sync_bn)
    optimizer = _optimizer(cfg, core)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.amp == "fp16" and device.type == "cuda")
    autocast = _autocast_factory(cfg, device)
    start_epoch, start_batch, step, best_top1 = 0, 0, 0, -1.0
    spent = {"seconds": 0.0, "clips": 0}  # training time and clips of this run, across resumes
    pending_validation = False
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if resuming:
        state = load_checkpoint(last_path)
        core.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _load_scaler(scaler, state.get("scaler"))
        start_epoch, start_batch, step = state["epoch"], state["batch"], state["step"]
        best_top1 = state["best_top1"]
        spent = {"seconds": state.get("train_seconds", 0.0), "clips": state.get("clips_seen", 0)}
        pending_validation = state.get("pending_validation", False)
        restore_rng(state["rng"], info.rank, info.world_size)
        if info.is_main:
            print(f"resuming {last_path}: epoch {start_epoch + 1}, batch {start_batch}, step {step}")
    logger = MetricsLogger(run_dir, info.is_main, cfg.train.tensorboard, resume_step=step if resuming else None)
    accum = cfg.train.grad_accum
    losses = LossTracker(device, info)
    started = time.time()

    def checkpoint(epoch: int, batch: int, path: Path = last_path, pending: bool = False) -> None:
        losses.flush(f"step {step}", last_path)  # never a checkpoint of diverged weights
        rng = gather_objects(rng_state(), info)  # every rank's own generators (a collective: all ranks call it)
        if info.is_main:
            save_checkpoint({"model": core.state_dict(), "optimizer": optimizer.state_dict(),
                             "scaler": scaler.state_dict(), "epoch": epoch, "batch": batch, "step": step,
                             "best_top1": best_top1, "rng": rng, "config": to_dict(cfg), "classes": classes,
                             "train_seconds": spent["seconds"] + time.time() - started,
                             "clips_seen": spent["clips"], "pending_validation": pending}, path)

    val_loader = shard_loader(val_ds, batch_size=max(1, cfg.data.batch_size // info.world_size),
                              workers=cfg.data.workers, device=device, info=info, worker_start=cfg.data.worker_start)

    def validate(epoch: int) -> None:
        nonlocal best_top1
        top1 = _validate(model, val_loader, info, device, autocast)
        logger.log(step, **{"val/clip_top1": top1, "epoch": epoch})
        if info.is_main:
            progress.console.print(f"epoch {epoch}: val clip top-1 {top1:.2f}%")
        if top1 > best_top1:
            best_top1 = top1
            checkpoint(epoch, 0, best_path)
        checkpoint(epoch, 0)  # last.pt again, its validation done

    progress = make_progress(info.is_main and cfg.train.progress)
    with progress, StopSignals(info) as stop:
        if pending_validation:  # stopped between an epoch's end and its validation
            validate(start_epoch)
        sampler = GlobalBatchSampler(len(train_ds), global_batch, seed=cfg.seed, rank=info.rank,
                                     world_size=info.world_size)
        loader = make_loader(train_ds, batch_size=global_batch // info.world_size, workers=cfg.data.workers,
                             device=device, sampler=sampler, worker_start=cfg.data.worker_start, seed=cfg.seed)
        for epoch in range(start_epoch, cfg.optim.epochs):
            first = start_batch if epoch == start_epoch else 0
            sampler.set_epoch(epoch, first)  # the indices carry the epoch to the (persistent) workers
            model.train()
            if cfg.train.freeze_bn:
                _freeze_bn(model)
            task = progress.add_task(f"epoch {epoch + 1}/{cfg.optim.epochs}", total=iters_per_epoch, completed=first,
                                     info="")
            tick = time.time()
            shown = ""
            for batch_index, (clips, labels, _, _) in enumerate(loader, start=first):
                lr = learning_rate(cfg.optim, step, iters_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                clips, labels = to_model_input(clips, model, device), labels.to(device, non_blocking=True)
                if cfg.train.channels_last and volumetric:  # 2D designs fold time into the batch first
                    clips = clips.contiguous(memory_format=torch.channels_last_3d)
                stepping = (batch_index + 1) % accum == 0
                # accumulating: no gradient all-reduce until the last micro-batch (DDP's no_sync)
                with (model.no_sync() if info.enabled and not stepping else contextlib.nullcontext()):
                    with autocast():
                        loss = nn.functional.cross_entropy(model(clips), labels)
                    losses.add(loss)  # no host sync here: checked and logged every log_every iterations
                    scaler.scale(loss / accum).backward()
                if stepping:
                    if cfg.optim.clip_grad:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(core.parameters(), cfg.optim.clip_grad)
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                step += 1
                spent["clips"] += global_batch
                now = time.time()
                rate = global_batch / max(now - tick, 1e-9)
                tick = now
                if step % cfg.train.log_every == 0 or batch_index + 1 == iters_per_epoch:
                    mean_loss = losses.flush(f"epoch {epoch + 1}, by iteration {batch_index + 1} (lr {lr:.4g})",
                                             last_path)
                    logger.log(step, **{"train/loss": mean_loss, "train/lr": lr, "train/clips_per_s": rate})
                    shown = f"loss {mean_loss:.3f} lr {lr:.3g}"
                progress.update(task, advance=1, info=f"{shown} {rate:.1f} clips/s")
                every = cfg.train.checkpoint_every
                if every and step % every == 0 and stepping:
                    checkpoint(epoch, batch_index + 1)
                if stepping and stop.agreed():
                    checkpoint(epoch, batch_index + 1)
                    raise Interrupted(
                        f"stopped by {stop.name()} at epoch {epoch + 1}, iteration {batch_index + 1}; {last_path} "
                        f"written. Resume with: actionbench train {run_dir} --resume")
            summary = train_ds.bad_video_summary()
            if summary and info.is_main:
                progress.console.print(f"[yellow]{len(summary)} bad video(s) replaced so far; see {bad_log}")
            validating = (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.optim.epochs
            checkpoint(epoch + 1, 0, pending=validating)  # the epoch is safe before validation starts
            if validating:
                validate(epoch + 1)
        train_seconds = spent["seconds"] + time.time() - started
        loader = val_loader = None  # the training's worker processes end before the final test starts its own
        results = evaluate_run(cfg, core, classes, info, device, bad_log, outputs=run_outputs(run_dir, "final"))
    logger.close()
    results = _results_record(cfg, classes, results, train_seconds, spent["clips"], train_ds.bad_video_summary())
    if info.is_main:
        (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results


def _same_file(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


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


class LossTracker:
    """The training loss summed on the device and looked at only every log interval: one host sync (and, under
    DDP, one all-reduce) per interval instead of several per iteration. A non-finite loss on any rank stops every
    rank at the same point, with the same message, instead of one raising while the others wait in an all-reduce."""

    def __init__(self, device: torch.device, info: DistInfo) -> None:
        self.device, self.info = device, info
        self.totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, non-finite count, iterations

    def add(self, loss: torch.Tensor) -> None:
        value = loss.detach().double()
        finite = torch.isfinite(value)
        self.totals += torch.stack([torch.where(finite, value, 0.0), (~finite).double(), torch.ones_like(value)])

    def flush(self, where: str, last_good: Path) -> float:
        """Mean loss since the last flush (across ranks); raises TrainingDiverged if any rank saw a NaN/inf."""
        totals = self.totals.clone()
        if self.info.enabled:
            dist.all_reduce(totals)
        self.totals.zero_()
        loss_sum, bad, count = totals.tolist()
        if bad:
            raise TrainingDiverged(
                f"the loss became NaN or infinite at {where}; stopped. The last good checkpoint is "
                f"{last_good if last_good.exists() else 'not written yet'}; lower optim.lr or set optim.clip_grad.")
        return loss_sum / count if count else float("nan")


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


def _load_scaler(scaler: torch.amp.GradScaler, saved: dict | None) -> None:
    """Resume the fp16 loss scale; a checkpoint written without it (CPU, bf16) restarts the scale instead of failing."""
    if not scaler.is_enabled():
        return
    if saved:
        scaler.load_state_dict(saved)
    else:
        log.warning("the checkpoint was written without fp16 loss scaling; the loss scale starts afresh")


def _validate(model, loader, info, device, autocast) -> float:
    logits, labels = collect_view_logits(model, loader, device=device, info=info, autocast=autocast)
    scores, truth, _ = aggregate_videos(logits, labels)
    return float(accuracy_metrics(scores, truth, int(scores.shape[1]) if len(scores) else 1)["top1"])


def _results_record(cfg: Config, classes: list[str], metrics: dict, train_time: float, clips_seen: int,
                    bad: dict) -> dict:
    dataset = cfg.dataset or Path(cfg.data.train_list).parent.name
    return {
        "model": cfg.model.name, "dataset": dataset, "frames": cfg.data.frames, "sampling": cfg.data.sampling,
        "temporal_pooling": cfg.model.temporal_pooling, "size": cfg.data.size, "num_classes": len(classes),
        **metrics, "num_clips": cfg.test.num_clips, "num_crops": cfg.test.num_crops,
        **_cost_figures(cfg, len(classes)), "epochs": cfg.optim.epochs, "base_channels": cfg.model.base_channels,
        "pretrained": cfg.model.pretrained, "train_seconds": round(train_time, 1),
        "train_clips_per_s": round(clips_seen / max(train_time, 1e-9), 2), "bad_videos": len(bad),
        # what produced these numbers
        "checkpoint": "final weights (last.pt after the last epoch)", "config_file": "config.yaml",
        "train_list": cfg.data.train_list, "val_list": cfg.data.val_list,
        "test_list": cfg.data.test_list or cfg.data.val_list, "seed": cfg.seed,
        "deterministic": cfg.train.deterministic, "output_dir": str(cfg.output_dir),
        "best_selected": cfg.optim.epochs > cfg.train.eval_every,  # best.pt picked among several validations
    }
