"""`actionbench data check`: open every video of a dataset in parallel and report each bad entry."""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from actionbench.data.decoding import open_video, resolve_index_cache
from actionbench.data.formats import FORMATS, load_annotations
from actionbench.data.shards import merge_report, parse_shard, shard_items
from actionbench.data.splits import data_root
from actionbench.errors import DataError


def check_video(path: str, min_frames: int, index_cache: Path | None = None) -> tuple[str, int | None, str]:
    """(path, frames, problem): problem is empty for a good video. Decodes the first and last frames; with an
    `index_cache`, the frame index it builds is kept for training."""
    p = Path(path)
    if not p.exists():
        return path, None, "missing"
    if p.is_file() and p.stat().st_size == 0:
        return path, None, "zero-byte file"
    try:
        with open_video(p, index_cache=index_cache) as reader:
            frames = len(reader)
            reader.get_frames([0, frames - 1])
    except Exception as exc:  # every failure is a finding to report, not a crash
        return path, None, f"unreadable: {exc}"
    if frames < min_frames:
        return path, frames, f"too short: {frames} frames < {min_frames}"
    return path, frames, ""


def check_dataset(annotations: str | Path, root: str | Path | None = None, format: str | None = None,
                  workers: int = 2, min_frames: int = 1, progress: bool = True,
                  index_cache: str | Path | None = None, shard: tuple[int, int] | None = None) -> list[dict]:
    """Every record of the annotation file (of `shard`, data/shards.py) with its problem ("" when fine)."""
    base = data_root(root, annotations)  # as training resolves the paths
    ann = load_annotations(annotations, format, root=base)
    if not len(ann):
        raise DataError(f"{annotations} lists no video: nothing to check")
    records = shard_items(ann.records, shard)
    paths = [str(Path(r.path) if Path(r.path).is_absolute() else base / r.path) for r in records]
    rows = []
    with ProcessPoolExecutor(max(1, workers)) as pool:
        cache = resolve_index_cache(index_cache)
        results = pool.map(check_video, paths, [min_frames] * len(paths), [cache] * len(paths), chunksize=4)
        if progress:
            from rich.progress import track

            results = track(results, total=len(paths), description="checking videos")
        for record, (path, frames, problem) in zip(records, results, strict=True):
            if not 0 <= record.label < ann.num_classes:
                problem = problem or f"label {record.label} outside the {ann.num_classes} classes"
            rows.append({"path": path, "label": record.label, "frames": frames, "problem": problem})
    return rows


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="TOOL", required=True)
    check = sub.add_parser("check", help="scan every video of a dataset and report bad entries",
                           description="Decode every video's frame index (and its first and last frames) in "
                                       "parallel, report missing, empty, damaged or too short videos and labels "
                                       "outside the classes; exit 1 if any is bad. The indexes are kept for training.")
    check.add_argument("annotations", help="annotation file, any supported format, or a folder of classes")
    check.add_argument("--root", help="folder the annotation paths are relative to")
    check.add_argument("--format", choices=FORMATS)
    check.add_argument("--workers", type=int, default=2)
    check.add_argument("--min-frames", type=int, default=1, help="videos with fewer frames are reported")
    check.add_argument("--report", help="also write the bad entries to this CSV file (shards merge into one)")
    check.add_argument("--shard", metavar="I/N", help="only part I of N of the list (I from 0; a SLURM array: "
                                                     "--shard $SLURM_ARRAY_TASK_ID/N)")
    check.add_argument("--index-cache", default="auto",
                       help="keep the frame indexes built here for training (as data.index_cache): auto, none, or a "
                            "folder")


def run(args: argparse.Namespace) -> int:
    shard = parse_shard(args.shard)
    rows = check_dataset(args.annotations, args.root, args.format, args.workers, args.min_frames,
                         index_cache=args.index_cache, shard=shard)
    bad = [r for r in rows if r["problem"]]
    if args.report:
        merge_report(args.report, ["path", "label", "frames", "problem"], bad, shard)
    part = f"shard {args.shard}: " if shard else ""
    print(f"{part}{len(rows)} videos checked, {len(bad)} bad" + (f"; report: {args.report}" if args.report else ""))
    for row in bad[:20]:
        print(f"  {row['path']}: {row['problem']}")
    if len(bad) > 20:
        print(f"  ... {len(bad) - 20} more (--report FILE lists them all)")
    return 1 if bad else 0
