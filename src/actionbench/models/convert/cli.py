"""`actionbench convert CHECKPOINT --out FILE`: a released checkpoint of another codebase as an actionbench one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from actionbench.models.convert import SOURCES, ConversionError, convert_checkpoint

_PROTOCOL_KEYS = ("model.mean", "model.std", "model.channel_order", "data.frames", "data.size", "data.scale_size",
                  "data.sampling", "data.stride", "test.num_clips", "test.num_crops", "test.size", "test.scale_size")


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("checkpoint", help="a checkpoint written by the paper's code, MMAction2, the TSM repo, "
                                           "PyTorchVideo or PySlowFast")
    parser.add_argument("--out", required=True, help="the actionbench checkpoint to write (refused if it exists)")
    parser.add_argument("--from", dest="source", choices=SOURCES, help="the codebase (detected when omitted)")
    parser.add_argument("--model", help="our model name (read from the file when it says; see docs/models.md)")
    parser.add_argument("--frames", type=int, help="frames per clip it was trained with (when the file does not say)")
    parser.add_argument("--temporal-pooling", action=argparse.BooleanOptionalAction, default=None,
                        help="whether it pools time (when the file does not say)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a model builder option, e.g. pool_style=tsm (repeatable)")
    parser.add_argument("--protocol", action="append", default=[], metavar="KEY=VALUE",
                        help=f"its authors' evaluation protocol, one of {', '.join(_PROTOCOL_KEYS)} (repeatable)")
    parser.add_argument("--classes", help="class names, one per line, in the classifier's order")
    parser.add_argument("--force", action="store_true",
                        help="overwrite --out, and let --model/--temporal-pooling/--option win over what the file "
                             "says (each override is printed)")


def _pairs(items: list[str], what: str, allowed: tuple[str, ...] | None = None) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConversionError(f"{what} {item!r} must look like KEY=VALUE")
        if allowed is not None and key not in allowed:
            raise ConversionError(f"{what} {key!r} is not one of {', '.join(allowed)}")
        out[key] = yaml.safe_load(value)
    return out


def run(args: argparse.Namespace) -> int:
    from actionbench.models.weights import save_checkpoint

    out = Path(args.out)
    try:
        if out.exists() and not args.force:
            raise ConversionError(f"{out} exists; choose another --out or add --force to replace it")
        classes = None
        if args.classes:
            classes = [line.strip() for line in Path(args.classes).read_text().splitlines() if line.strip()]
        checkpoint = convert_checkpoint(
            args.checkpoint, source=args.source, model=args.model, frames=args.frames,
            temporal_pooling=args.temporal_pooling, options=_pairs(args.option, "--option"),
            preprocessing=_pairs(args.protocol, "--protocol", _PROTOCOL_KEYS), classes=classes, force=args.force)
    except (ConversionError, OSError) as exc:
        print(f"actionbench convert: error: {exc}", file=sys.stderr)
        return 2
    save_checkpoint(checkpoint, out)
    model = checkpoint["config"]["model"]
    print(f"{args.checkpoint} ({checkpoint['source']['format']}) -> {out}")
    print(f"  model: {model['name']}, temporal pooling {'on' if model['temporal_pooling'] else 'off'}, "
          f"options {model['options'] or '{}'}, {len(checkpoint['classes'])} classes"
          f"{'' if checkpoint['classes_named'] else ' (unnamed: pass --classes to name them)'}")
    print("  its protocol (actionbench test uses it unless test.preprocessing=config): " +
          ", ".join(f"{k}={v}" for k, v in checkpoint["preprocessing"].items()))
    return 0
