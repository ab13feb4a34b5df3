"""Clip- and video-level evaluation: per-view logits, gathered across ranks, aggregated per video.

Every view is evaluated exactly once across ranks (the dataset is sharded without padding) and results are keyed
by (video, view), so no sample is counted twice whatever the world size. Videos the dataset reports as bad
(label -1) are left out of the accuracy and counted in `bad_videos`.
"""

from __future__ import annotations

import atexit
import csv
import multiprocessing
import os
import signal
import threading
import weakref
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from actionbench import statistics
from actionbench.config import Config
from actionbench.data.dataset import INTERRUPTS, start_worker
from actionbench.data.transforms import normalize_clips
from actionbench.engine.assembly import autocast_factory, check_bad_share, load_split, make_dataset, same_file
from actionbench.engine.distributed import DistInfo, gather_objects, shard_indices
from actionbench.models.base import VideoModel


class EvaluationStopped(Exception):
    """A stop signal arrived during an evaluation (the caller says what was written and how to continue)."""


def to_model_input(clips: torch.Tensor, model, device: torch.device) -> torch.Tensor:
    """A batch from the data loader, on `device`, normalised there with the model's mean/std if it came as uint8."""
    clips = clips.to(device, non_blocking=True)
    if clips.dtype == torch.uint8:
        net = getattr(model, "module", model)  # DDP wraps the model
        clips = normalize_clips(clips, net.mean, net.std, channel_order=net.channel_order)
    return clips


def make_loader(dataset, *, batch_size: int, workers: int, device: torch.device, sampler=None,
                worker_start: str = "forkserver", seed: int = 0) -> DataLoader:
    """A DataLoader whose workers start from a clean process (forkserver; never a fork of a process with threads,
    which can deadlock in the child: the gloo group's, TensorBoard's, the feeder threads of earlier loaders) and
    stay alive across epochs and evaluations (persistent), so a long run starts them once per loader, not
    thousands of times. Its own generator leaves the global RNG (dropout, exact resume) untouched."""
    options = {}
    if workers > 0:
        context = multiprocessing.get_context(worker_start)
        if worker_start == "forkserver":
            context.set_forkserver_preload(["actionbench.data.dataset"])  # workers start with torch imported
        records = getattr(getattr(dataset, "dataset", dataset), "records", None)
        if records is not None and hasattr(records, "share_memory"):
            records.share_memory()  # workers get the record columns by handle, not a copy each
        options = {"multiprocessing_context": context, "persistent_workers": True,
                   "worker_init_fn": partial(start_worker, main_pid=os.getpid())}
    return _Loader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, shuffle=False,
                   pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed), **options)


class _Loader(DataLoader):
    """Starts its worker processes with SIGINT and SIGTERM blocked: a signal to the process group at that moment
    waits in the workers until they ignore it (`start_worker`), and in the main process until they are up.
    Since its workers ignore SIGTERM, they are ended in order at exit (`_stop_workers_at_exit`), not by the
    SIGTERM multiprocessing would send them before joining them."""

    def _get_iterator(self):
        if self.num_workers == 0:
            return super()._get_iterator()
        _LIVE_LOADERS.add(self)
        if threading.current_thread() is not threading.main_thread():
            return super()._get_iterator()
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)
        try:
            return super()._get_iterator()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


_LIVE_LOADERS: weakref.WeakSet[_Loader] = weakref.WeakSet()


@atexit.register  # after multiprocessing's own exit handler was registered: runs before it
def _stop_workers_at_exit() -> None:
    for loader in list(_LIVE_LOADERS):
        iterator = getattr(loader, "_iterator", None)  # persistent workers live with the loader's iterator
        if iterator is None or not hasattr(iterator, "_shutdown_workers"):
            continue
        iterator._shutdown_workers()  # each worker told to stop, then joined
        for worker in getattr(iterator, "_workers", []):
            if worker.is_alive():  # stuck beyond the join's timeout
                os.kill(worker.pid, signal.SIGKILL)


def shard_loader(dataset, *, batch_size: int, workers: int, device: torch.device, info: DistInfo,
                 worker_start: str = "forkserver") -> DataLoader:
    """An evaluation loader of this rank's share of `dataset` (every view exactly once across ranks); keep it for
    the next evaluation of the same data (its workers persist)."""
    shard = Subset(dataset, shard_indices(len(dataset), info.rank, info.world_size))
    return make_loader(shard, batch_size=batch_size, workers=workers, device=device, worker_start=worker_start)


