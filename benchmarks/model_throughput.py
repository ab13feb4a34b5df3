"""Throughput of temporal designs side by side at the batch sizes people train with: TSN vs TSM vs TAM.

Run by hand (not a test):
    python benchmarks/model_throughput.py [--batches 1 4 8] [--rounds 3] [--channels-last] [--device cpu|cuda]
        [--models tsn_resnet50 tsm_resnet50 tam_resnet50] [--allocator retain|default] [--profile]
        [--compile [--compile-backend inductor|aot_eager]]

Every round measures every model, inference then a training step (forward, backward, SGD step), at every batch
size, interleaved, so that a machine whose speed drifts (ours flips by up to 1.5x within seconds) hits all alike;
each model's ratio to the first model is taken within a round, and the table gives the median ratio over the rounds
(with the range). `--allocator default` keeps glibc's default of returning freed large blocks to the kernel, which
actionbench's commands change (actionbench/runtime.py); compare the two in separate runs. On CUDA the same script
runs unchanged (`--device cuda`; timings synchronise the device).
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch

from actionbench import build_model
from actionbench.profiling.throughput import measure_throughput
from actionbench.runtime import retain_freed_memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tsn_resnet50", "tsm_resnet50", "tam_resnet50"])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=2, help="timed iterations per measurement (after 1 warm-up)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--allocator", choices=("retain", "default"), default="retain")
    parser.add_argument("--compile", action="store_true",
                        help="time torch.compile(model) (fullgraph); each batch size and mode compiles once, in the "
                             "warm-up step, which is not timed")
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--profile", action="store_true",
                        help="instead of timing: torch.profiler of one training step per model and batch, the ops "
                             "with the most self CPU time and the memory they allocate")
    args = parser.parse_args()
    if args.allocator == "default":  # what actionbench's commands (and measure_throughput) otherwise change
        os.environ["ACTIONBENCH_MALLOC"] = "default"
    retained = retain_freed_memory()
    torch.manual_seed(0)
    models = {name: build_model(name, 87, args.frames).to(args.device) for name in args.models}
    if args.channels_last:
        models = {name: m.to(memory_format=torch.channels_last) for name, m in models.items()}
    if args.compile:  # one graph per batch size and mode: more than dynamo's default recompile limit of 8 in all
        torch._dynamo.config.recompile_limit = 64
        models = {name: torch.compile(m, fullgraph=True, dynamic=False, backend=args.compile_backend)
                  for name, m in models.items()}
    if args.profile:
        profile_steps(models, args)
        return
    speeds: dict[tuple, list[float]] = {}
    for r in range(args.rounds):
        for batch in args.batches:
            for mode in ("inference", "train"):
                for name, model in models.items():
                    speeds.setdefault((batch, mode, name), []).append(
                        measure_throughput(model, batch, args.frames, args.size, args.device, mode, warmup=1,
                                           iters=args.iters))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    base = args.models[0]
    threads = torch.get_num_threads() if args.device == "cpu" else "-"
    print(f"\n{args.device}, {threads} threads, f={args.frames}, {args.size}x{args.size}, "
          f"{'channels_last' if args.channels_last else 'contiguous'}, "
          f"{'torch.compile ' + args.compile_backend if args.compile else 'eager'}, "
          f"allocator {'retain' if retained else 'default'}"
          f", {args.rounds} interleaved rounds; ratio = median over rounds of clips/s / {base}'s in the same round\n")
    print(f"| batch | model | inference clips/s | vs {base} | train-step clips/s | vs {base} |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for batch in args.batches:
        for name in models:
            cells = []
            for mode in ("inference", "train"):
                own, ref = speeds[(batch, mode, name)], speeds[(batch, mode, base)]
                ratios = [a / b for a, b in zip(own, ref, strict=True)]
                summary[(batch, mode, name)] = statistics.median(ratios)
                cells += [f"{statistics.median(own):.2f}",
                          f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"]
            print(f"| {batch} | {name} | " + " | ".join(cells) + " |")
    others = args.models[1:]
    print("\n| batch | " + " | ".join(f"{n.split('_')[0].upper()} {m}" for n in others
                                       for m in ("infer", "train step")) + " |")
    print("|---|" + "---|" * 2 * len(others))
    for batch in args.batches:
        print(f"| {batch} | " + " | ".join(f"{summary[(batch, mode, n)]:.2f}" for n in others
                                           for mode in ("inference", "train")) + " |")


def profile_steps(models: dict, args: argparse.Namespace, rows: int = 8) -> None:
    """Where a training step's time goes: per op, self CPU time per step and the bytes it allocates (two profiled
    steps after two warm-up steps; the profiler's own cost per op call inflates designs with many small ops)."""
    from torch.profiler import ProfilerActivity, profile

    for batch in args.batches:
        for name, model in models.items():
            steps = 2
            measure_throughput(model, batch, args.frames, args.size, args.device, "train", warmup=2, iters=0)
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                measure_throughput(model, batch, args.frames, args.size, args.device, "train", warmup=0,
                                   iters=steps)
            ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
            total = sum(e.self_cpu_time_total for e in ops) / 1e3 / steps
            print(f"\n{name}, batch {batch}: training step {total:.0f} ms of self CPU time")
            print("| op | self CPU ms per step | calls per step | net allocated MB per step |")
            print("|---|---:|---:|---:|")
            for e in ops[:rows]:
                print(f"| {e.key} | {e.self_cpu_time_total / 1e3 / steps:.1f} | {e.count // steps} | "
                      f"{max(e.self_cpu_memory_usage, 0) / 2**20 / steps:.0f} |")


if __name__ == "__main__":
    main()
