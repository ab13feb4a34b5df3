"""Annotation memory at Kinetics-700 size: the load time of a 700k-line list, the main process's memory for the
records, and each data-loader worker's private memory (smaps_rollup: Private_Clean + Private_Dirty) when it
starts and after a full epoch's access pattern (every record read once, in random order, spread over the
workers), for records as a list of Python objects (how actionbench held them before) against records as
columns (RecordTable), with fork and with forkserver workers (actionbench's default, persistent). Also the
start-up time of the workers for each start method. Every variant runs in a fresh process, all in one run.
And what `actionbench mini` does after loading (121k of the records taken, made absolute, written as a list),
column by column against one record object at a time, as it did before.

Run by hand (not a test):  python benchmarks/annotation_memory.py [--records 700000] [--workers 4]
Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gc
import json
import multiprocessing
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from actionbench.data.formats import load_annotations
from actionbench.data.records import Annotations, VideoRecord, absolute_records
from actionbench.data.records import write_list as write_records
from actionbench.engine.evaluation import make_loader

VARIANTS = {  # name: (records as, worker start method)
    "objects+fork": ("objects", "fork"),
    "table+fork": ("table", "fork"),
    "table+forkserver": ("table", "forkserver"),
    "table+spawn": ("table", "spawn"),
}


class RecordReader(Dataset):
    """Reads one record per item, as VideoClipDataset does before decoding; nothing else."""

    def __init__(self, records) -> None:
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> int:
        record = self.records[index]
        return len(record.path) + record.label


def memory_kb(pid: int | str = "self") -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":")
        fields[name] = int(value.split()[0])
    return {"rss": fields["Rss"], "private": fields["Private_Clean"] + fields["Private_Dirty"]}


def write_list(path: Path, count: int, classes: int = 700) -> None:
    """Kinetics-style lines: split/class/youtubeid_start_end.mp4 label."""
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
    with path.open("w") as f:
        for i in range(count):
            start = rng.randrange(300)
            f.write(f"train/class_{i % classes:03d}/{''.join(rng.choices(letters, k=11))}_{start:06d}_"
                    f"{start + 10:06d}.mp4 {i % classes}\n")


def read_objects(path: Path) -> list[VideoRecord]:
    """The records as the reader held them before RecordTable: one frozen dataclass per line."""
    records = []
    for line in path.read_text().splitlines():
        video, label = line.split()
        records.append(VideoRecord(video, int(label), Path(video).stem))
    return records


def run_variant(list_path: Path, variant: str, workers: int, batch_size: int) -> dict:
    layout, start = VARIANTS[variant]
    gc.collect()
    before = memory_kb()
    records = read_objects(list_path) if layout == "objects" else load_annotations(list_path).records
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # give back what parsing freed: count what the records hold
    main_mb = (memory_kb()["private"] - before["private"]) / 1024
    dataset = RecordReader(records)
    sampler = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()
    if start == "fork":  # how the loaders were made before: a fork per loader, records copied on write
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                            multiprocessing_context=multiprocessing.get_context("fork"))
    else:
        loader = make_loader(dataset, batch_size=batch_size, workers=workers, device=torch.device("cpu"),
                             sampler=sampler, worker_start=start)
    began = time.perf_counter()
    batches = iter(loader)
    next(batches)
    startup_s = time.perf_counter() - began
    pids = [w.pid for w in batches._workers]  # private, but the only handle on the worker processes
    at_start = [memory_kb(pid)["private"] for pid in pids]
    for _ in range(len(loader) - 2):  # all but the last batch: every batch has been handed to a worker
        next(batches)
    after = [memory_kb(pid)["private"] for pid in pids]  # measured while fork workers are still alive
    next(batches)
    return {"variant": variant, "records": len(records), "main_mb": main_mb, "startup_s": startup_s,
            "worker_start_mb": statistics.mean(at_start) / 1024,
            "worker_growth_mb": max(a - b for a, b in zip(after, at_start, strict=True)) / 1024}


def load_seconds(list_path: Path, rounds: int) -> tuple[float, float]:
    """Median seconds to load the list as a RecordTable and as a list of objects, alternating."""
    table, objects = [], []
    for _ in range(rounds):
        began = time.perf_counter()
        load_annotations(list_path)
        table.append(time.perf_counter() - began)
        began = time.perf_counter()
        read_objects(list_path)
        objects.append(time.perf_counter() - began)
    return statistics.median(table), statistics.median(objects)


def mini_seconds(list_path: Path, out: Path, rounds: int, kept: int = 121_000) -> tuple[float, float]:
    """Median seconds to take `kept` records, make their paths absolute and write them, by columns and by
    records (one VideoRecord each, `Path.resolve` per path, as `actionbench mini` did before), alternating; both
    written by the same (current) writer."""
    annotations = load_annotations(list_path)
    keep = np.sort(np.random.default_rng(0).choice(len(annotations), kept, replace=False))
    root = list_path.parent
    columns, records = [], []
    for _ in range(rounds):
        began = time.perf_counter()
        subset = dataclasses.replace(annotations, records=annotations.records.take(keep))
        write_records(absolute_records(subset, root), out / "columns" / "train.txt")
        columns.append(time.perf_counter() - began)
        began = time.perf_counter()
        chosen = [annotations.records[int(i)] for i in keep]
        moved = [dataclasses.replace(r, path=str((root / r.path).resolve())) for r in chosen]
        write_records(Annotations(moved, annotations.classes), out / "records" / "train.txt")
        records.append(time.perf_counter() - began)
    assert (out / "columns" / "train.txt").read_bytes() == (out / "records" / "train.txt").read_bytes()
    return statistics.median(columns), statistics.median(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=700_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # one measurement, in a child
    parser.add_argument("--list", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.list, args.variant, args.workers, args.batch_size)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        list_path = Path(tmp) / "train.txt"
        write_list(list_path, args.records)
        table_s, objects_s = load_seconds(list_path, args.rounds)
        print(f"loading {args.records} lines: RecordTable {table_s:.2f} s, list of objects {objects_s:.2f} s "
              f"(median of {args.rounds})")
        columns_s, records_s = mini_seconds(list_path, Path(tmp), args.rounds)
        print(f"mini after loading (121000 records taken, made absolute, written): by columns {columns_s:.2f} s, "
              f"record by record {records_s:.2f} s ({records_s / columns_s:.1f}x; median of {args.rounds})")
        print(f"{args.workers} workers, batch {args.batch_size}, every record read once in random order\n")
        print("| records as, workers by | main process (MB) | worker at start (MB) | worker growth after "
              "the epoch (MB, largest) | first batch (s) |")
        print("|---|---:|---:|---:|---:|")
        for variant in VARIANTS:
            out = subprocess.run([sys.executable, __file__, "--variant", variant, "--list", str(list_path),
                                  "--workers", str(args.workers), "--batch-size", str(args.batch_size)],
                                 check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"| {variant} | {r['main_mb']:.0f} | {r['worker_start_mb']:.1f} | "
                  f"{r['worker_growth_mb']:.1f} | {r['startup_s']:.2f} |")


if __name__ == "__main__":
    main()
