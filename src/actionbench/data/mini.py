"""`actionbench mini`: the paper's Mini-datasets, written as lists with absolute paths."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from actionbench.config import ConfigError
from actionbench.data.formats import FORMATS, load_annotations
from actionbench.data.records import AnnotationError, absolute_records, write_list
from actionbench.data.splits import MINI_PRESETS, data_root, make_mini


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("annotations", help="training annotations, any supported format, or a folder of classes")
    parser.add_argument("--root", help="folder the annotation paths are relative to (default: the file's folder)")
    parser.add_argument("--val", help="validation annotations, subset with the same classes")
    parser.add_argument("--format", choices=FORMATS, help="annotation format (detected when omitted)")
    parser.add_argument("--preset", choices=sorted(MINI_PRESETS),
                        help="the paper's Table 4: mini-ssv2 (87 classes, 81k/12k videos), mini-kinetics (200, "
                             "121k/10k), mini-mit (200, 100k/10k); explicit options override it")
    parser.add_argument("--fraction", type=float, default=None, help="fraction of the classes kept (default 0.5)")
    parser.add_argument("--classes", type=int, default=None, help="number of classes kept (instead of --fraction)")
    parser.add_argument("--train-videos", type=int, default=None,
                        help="at most this many training videos, drawn per class in proportion (stratified)")
    parser.add_argument("--val-videos", type=int, default=None, help="at most this many validation videos, likewise")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the class and video choice (default 0)")
    parser.add_argument("--out", required=True, help="output folder: train.txt, val.txt, classes.txt")


def run(args: argparse.Namespace) -> int:
    if args.fraction is not None and args.classes is not None:
        raise ConfigError("give --fraction or --classes, not both")
    classes, train_videos, val_videos = MINI_PRESETS.get(args.preset, (None, None, None))
    classes = None if args.fraction is not None else (args.classes or classes)  # a class count wins over a fraction
    fraction = 0.5 if args.fraction is None else args.fraction
    train_videos, val_videos = args.train_videos or train_videos, args.val_videos or val_videos
    # paths resolved exactly as training resolves them (Kinetics ids are looked up under the same root)
    train = load_annotations(args.annotations, args.format, root=data_root(args.root, args.annotations))
    try:
        mini, chosen = make_mini(train, fraction, args.seed, classes=classes, videos=train_videos)
    except ValueError as exc:
        raise ConfigError(f"{args.annotations}: {exc}") from None
    out = Path(args.out)
    # absolute paths: the lists work from their new folder without a data.root
    write_list(absolute_records(mini, data_root(args.root, args.annotations)), out / "train.txt")
    report = {"classes": len(chosen), "of_classes": train.num_classes, "train_videos": len(mini),
              "of_train_videos": len(train), "seed": args.seed, "preset": args.preset}
    if args.val:
        val = load_annotations(args.val, args.format, root=data_root(args.root, args.val))
        if val.classes != train.classes:
            raise AnnotationError(f"{args.val} has another class list than {args.annotations}")
        val_mini = make_mini(val, chosen=chosen, seed=args.seed, videos=val_videos)[0]
        write_list(absolute_records(val_mini, data_root(args.root, args.val)), out / "val.txt")
        report.update(val_videos=len(val_mini), of_val_videos=len(val))
    (out / "mini.json").write_text(json.dumps(report, indent=2) + "\n")  # what produced these lists
    val_text = f", {report['val_videos']} of {report['of_val_videos']} validation videos" if args.val else ""
    print(f"kept {len(chosen)} of {train.num_classes} classes (seed {args.seed}), {len(mini)} of {len(train)} "
          f"training videos{val_text} -> {out} (absolute video paths; mini.json)")
    return 0
