"""Cost profiling: parameters, FLOPs (two conventions), throughput and the largest batch that fits."""

from __future__ import annotations

from actionbench.profiling.flops import FlopCounts, count_flops
from actionbench.profiling.params import count_params

__all__ = ["FlopCounts", "count_flops", "count_params", "default_frames", "default_num_classes", "profile_model"]


def default_frames(name: str) -> int:
    """The frame count a model is usually run at: 32 for SlowFast 8x8, 8 otherwise (the paper's f=8)."""
    return 32 if name.startswith("slowfast") else 8


def default_num_classes(name: str) -> int:
    """The classifier the paper's tables count: Kinetics-400 for SlowFast (Table 1), Mini-SSV2's 87 otherwise."""
    return 400 if name.startswith("slowfast") else 87


def profile_model(
    name: str,
    frames: int | None = None,
    size: int = 224,
    num_classes: int | None = None,
    temporal_pooling: bool = False,
    *,
    throughput: bool = False,
    max_batch: bool = False,
    device: str = "cpu",
    batch_size: int = 8,
    cpu_memory_gb: float | None = None,
    amp: str = "none",
    **options,
) -> dict:
    """Cost figures of a zoo model: params, paper GFLOPs (conv MACs), GMACs (all), optionally speed and memory."""
    import torch

    from actionbench.models.registry import build_model

    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but this machine has no CUDA device; use --device cpu")
    frames = frames or default_frames(name)
    num_classes = num_classes or default_num_classes(name)
    model = build_model(name, num_classes, frames, temporal_pooling=temporal_pooling, **options)
    counts = count_flops(model, (1, 3, frames, size, size))
    result = {
        "model": name,
        "frames": frames,
        "size": size,
        "num_classes": num_classes,
        "temporal_pooling": temporal_pooling,
        "params": count_params(model),
        "paper_gflops": round(counts.paper_gflops, 3),
        "gmacs": round(counts.gmacs, 3),
    }
    if throughput:
        from actionbench.profiling.throughput import measure_throughput

        for mode in ("inference", "train"):
            clips_per_s = measure_throughput(model, batch_size, frames, size, device, mode, amp=amp)
            result[f"throughput_{mode}"] = round(clips_per_s, 3)
        result["throughput_batch"] = batch_size
    if throughput or max_batch:
        result["amp"] = amp
    if max_batch:
        from actionbench.profiling.max_batch import find_max_batch

        result["max_batch"] = find_max_batch(model, frames, size, device, "train", cpu_memory_gb=cpu_memory_gb, amp=amp)
    return result
