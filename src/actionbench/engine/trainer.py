"""The training loop: single process or torchrun DDP, exact resume, per-iteration schedules, checkpoints.

`train(cfg)` assembles the run (engine/assembly.py), trains it, tests it and returns (rank 0 also writes to
`output_dir/results.json`) its results. What a checkpoint holds is one `TrainState`, saved and restored whole.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from actionbench.config import Config, thaw, to_dict
from actionbench.engine.assembly import (
    AssembledRun,
    assemble_run,
    autocast_factory,
    check_bad_share,
    configure_backends,
    make_optimizer,
    place_model,
    resolve_device,
    results_record,
    run_outputs,
)
from actionbench.engine.checkpoint import load_scaler_state, restore_rng, rng_state
from actionbench.engine.distributed import (
    DistInfo,
    GlobalBatchSampler,
    cleanup_distributed,
    gather_objects,
    init_distributed,
    job_value,
)
from actionbench.engine.evaluation import (
    EvaluationStopped,
    evaluate_run,
    make_loader,
    shard_loader,
    to_model_input,
    validation_top1,
)
from actionbench.engine.logging import LossTracker, MetricsLogger, make_progress
from actionbench.engine.schedules import learning_rate
from actionbench.engine.stopping import StopSignals
from actionbench.errors import Interrupted
from actionbench.models.weights import load_checkpoint, save_checkpoint
from actionbench.runtime import retain_freed_memory

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Where training stands: what a checkpoint holds besides the weights, optimizer and scaler states."""

    epoch: int = 0  # epochs finished
    batch: int = 0  # iterations of epoch `epoch` finished
    step: int = 0  # iterations in all
    best_top1: float = -1.0
    train_seconds: float = 0.0  # across resumes
    clips_seen: int = 0
    pending_validation: bool = False  # stopped between an epoch's end and its validation
    started: float = field(default_factory=time.time, compare=False)  # this process's start

    def seconds(self) -> float:
        return self.train_seconds + time.time() - self.started

    def checkpoint(self, model: nn.Module, optimizer, scaler, rng: list, cfg: Config, classes: list[str]) -> dict:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "epoch": self.epoch, "batch": self.batch, "step": self.step, "best_top1": self.best_top1,
                "rng": rng, "config": to_dict(cfg), "classes": classes, "train_seconds": self.seconds(),
                "clips_seen": self.clips_seen, "pending_validation": self.pending_validation}

    @classmethod
    def restore(cls, path: Path, model: nn.Module, optimizer, scaler, info: DistInfo) -> TrainState:
        """The state saved in `path`, its weights, optimizer, scaler and this rank's generators restored."""
        saved = load_checkpoint(path)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        load_scaler_state(scaler, saved.get("scaler"))
        restore_rng(saved["rng"], info.rank, info.world_size)
        return cls(saved["epoch"], saved["batch"], saved["step"], saved["best_top1"],
                   saved.get("train_seconds", 0.0), saved.get("clips_seen", 0), saved.get("pending_validation", False))


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
        cfg = thaw(cfg)
        cfg.output_dir = cfg.output_dir or job_value("run_dir") or ""
    try:
        run = assemble_run(cfg, device, info, resume, overwrite)
        return Trainer(run, device, info).fit()
    finally:
        cleanup_distributed()


