"""`actionbench analyze RUN_DIR...`: how much a trained model relies on time (the paper's question).

Each run's test videos are evaluated as its own test does (its checkpoint, preprocessing, clips x crops, views
aggregated as configured) and, on the same decoded clips, with the frames reversed, shuffled (one fixed, seeded
permutation) and static (the middle frame repeated). A model that ignores time loses nothing under reversal or
shuffling; one that reads the order of events falls towards chance. Each probe's accuracy comes with its drop from
the normal accuracy and the paired 95 % bootstrap interval of that drop over the videos (one trained model; the
seed-aware comparison of designs is the study report's). Results go to the run's own directory, named after the
checkpoint evaluated and a hash of its bytes and the probe settings: `temporal_reliance_<ckpt>-<hash>.json` and
`.csv`; no other run is read or written.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from actionbench import statistics
from actionbench.config import ConfigError, absolute_paths, flat, load_config, split_overrides, to_dict

PROBES = ("normal", "reversed", "shuffled", "static")
SHUFFLE_SEED = 0


def shuffled_order(frames: int, seed: int = SHUFFLE_SEED) -> torch.Tensor:
    """A fixed permutation of `frames` that moves every frame it can (never the identity for 2+ frames)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(frames, generator=generator)
        if frames < 2 or not torch.equal(order, torch.arange(frames)):
            return order