@torch.no_grad()
def collect_view_logits(model, loader: DataLoader, *, device: torch.device, info: DistInfo, autocast=None,
                        progress=None, should_stop: Callable[[], bool] | None = None) -> tuple[dict, dict]:
    """{(video, view): logits} and {video: label} over a `shard_loader`'s dataset, on every rank. `should_stop`
    (one process only: ranks' shards differ in length, so they could not agree batch by batch) is asked after
    every batch; once it says so, `EvaluationStopped` is raised."""
    model.eval()
    logits: dict[tuple[int, int], np.ndarray] = {}
    labels: dict[int, int] = {}
    for clips, targets, videos, views in (progress(loader) if progress else loader):
        if should_stop is not None and not info.enabled and should_stop():
            raise EvaluationStopped
        with autocast() if autocast else torch.autocast("cpu", enabled=False):
            out = model(to_model_input(clips, model, device)).float().cpu().numpy()
        # NumPy rows: a pickled row of a tensor carries its whole batch's storage (54x the bytes at batch 64)
        for row, target, video, view in zip(out, targets.tolist(), videos.tolist(), views.tolist(), strict=True):
            logits[(video, view)] = row
            labels[video] = target
    merged_logits, merged_labels = {}, {}
    for part_logits, part_labels in gather_objects((logits, labels), info):
        merged_logits.update(part_logits)
        merged_labels.update(part_labels)
    return merged_logits, merged_labels


def aggregate_videos(view_logits: dict, labels: dict, aggregate: str = "logits") -> tuple[np.ndarray, np.ndarray, list]:
    """Per-video scores (views averaged as logits or softmax) for the good videos; returns scores, labels, bad ids."""
    by_video: dict[int, list[np.ndarray]] = {}
    for (video, _), row in sorted(view_logits.items()):
        by_video.setdefault(video, []).append(row)
    videos = sorted(v for v in by_video if labels[v] >= 0)
    bad = sorted(v for v in by_video if labels[v] < 0)
    if not videos:
        return np.zeros((0, 0)), np.zeros(0, dtype=int), bad
    stacked = [torch.as_tensor(np.stack(by_video[v])) for v in videos]
    if aggregate == "softmax":
        scores = torch.stack([s.softmax(-1).mean(0) for s in stacked])
    else:
        scores = torch.stack([s.mean(0) for s in stacked])
    return scores.numpy(), np.array([labels[v] for v in videos]), bad


def accuracy_metrics(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """top-1, top-5, mean per-class accuracy (in %) and the confusion matrix (rows: true class)."""
    if len(labels) == 0:
        return {"top1": float("nan"), "top5": float("nan"), "mean_class_acc": float("nan"),
                "confusion": np.zeros((num_classes, num_classes), dtype=np.int64), "count": 0}
    order = np.argsort(-scores, axis=1)
    k = min(5, num_classes)
    top1 = order[:, 0] == labels
    top5 = (order[:, :k] == labels[:, None]).any(1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, order[:, 0]), 1)
    per_class = [confusion[c, c] / confusion[c].sum() for c in range(num_classes) if confusion[c].sum()]
    return {"top1": 100 * top1.mean(), "top5": 100 * top5.mean(), "mean_class_acc": 100 * float(np.mean(per_class)),
            "confusion": confusion, "count": int(len(labels)), "correct_top1": top1, "correct_top5": top5,
            "labels": labels}


def accuracy_intervals(metrics: dict, num_classes: int, prefix: str) -> dict:
    """95 % intervals of a split's accuracies (actionbench.statistics): bootstrap over its videos for top-1,
    top-5 and mean class accuracy, and Wilson's analytic interval for top-1."""
    if not metrics["count"]:
        return {}
    top1, top5 = metrics["correct_top1"], metrics["correct_top5"]
    rounded = lambda pair: [round(pair[0], 2), round(pair[1], 2)]  # noqa: E731
    return {f"{prefix}_top1_ci": rounded(statistics.bootstrap_interval(top1)),
            f"{prefix}_top5_ci": rounded(statistics.bootstrap_interval(top5)),
            f"{prefix}_mean_class_acc_ci": rounded(statistics.mean_class_interval(metrics["labels"], top1,
                                                                                   num_classes)),
            f"{prefix}_top1_wilson": rounded(statistics.wilson_interval(int(top1.sum()), len(top1)))}