class Trainer:
    """One run's loop: `train_one_epoch`, `validate`, `checkpoint`, and `fit` over the epochs and the final test."""

    def __init__(self, run: AssembledRun, device: torch.device, info: DistInfo) -> None:
        cfg = self.cfg = run.cfg
        self.run, self.device, self.info = run, device, info
        self.last_path, self.best_path = run.run_dir / "last.pt", run.run_dir / "best.pt"
        configure_backends(cfg, device, run.model, info)
        self.model, self.core = place_model(cfg, run.model, device, info)
        self.volumetric = any(p.dim() == 5 for p in self.core.parameters())
        self.optimizer = make_optimizer(cfg, self.core)
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.amp == "fp16" and device.type == "cuda")
        self.autocast = autocast_factory(cfg, device)
        self.state = TrainState()
        if run.resuming:
            self.state = TrainState.restore(self.last_path, self.core, self.optimizer, self.scaler, info)
            if info.is_main:
                print(f"resuming {self.last_path}: epoch {self.state.epoch + 1}, batch {self.state.batch}, "
                      f"step {self.state.step}")
        self.logger = MetricsLogger(run.run_dir, info.is_main, cfg.train.tensorboard,
                                    resume_step=self.state.step if run.resuming else None)
        self.losses = LossTracker(device, info)
        self.global_batch = cfg.data.batch_size
        self.progress = make_progress(info.is_main and cfg.train.progress)

    def checkpoint(self, path: Path | None = None) -> None:
        """Write the state (last.pt by default); a collective: every rank calls it."""
        self.losses.flush(f"step {self.state.step}", self.last_path)  # never a checkpoint of diverged weights
        rng = gather_objects(rng_state(), self.info)  # every rank's own generators
        if self.info.is_main:
            save_checkpoint(self.state.checkpoint(self.core, self.optimizer, self.scaler, rng, self.cfg,
                                                  self.run.classes), path or self.last_path)

    def validate(self, epoch: int, stop: StopSignals) -> None:
        """Clip-level validation after `epoch` epochs; best.pt when it is the best so far, then last.pt. A stop
        signal ends it at once (one process; last.pt already says the validation is pending)."""
        try:
            top1 = validation_top1(self.model, self.val_loader, self.info, self.device, self.autocast,
                                   should_stop=stop.received_any)
        except EvaluationStopped:
            raise Interrupted(f"stopped by {stop.name()} during the validation after epoch {epoch}; {self.last_path} "
                              f"holds epoch {epoch} (its validation runs first on resume). Resume with: actionbench "
                              f"train {self.run.run_dir} --resume", signal=stop.received) from None
        self.logger.log(self.state.step, **{"val/clip_top1": top1, "epoch": epoch})
        if self.info.is_main:
            self.progress.console.print(f"epoch {epoch}: val clip top-1 {top1:.2f}%")
        self.state.epoch, self.state.batch, self.state.pending_validation = epoch, 0, False
        if top1 > self.state.best_top1:
            self.state.best_top1 = top1
            self.checkpoint(self.best_path)
        self.checkpoint()  # last.pt again, its validation done

    def train_one_epoch(self, epoch: int, loader, sampler: GlobalBatchSampler, stop: StopSignals) -> None:
        cfg, state, info = self.cfg, self.state, self.info
        iters = self.run.iters_per_epoch
        first = state.batch if epoch == state.epoch else 0
        sampler.set_epoch(epoch, first)  # the indices carry the epoch to the (persistent) workers
        self.model.train()
        if cfg.train.freeze_bn:
            _freeze_bn(self.model)
        task = self.progress.add_task(f"epoch {epoch + 1}/{cfg.optim.epochs}", total=iters, completed=first, info="")
        tick = time.time()
        shown = ""
        accum = cfg.train.grad_accum
        for batch_index, (clips, labels, _, _) in enumerate(loader, start=first):
            lr = learning_rate(cfg.optim, state.step, iters)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            clips, labels = to_model_input(clips, self.model, self.device), labels.to(self.device, non_blocking=True)
            if cfg.train.channels_last and self.volumetric:  # 2D designs fold time into the batch first
                clips = clips.contiguous(memory_format=torch.channels_last_3d)
            stepping = (batch_index + 1) % accum == 0
            # accumulating: no gradient all-reduce until the last micro-batch (DDP's no_sync)
            with (self.model.no_sync() if info.enabled and not stepping else contextlib.nullcontext()):
                with self.autocast():
                    loss = nn.functional.cross_entropy(self.model(clips), labels)
                self.losses.add(loss)  # no host sync here: checked and logged every log_every iterations
                self.scaler.scale(loss / accum).backward()
            if stepping:
                if cfg.optim.clip_grad:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.core.parameters(), cfg.optim.clip_grad)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.clips_seen += self.global_batch
            state.epoch, state.batch = epoch, batch_index + 1
            now = time.time()
            rate = self.global_batch / max(now - tick, 1e-9)
            tick = now
            if state.step % cfg.train.log_every == 0 or batch_index + 1 == iters:
                mean_loss = self.losses.flush(f"epoch {epoch + 1}, by iteration {batch_index + 1} (lr {lr:.4g})",
                                              self.last_path)
                self.logger.log(state.step, **{"train/loss": mean_loss, "train/lr": lr, "train/clips_per_s": rate})
                shown = f"loss {mean_loss:.3f} lr {lr:.3g}"
            self.progress.update(task, advance=1, info=f"{shown} {rate:.1f} clips/s")
            every = cfg.train.checkpoint_every
            if every and state.step % every == 0 and stepping:
                self.checkpoint()
            if stepping and stop.agreed():
                self.checkpoint()
                raise Interrupted(
                    f"stopped by {stop.name()} at epoch {epoch + 1}, iteration {batch_index + 1}; {self.last_path} "
                    f"written. Resume with: actionbench train {self.run.run_dir} --resume", signal=stop.received)

    def fit(self) -> dict:
        """Train the remaining epochs, test the final weights, write results.json (main rank); its content."""
        cfg, info, run = self.cfg, self.info, self.run
        self.val_loader = shard_loader(run.val_set, batch_size=max(1, cfg.data.batch_size // info.world_size),
                                       workers=cfg.data.workers, device=self.device, info=info,
                                       worker_start=cfg.data.worker_start)
        with self.progress, StopSignals(info) as stop:
            if self.state.pending_validation:  # stopped between an epoch's end and its validation
                self.validate(self.state.epoch, stop)
            sampler = GlobalBatchSampler(len(run.train_set), self.global_batch, seed=cfg.seed, rank=info.rank,
                                         world_size=info.world_size)
            loader = make_loader(run.train_set, batch_size=self.global_batch // info.world_size,
                                 workers=cfg.data.workers, device=self.device, sampler=sampler,
                                 worker_start=cfg.data.worker_start, seed=cfg.seed)
            for epoch in range(self.state.epoch, cfg.optim.epochs):
                self.train_one_epoch(epoch, loader, sampler, stop)
                summary = run.train_set.bad_video_summary()
                if summary and info.is_main:
                    self.progress.console.print(f"[yellow]{len(summary)} bad video(s) replaced so far; see "
                                                f"{run.bad_video_log}")
                check_bad_share(cfg, len(summary), len(run.train_set.records), cfg.data.train_list,
                                run.bad_video_log)
                validating = (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.optim.epochs
                self.state.epoch, self.state.batch, self.state.pending_validation = epoch + 1, 0, validating
                self.checkpoint()  # the epoch is safe before validation starts
                if validating:
                    self.validate(epoch + 1, stop)
            train_seconds = self.state.seconds()
            loader = self.val_loader = None  # the training's worker processes end before the final test starts its own
            try:
                results = evaluate_run(cfg, self.core, run.classes, info, self.device, run.bad_video_log,
                                       outputs=run_outputs(run.run_dir, "final"), should_stop=stop.received_any)
            except EvaluationStopped:
                raise Interrupted(f"stopped by {stop.name()} during the final test; training is complete "
                                  f"({self.last_path}). Resume with: actionbench train {run.run_dir} --resume "
                                  "(it runs the test)", signal=stop.received) from None
        self.logger.close()
        results = results_record(cfg, run.classes, results, train_seconds, self.state.clips_seen,
                                 run.train_set.bad_video_summary())
        if info.is_main:
            (run.run_dir / "results.json").write_text(json.dumps(results, indent=2))
        return results


def _freeze_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
