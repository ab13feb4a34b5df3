"""Learning rate per iteration: optional linear warm-up, then cosine (half period), multistep drops or constant."""

from __future__ import annotations

import math

from actionbench.config import OptimConfig


def learning_rate(cfg: OptimConfig, iteration: int, iters_per_epoch: int) -> float:
    """The rate for 0-based `iteration` of a run of `cfg.epochs` epochs of `iters_per_epoch` iterations."""
    epoch = iteration / iters_per_epoch  # fractional: schedules move every iteration
    warmup = cfg.warmup_epochs
    if warmup > 0 and epoch < warmup:
        return cfg.warmup_start_lr + (cfg.lr - cfg.warmup_start_lr) * epoch / warmup
    if cfg.schedule == "cosine":
        progress = (epoch - warmup) / max(cfg.epochs - warmup, 1e-8)
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(progress, 1.0)))
    if cfg.schedule == "multistep":
        drops = sum(1 for m in cfg.milestones if epoch >= m)
        return cfg.lr * cfg.gamma**drops
    return cfg.lr
