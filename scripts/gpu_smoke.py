#!/usr/bin/env python3
"""A few minutes' check of the CUDA paths for the first GPU anyone has (or their CPU subset, as CI runs it).

    python scripts/gpu_smoke.py [--device cuda|cpu] [--models NAME ...] [--steps 3] [--size 112] [--batch 2]

1. Every zoo model x {fp32, bf16, fp16} x {contiguous, channels_last}: a few SGD steps under autocast (fp16 with the
   GradScaler, as training does), checked NaN-free (loss, gradients, weights); clips/s and peak memory per row.
   On CPU fp16 is skipped (loss scaling is a CUDA path; the trainer warns) and the models are reduced-width.
2. SyncBN: every model converted (torch's `SyncBatchNorm.convert_sync_batchnorm`), checked against plain BN in one
   process; with two or more GPUs a 2-process `torchrun` training and test with train.sync_bn=true on a synthetic
   dataset.
3. The profiler's throughput and max batch under the AMP setting training uses (bf16).
It prints one table and exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn

from actionbench import build_model, list_models
from actionbench.profiling import profile_model
from actionbench.runtime import retain_freed_memory

AMP = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def small_options(name: str, device: str) -> dict:
    return {"base_channels": 8} if device == "cpu" and "resnet" in name and not name.startswith("slowfast") else {}


def frames_for(name: str, frames: int) -> int:
    return max(frames, 32) if name.startswith("slowfast") else frames


def train_row(name: str, amp: str, layout: str, args) -> dict:
    device = torch.device(args.device)
    frames = frames_for(name, args.frames)
    size = max(args.size, 64) if "inception" in name else args.size
    torch.manual_seed(0)
    model = build_model(name, 10, frames, **small_options(name, args.device)).to(device)
    volumetric = any(p.dim() == 5 for p in model.parameters())
    if layout == "channels_last":
        model = model.to(memory_format=torch.channels_last_3d if volumetric else torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    clips = torch.randn(args.batch, 3, frames, size, size, device=device)
    if layout == "channels_last" and volumetric:
        clips = clips.contiguous(memory_format=torch.channels_last_3d)
    labels = torch.randint(0, 10, (args.batch,), device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model.train()
    start = None
    for step in range(args.steps + 1):  # the first step warms up
        if step == 1:
            _sync(device)
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=AMP[amp], enabled=AMP[amp] is not None):
            loss = nn.functional.cross_entropy(model(clips), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss {loss.item()} at step {step}")
    _sync(device)
    seconds = time.perf_counter() - start
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise FloatingPointError(f"non-finite weights: {', '.join(bad[:3])}")
    peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MB" if device.type == "cuda" else "-"
    return {"clips_per_s": f"{args.batch * args.steps / seconds:.1f}", "peak": peak}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def sync_bn_row(name: str, args) -> dict:
    """The converted model computes plain BN's function in one process (SyncBN then normalises locally)."""
    frames = frames_for(name, args.frames)
    size = max(args.size, 64) if "inception" in name else args.size
    torch.manual_seed(0)
    plain = build_model(name, 10, frames, **small_options(name, args.device)).to(args.device).train()
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(build_model(name, 10, frames, **small_options(name, args.device)))
    synced.load_state_dict(plain.state_dict())
    synced.to(args.device).train()
    left = [type(m).__name__ for m in synced.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm)]
    if left:
        raise AssertionError(f"not converted: {left[:3]}")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return {"clips_per_s": "-", "peak": "structure only"}
    x = torch.randn(2, 3, frames, size, size, device=args.device)
    for dropout in (m for model in (plain, synced) for m in model.modules() if isinstance(m, nn.Dropout)):
        dropout.p = 0.0  # train mode (batch statistics), nothing random
    with torch.no_grad():
        difference = (plain(x) - synced(x)).abs().max().item()
    if difference > 1e-4:
        raise AssertionError(f"SyncBN model differs from BN by {difference:.2e}")
    return {"clips_per_s": "-", "peak": f"max |diff| {difference:.1e}"}


