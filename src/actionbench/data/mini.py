"""`actionbench mini`: the paper's Mini-datasets, written as lists with absolute paths."""

from __future__ import annotations

import argparse
from pathlib import Path

from actionbench.data.formats import FORMATS, load_annotations
from actionbench.data.records import AnnotationError, absolute_records, write_list
from actionbench.data.splits import data_root, make_mini


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("annotations", help="training annotations, any supported format, or a folder of classes")
    parser.add_argument("--root", help="folder the annotation paths are relative to (default: the file's folder)")
    parser.add_argument("--val", help="validation annotations, subset with the same classes")
    parser.add_argument("--format", choices=FORMATS, help="annotation format (detected when omitted)")
    parser.add_argument("--fraction", type=float, default=0.5, help="fraction of the classes kept (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the class choice (default 0)")
    parser.add_argument("--out", required=True, help="output folder: train.txt, val.txt, classes.txt")


def run(args: argparse.Namespace) -> int:
    # paths resolved exactly as training resolves them (Kinetics ids are looked up under the same root)
    train = load_annotations(args.annotations, args.format, root=data_root(args.root, args.annotations))
    mini, chosen = make_mini(train, args.fraction, args.seed)
    out = Path(args.out)
    # absolute paths: the lists work from their new folder without a data.root
    write_list(absolute_records(mini, data_root(args.root, args.annotations)), out / "train.txt")
    if args.val:
        val = load_annotations(args.val, args.format, root=data_root(args.root, args.val))
        if val.classes != train.classes:
            raise AnnotationError(f"{args.val} has another class list than {args.annotations}")
        write_list(absolute_records(make_mini(val, chosen=chosen)[0], data_root(args.root, args.val)),
                   out / "val.txt")
    print(f"kept {len(chosen)} of {train.num_classes} classes (seed {args.seed}), {len(mini)} training videos -> "
          f"{out} (absolute video paths)")
    return 0