def probe_clips(clips: torch.Tensor, probe: str) -> torch.Tensor:
    """`clips` (B, C, T, H, W) as `probe` sees them."""
    frames = clips.shape[2]
    if probe == "normal":
        return clips
    if probe == "reversed":
        return clips.flip(2)
    if probe == "shuffled":
        return clips[:, :, shuffled_order(frames).to(clips.device)]
    if probe == "static":
        return clips[:, :, frames // 2:frames // 2 + 1].expand(-1, -1, frames, -1, -1).contiguous()
    raise ValueError(f"unknown probe {probe!r} ({', '.join(PROBES)})")


class ProbedModel(nn.Module):
    """The model run on every probe of the same clips: logits of the probes side by side, (B, P * classes), so that
    the evaluation path (loader, views, gathering) runs once."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.mean, self.std, self.channel_order = model.mean, model.std, model.channel_order

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model(probe_clips(clips, p)) for p in PROBES], dim=1)


def analyze_run(run_dir: str | Path, overrides: list[str] | None = None, checkpoint: str | None = None) -> dict:
    """Temporal reliance of one run: per probe its video top-1 and drop with interval; files written in the run."""
    from actionbench.engine.assembly import check_bad_share, load_split, make_dataset, resolve_device
    from actionbench.engine.distributed import DistInfo
    from actionbench.engine.evaluation import aggregate_videos, collect_view_logits, shard_loader
    from actionbench.models.factory import model_from_checkpoint
    from actionbench.models.weights import file_sha256, load_checkpoint, resolve_checkpoint

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml): give the directories of trained runs")
    cfg = absolute_paths(load_config(run_dir / "config.yaml", overrides or []))
    path = resolve_checkpoint(checkpoint or run_dir)
    state = load_checkpoint(path)
    classes = state["classes"]
    model = model_from_checkpoint(state)
    device = resolve_device(cfg.device)
    test_list = cfg.data.test_list or cfg.data.val_list
    if not test_list:
        raise ConfigError(f"{run_dir}: its config has no data.test_list or data.val_list to analyse on")
    settings = {k: v for k, v in flat(to_dict(cfg)).items() if k.startswith(("data.", "test."))}
    sha = file_sha256(path)
    digest = hashlib.sha256(json.dumps([sha, settings, PROBES, SHUFFLE_SEED], sort_keys=True,
                                       default=str).encode()).hexdigest()[:8]
    stem = run_dir / f"temporal_reliance_{path.stem}-{digest}"
    if stem.with_suffix(".json").is_file():  # the same checkpoint bytes and settings: the same result
        return {**json.loads(stem.with_suffix(".json").read_text()), "reused": True,
                "files": [str(stem.with_suffix(".json")), str(stem.with_suffix(".csv"))]}
    ann = load_split(cfg, test_list, classes)
    bad_log = run_dir / "bad_videos.tsv"
    dataset = make_dataset(cfg, ann, test_list, "test", model, bad_log)
    info = DistInfo()
    loader = shard_loader(dataset, batch_size=cfg.test.batch_size or cfg.data.batch_size, workers=cfg.data.workers,
                          device=device, info=info, worker_start=cfg.data.worker_start)
    logits, labels = collect_view_logits(ProbedModel(model.to(device)), loader, device=device, info=info)
    del loader
    k = len(classes)
    correct = {}
    for i, probe in enumerate(PROBES):
        scores, truth, bad = aggregate_videos({key: row[i * k:(i + 1) * k] for key, row in logits.items()}, labels,
                                              cfg.test.aggregate)
        correct[probe] = (scores.argmax(1) == truth).astype(float) if len(truth) else np.zeros(0)
    check_bad_share(cfg, len(bad), len(ann), test_list, bad_log)
    if not len(correct["normal"]):
        raise ConfigError(f"{run_dir}: no readable test video to analyse")
    rows = []
    for probe in PROBES:
        drop = statistics.paired_bootstrap(correct["normal"], correct[probe])
        rows.append({"probe": probe, "video_top1": round(100 * float(correct[probe].mean()), 3),
                     "drop": round(drop["difference"], 3), "drop_low": round(drop["low"], 3),
                     "drop_high": round(drop["high"], 3), "significant": drop["significant"]})
    result = {"run": str(run_dir.resolve()), "model": state["config"]["model"]["name"],
              "dataset": state["config"].get("dataset"), "checkpoint": str(path.resolve()), "checkpoint_sha256": sha,
              "videos": int(len(correct["normal"])), "chance": round(100 / k, 3), "probes": rows,
              "shuffle_order": shuffled_order(cfg.data.frames).tolist(), "settings": settings,
              "method": f"drop = normal - probe video top-1 on the same videos; {statistics.METHOD}, paired"}
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    with stem.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result["files"] = [str(stem.with_suffix(".json")), str(stem.with_suffix(".csv"))]
    return result


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("runs", nargs="+", help="run directories (each analysed on its own test list), and key=value "
                                                "overrides of their test protocol, e.g. test.num_clips=1")
    parser.add_argument("--checkpoint", help="with one run: evaluate this checkpoint (default: best.pt, else last.pt)")


def run(args: argparse.Namespace) -> int:
    split_overrides(args, ("runs",))
    if not args.runs:
        raise ConfigError("no run directory given: actionbench analyze RUN_DIR...")
    if args.checkpoint and len(args.runs) > 1:
        raise ConfigError("--checkpoint names one checkpoint: give one run with it")
    missing = [r for r in args.runs if not (Path(r) / "config.yaml").is_file()]
    if missing:
        raise ConfigError(f"not a run directory (no config.yaml): {', '.join(missing[:3])}; give the directories "
                          "of trained runs (a study's OUT/runs/<dataset>/<run>)")
    print("| run | model | videos | probe | video top-1 | drop [95 % interval] |")
    print("|---|---|---|---|---|---|")
    for run_dir in args.runs:
        result = analyze_run(run_dir, args.overrides, args.checkpoint)
        for row in result["probes"]:
            interval = "" if row["probe"] == "normal" else (
                f"{row['drop']:+.1f} [{row['drop_low']:.1f}, {row['drop_high']:.1f}]"
                f"{'' if row['significant'] else ' (n.s.)'}")
            print(f"| {Path(run_dir).name} | {result['model']} | {result['videos']} | {row['probe']} | "
                  f"{row['video_top1']:.1f} | {interval} |")
        print(f"{'already there' if result.get('reused') else 'wrote'} {result['files'][0]}", flush=True)
    return 0


def reliance_of(output_dir: str | Path | None) -> dict | None:
    """The newest temporal-reliance result of a run directory (None when it has none)."""
    files = sorted(Path(output_dir).glob("temporal_reliance_*.json"), key=lambda f: f.stat().st_mtime) if (
        output_dir and Path(output_dir).is_dir()) else []
    return json.loads(files[-1].read_text()) if files else None


def analyze_results(results: list[dict]) -> int:
    """`analyze_run` on every finished run of a study (reused when done before); a run that cannot be analysed is
    a warning, not the end of the report. Returns how many were analysed."""
    import logging

    from actionbench.errors import ActionbenchError

    done = 0
    for result in results:
        run_dir = result.get("output_dir")
        if not run_dir or not (Path(run_dir) / "config.yaml").is_file():
            continue
        try:
            analyze_run(run_dir)
            done += 1
        except (ActionbenchError, OSError) as exc:
            logging.getLogger(__name__).warning("%s: temporal reliance not measured: %s", run_dir, exc)
    return done
