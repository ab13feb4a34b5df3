"""Throughput of temporal designs on one machine, side by side: TSN vs TSM vs TAM (and I3D for context).

Run by hand (not a test):  python benchmarks/model_throughput.py [--frames 8] [--size 224] [--rounds 3]
Rounds interleave the models so that drifting machine load hits all of them alike; ratios use the median round.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from actionbench import build_model
from actionbench.profiling.throughput import measure_throughput


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tsn_resnet50", "tsm_resnet50", "tam_resnet50", "i3d_resnet50"])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    models = {name: build_model(name, 87, args.frames) for name in args.models}
    speeds = {(name, mode): [] for name in models for mode in ("inference", "train")}
    for r in range(args.rounds):
        for mode in ("inference", "train"):
            for name, model in models.items():
                clips_per_s = measure_throughput(model, args.batch_size, args.frames, args.size, "cpu", mode,
                                                 warmup=1, iters=args.iters)
                speeds[(name, mode)].append(clips_per_s)
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    base = args.models[0]
    print(f"\nCPU, {torch.get_num_threads()} threads, f={args.frames}, {args.size}x{args.size}, "
          f"batch {args.batch_size}, median of {args.rounds} interleaved rounds\n")
    print("| model | inference clips/s | vs " + base + " | train-step clips/s | vs " + base + " |")
    print("|---|---|---|---|---|")
    for name in models:
        inf = statistics.median(speeds[(name, "inference")])
        train = statistics.median(speeds[(name, "train")])
        inf_ratio = inf / statistics.median(speeds[(base, "inference")])
        train_ratio = train / statistics.median(speeds[(base, "train")])
        print(f"| {name} | {inf:.2f} | {inf_ratio:.3f} | {train:.2f} | {train_ratio:.3f} |")


if __name__ == "__main__":
    main()