def write_predictions(path: str | Path, dataset, view_logits: dict, labels: dict, classes: list[str],
                      aggregate: str) -> None:
    """One CSV row per video: id, path, true label, predicted label, its probability (as `actionbench predict`
    prints it), its score (the views' averaged logit, or averaged softmax with test.aggregate=softmax), top-5."""
    scores, _, _ = aggregate_videos(view_logits, labels, aggregate)
    videos = sorted(v for v in labels if labels[v] >= 0)
    probabilities = scores if aggregate == "softmax" else torch.as_tensor(scores).softmax(-1).numpy()
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_id", "path", "label", "predicted", "probability", "score", "top5"])
        for video, row, prob in zip(videos, scores, probabilities, strict=True):
            order = np.argsort(-row)[:5]
            record = dataset.records[video]
            writer.writerow([record.video_id, record.path, classes[labels[video]], classes[order[0]],
                             f"{prob[order[0]]:.4f}", f"{row[order[0]]:.4f}", "|".join(classes[i] for i in order)])


def write_confusion(path: str | Path, confusion: np.ndarray, classes: list[str]) -> None:
    """The confusion matrix with class names: rows are true classes, columns predicted ones."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *classes])
        for name, row in zip(classes, confusion, strict=True):
            writer.writerow([name, *row.tolist()])


def evaluate_run(cfg: Config, model: VideoModel, classes: list[str], info: DistInfo, device: torch.device,
                 bad_video_log: Path | None, outputs: dict[str, Path] | None = None, progress=None,
                 should_stop: Callable[[], bool] | None = None) -> dict:
    """Clip level (val list, 1 centre clip) and video level (test list, m clips x k crops); with `outputs`,
    the video-level predictions and confusion matrix are written there (main rank)."""
    autocast = autocast_factory(cfg, device)
    batch = cfg.test.batch_size or max(1, cfg.data.batch_size // info.world_size)
    results = {}
    test_list = cfg.data.test_list or cfg.data.val_list
    for level, mode, list_file in (("clip", "val", cfg.data.val_list), ("video", "test", test_list)):
        ann = load_split(cfg, list_file, classes)
        dataset = make_dataset(cfg, ann, list_file, mode, model, bad_video_log)
        loader = shard_loader(dataset, batch_size=batch, workers=cfg.data.workers, device=device, info=info,
                              worker_start=cfg.data.worker_start)
        logits, labels = collect_view_logits(model, loader, device=device, info=info, autocast=autocast,
                                             progress=progress, should_stop=should_stop)
        del loader  # its worker processes end here
        scores, truth, bad = aggregate_videos(logits, labels, cfg.test.aggregate)
        check_bad_share(cfg, len(bad), len(ann), list_file, bad_video_log)
        metrics = accuracy_metrics(scores, truth, len(classes))
        results.update({f"{level}_top1": round(metrics["top1"], 3), f"{level}_top5": round(metrics["top5"], 3),
                        f"{level}_mean_class_acc": round(metrics["mean_class_acc"], 3),
                        f"{level}_videos": metrics["count"], f"{level}_videos_listed": len(ann),
                        f"{level}_bad_videos": len(bad),
                        **accuracy_intervals(metrics, len(classes), level)})
        if level == "video" and outputs and info.is_main:
            write_confusion(outputs["confusion"], metrics["confusion"], classes)
            write_predictions(outputs["predictions"], dataset, logits, labels, classes, cfg.test.aggregate)
    results["mean_class_acc"] = results["video_mean_class_acc"]
    results["ci_method"] = f"{statistics.METHOD}; *_wilson: Wilson score interval"
    results["val_is_test"] = same_file(cfg.data.val_list, test_list)
    return results


def validation_top1(model, loader: DataLoader, info: DistInfo, device: torch.device, autocast,
                    should_stop: Callable[[], bool] | None = None) -> float:
    """Clip-level top-1 of `model` on a validation loader (every rank gets the same number)."""
    logits, labels = collect_view_logits(model, loader, device=device, info=info, autocast=autocast,
                                         should_stop=should_stop)
    scores, truth, _ = aggregate_videos(logits, labels)
    return float(accuracy_metrics(scores, truth, int(scores.shape[1]) if len(scores) else 1)["top1"])
