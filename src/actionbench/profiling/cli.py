"""`actionbench profile`: cost figures of one model or of the whole zoo."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.progress import track
from rich.table import Table

from actionbench.config import ConfigError
from actionbench.profiling import profile_model


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("model", nargs="?", help="model name (see --all for every name)")
    parser.add_argument("--all", action="store_true", help="profile every model of the zoo")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default 8; 32 for SlowFast)")
    parser.add_argument("--size", type=int, default=224, help="input height and width (default 224)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classifier size (default 87, Mini-SSV2; 400, Kinetics, for SlowFast as Table 1)")
    parser.add_argument("--temporal-pooling", action="store_true", help="with temporal pooling (default: without)")
    parser.add_argument("--throughput", action="store_true", help="measure inference and training clips/s")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size for --throughput (default 8)")
    parser.add_argument("--max-batch", action="store_true", help="search the largest training batch that fits")
    parser.add_argument("--cpu-memory-gb", type=float, default=None,
                        help="memory budget of --max-batch on CPU (default: half of the available memory)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where --throughput and --max-batch run (default cpu; FLOPs and params do not depend on "
                             "it)")
    parser.add_argument("--base-channels", type=int, default=None,
                        help="ResNet width of the first stage (default 64), e.g. a reduced-width trained model's")
    parser.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none",
                        help="autocast dtype for --throughput and --max-batch, as train.amp (default none)")
    parser.add_argument("--json", action="store_true", help="print JSON (one object; a list with --all)")


def _table(rows: list[dict]) -> Table:
    table = Table(title="actionbench model zoo: costs (batch 1)")
    columns = [("model", "model"), ("frames", "frames"), ("size", "size"), ("temporal_pooling", "temp. pool"),
               ("params", "params (M)"), ("paper_gflops", "GFLOPs (paper: conv MACs)"), ("gmacs", "GMACs (all)")]
    extra = [("throughput_inference", "infer clips/s"), ("throughput_train", "train clips/s"),
             ("max_batch", "max batch")]
    columns += [c for c in extra if c[0] in rows[0]]
    for key, title in columns:
        table.add_column(title, justify="left" if key == "model" else "right")
    for row in rows:
        cells = []
        for key, _ in columns:
            value = row[key]
            if key == "params":
                value = f"{value / 1e6:.2f}"
            elif key == "temporal_pooling":
                value = "yes" if value else "no"
            elif isinstance(value, float):
                value = f"{value:.1f}"
            cells.append(str(value))
        table.add_row(*cells)
    return table


def run(args: argparse.Namespace) -> int:
    from actionbench.models.registry import list_models

    if args.all == bool(args.model):
        raise SystemExit("actionbench profile: give a MODEL or --all (not both)")
    names = list_models() if args.all else [args.model]
    options = dict(size=args.size, num_classes=args.num_classes, throughput=args.throughput,
                   max_batch=args.max_batch, device=args.device, batch_size=args.batch_size,
                   cpu_memory_gb=args.cpu_memory_gb, amp=args.amp)
    if args.base_channels and not all("resnet" in n and not n.startswith("slowfast") for n in names):
        raise ConfigError("--base-channels applies to the ResNet family (not SlowFast, not InceptionV1)")
    console = Console(stderr=args.json)
    if not console.is_terminal:
        console.width = max(console.width, 130)  # a piped table keeps whole model names
    rows = []
    for name in track(names, description="profiling", console=console, disable=len(names) == 1):
        pooling = args.temporal_pooling and not name.startswith("slowfast")
        width = {"base_channels": args.base_channels} if args.base_channels else {}
        rows.append(profile_model(name, args.frames, temporal_pooling=pooling, **options, **width))
    if args.json:
        print(json.dumps(rows if args.all else rows[0], indent=None if args.all else 2))
    else:
        console.print(_table(rows))
        console.print("GFLOPs follow the paper: convolution multiply-adds only. GMACs count every multiply-add "
                      "(convolutions, linear layers, matrix products). See docs/models.md.")
        classes = sorted({(r["model"], r["num_classes"]) for r in rows}, key=lambda mc: mc[1])
        if len({c for _, c in classes}) > 1:
            console.print("Classes differ: " + "; ".join(f"{m} {c}" for m, c in classes if c != classes[0][1]) +
                          f", the others {classes[0][1]} (the paper's tables; --num-classes sets one for all).")
    return 0
