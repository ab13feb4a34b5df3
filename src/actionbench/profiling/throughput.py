"""Throughput in clips per second: warm-up iterations, then timed ones; inference or a full training step."""

from __future__ import annotations

import time

import torch
from torch import nn

from actionbench.runtime import retain_freed_memory


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def run_step(model: nn.Module, clips: torch.Tensor, mode: str, optimizer: torch.optim.Optimizer | None,
             amp: str = "none") -> None:
    """One inference forward (no grad) or one SGD training step on random labels, under autocast when `amp`
    names a dtype (as `train.amp` does in training)."""
    dtype = AMP_DTYPES[amp]
    autocast = torch.autocast(clips.device.type, dtype=dtype, enabled=dtype is not None)
    if mode == "inference":
        with torch.no_grad(), autocast:
            model(clips)
        return
    labels = torch.randint(0, model.num_classes, (clips.shape[0],), device=clips.device)
    with autocast:
        loss = nn.functional.cross_entropy(model(clips), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def measure_throughput(
    model: nn.Module,
    batch_size: int,
    frames: int,
    size: int,
    device: str | torch.device = "cpu",
    mode: str = "inference",
    warmup: int = 2,
    iters: int = 5,
    amp: str = "none",
) -> float:
    """Clips per second of `model` on random `(batch_size, 3, frames, size, size)` input."""
    if mode not in ("inference", "train"):
        raise ValueError(f"mode must be 'inference' or 'train', got {mode!r}")
    retain_freed_memory()  # as training does: the clips/s a run sees
    device = torch.device(device)
    model = model.to(device).train(mode == "train")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4) if mode == "train" else None
    clips = torch.randn(batch_size, 3, frames, size, size, device=device)
    for _ in range(warmup):
        run_step(model, clips, mode, optimizer, amp)
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        run_step(model, clips, mode, optimizer, amp)
    _sync(device)
    return batch_size * iters / (time.perf_counter() - start)