def torchrun_row(args) -> dict:
    """Two processes on two GPUs: train (SyncBN, bf16) and test a tiny model on synthetic videos."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "actionbench", "synth", f"{tmp}/data", "--kind", "temporal",
                        "--classes", "4", "--videos-per-class", "8"], check=True, capture_output=True)
        common = [f"data.train_list={tmp}/data/train.txt", f"data.val_list={tmp}/data/val.txt",
                  "model.name=tsm_resnet18", "model.base_channels=16", "data.size=64", "data.scale_size=64",
                  "data.batch_size=8", "data.workers=1", "optim.epochs=1", "train.sync_bn=true", "train.amp=bf16",
                  "test.num_clips=1", "test.num_crops=1", f"output_dir={tmp}/run", "device=cuda"]
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
        for command in (["-m", "actionbench", "train", *common], ["-m", "actionbench", "test", f"{tmp}/run"]):
            done = subprocess.run(launcher + command, capture_output=True, text=True, timeout=900)
            if done.returncode:
                raise RuntimeError(f"{' '.join(command[2:4])} failed: {done.stderr.strip().splitlines()[-1:]}")
    return {"clips_per_s": "-", "peak": "train + test ok"}


def profiler_row(args) -> dict:
    name = "tsm_resnet50" if args.device == "cuda" else "tsm_resnet18"
    result = profile_model(name, args.frames, args.size, throughput=True, max_batch=args.device == "cuda",
                           device=args.device, batch_size=args.batch, amp="bf16",
                           **small_options(name, args.device))
    return {"clips_per_s": f"{result['throughput_train']:.1f}",
            "peak": f"max batch {result.get('max_batch', '- (CPU)')}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=None, help="default: the whole zoo")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--size", type=int, default=None, help="default: 112 on CUDA, 32 on CPU")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_smoke: --device cuda but this machine has no CUDA device", file=sys.stderr)
        return 2
    args.size = args.size or (112 if args.device == "cuda" else 32)
    retain_freed_memory()
    models = args.models or list_models()
    amps = ("fp32", "bf16", "fp16") if args.device == "cuda" else ("fp32", "bf16")
    rows, failures = [], 0

    def record(check: str, fn) -> None:
        nonlocal failures
        try:
            result, status = fn(), "ok"
        except Exception as exc:  # every failure is a row, the run goes on
            result, status = {"clips_per_s": "-", "peak": "-"}, f"FAIL: {type(exc).__name__}: {exc}"[:160]
            failures += 1
        rows.append((check, result["clips_per_s"], result["peak"], status))
        print(f"| {check} | {result['clips_per_s']} | {result['peak']} | {status} |", flush=True)

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU (reduced-width models)"
    print(f"gpu_smoke on {device_name}, torch {torch.__version__}, batch {args.batch}, {args.size}x{args.size}, "
          f"{args.frames} frames (SlowFast 32), {args.steps} steps after 1 warm-up\n")
    print("| check | clips/s | peak memory / note | status |\n|---|---|---|---|")
    for name in models:
        for amp in amps:
            for layout in ("contiguous", "channels_last"):
                record(f"{name} {amp} {layout}", lambda n=name, a=amp, lay=layout: train_row(n, a, lay, args))
        record(f"{name} SyncBN conversion", lambda n=name: sync_bn_row(n, args))
    if args.device == "cuda" and torch.cuda.device_count() >= 2:
        record("torchrun 2 GPUs, SyncBN + bf16, train + test", lambda: torchrun_row(args))
    else:
        print("| torchrun 2 processes with SyncBN | - | - | skipped: needs 2 GPUs |")
    record("profiler throughput + max batch (bf16)", lambda: profiler_row(args))
    print(f"\n{len(rows)} checks, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
