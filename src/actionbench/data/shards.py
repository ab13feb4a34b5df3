"""`--shard i/n` for the data tools: a deterministic part of the input list, so that a SLURM array job
(`--shard $SLURM_ARRAY_TASK_ID/N`) prepares a million videos, and one report that every shard merges into.

Shard i of n (0 <= i < n) holds the items at positions i, i + n, i + 2n, ... of the input in its listed order (a
folder's videos sorted): every item is in exactly one shard, shards are balanced in size and in the kind of video
(a list sorted by class gives each shard every class). A shard's report rows replace that shard's earlier rows in
the shared report file, under an exclusive lock, so array tasks that finish in any order, or run again, leave one
report with each video once.
"""

from __future__ import annotations

import csv
import fcntl
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from actionbench.config import ConfigError

T = TypeVar("T")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`"3/10"` -> (3, 10); None stays None. The index counts from 0, as SLURM's array task ids do."""
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: give INDEX/COUNT, e.g. --shard 0/10 "
                          "(--shard $SLURM_ARRAY_TASK_ID/10 in an array job of --array=0-9)") from None
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"--shard {text}: the index counts from 0 to COUNT-1 (0/{max(count, 1)} .. "
                          f"{max(count, 1) - 1}/{max(count, 1)})")
    return index, count


def shard_items(items: Sequence[T], shard: tuple[int, int] | None) -> list[T]:
    """The items of `shard` (all of them for None)."""
    if shard is None:
        return list(items)
    index, count = shard
    return list(items[index::count])


def merge_report(path: str | Path, fields: list[str], rows: list[dict], shard: tuple[int, int] | None) -> None:
    """Write `rows` to the CSV report `path`: without a shard, the whole report; with one, that shard's rows
    replace its earlier ones among the other shards' (column `shard`), atomically and under an exclusive lock."""
    path = Path(path)
    tag = f"{shard[0]}/{shard[1]}" if shard else ""
    columns = [*fields, "shard"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        kept = []
        if shard is not None and path.is_file():
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames and "shard" not in reader.fieldnames:
                    raise ConfigError(f"--report {path} is a report without shards: give a new --report file")
                kept = [row for row in reader if row.get("shard") != tag]
                other = {row["shard"].split("/")[1] for row in kept if "/" in row.get("shard", "")}
                if other and other != {str(shard[1])}:
                    raise ConfigError(f"--report {path} holds shards of {'/'.join(sorted(other))}, not of "
                                      f"{shard[1]}: give a new --report file for another split")
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        with partial.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
            writer.writerows({**row, "shard": tag} for row in rows)
        os.replace(partial, path)
