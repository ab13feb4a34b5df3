"""`VideoClipDataset`: annotations -> sampler -> decoder -> transforms, one clip (view) per item.

Items are `(clip (C, T, H, W) float, label, video_index, view_index)`. Train and val give one item per video
(val: the centre clip and crop); test gives `num_clips x num_crops` items per video, for video-level accuracy.
With `normalize=False` the clip stays uint8 (a quarter of the bytes through the workers' shared memory and the
copy to the device) and `transforms.normalize_clips` finishes it on the device, as the trainer does.

Randomness comes from a generator seeded by (seed, epoch, item), so a run is reproducible whatever the number of
data-loader workers; call `set_epoch` each epoch. A bad video (missing, empty, unreadable, no frames) never stops
training: the item is replaced by another video chosen deterministically, the video is logged once with its path
and reason, and recorded in a small log file shared by all worker processes (`bad_video_summary()`). In val/test
modes a bad video is not replaced by another video's clip: its item comes back with label -1 so that evaluation
can leave it out and report it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import signal
import tempfile
import threading
import time
import uuid
import weakref
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from actionbench.data.decoding import VideoDecodeError, open_video
from actionbench.data.formats import load_annotations
from actionbench.data.records import Annotations, RecordTable, VideoRecord
from actionbench.data.sampling import clip_indices
from actionbench.data.transforms import MULTI_SCALES, TestTransform, TrainTransform
from actionbench.errors import DataError

log = logging.getLogger(__name__)
MODES = ("train", "val", "test")
_BAD_VIDEO_ERRORS = (VideoDecodeError, OSError, IndexError, ValueError, RuntimeError)


class VideoClipDataset(Dataset):
    def __init__(
        self,
        records: list[VideoRecord] | Annotations,
        *,
        root: str | Path = ".",
        num_frames: int = 8,
        sampling: str = "uniform",
        stride: int = 1,
        mode: str = "train",
        num_clips: int = 1,
        num_crops: int = 1,
        size: int = 224,
        scale_size: int | None = None,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        flip: str | bool = False,
        train_scales=MULTI_SCALES,
        short_side_range: tuple[int, int] | None = None,
        seed: int = 0,
        bad_video_log: str | Path | None = None,
        normalize: bool = True,
        index_cache: str | Path | None = None,
        clip_timeout: float = 0.0,
        decoded_cache_mb: int = 0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        given = records.records if isinstance(records, Annotations) else records
        self.records = given if isinstance(given, RecordTable) else RecordTable(given)
        if not len(self.records):
            raise ValueError("the dataset has no videos")
        self.classes = records.classes if isinstance(records, Annotations) else None
        self.root = Path(root)
        self.num_frames, self.sampling, self.stride, self.mode = num_frames, sampling, stride, mode
        self.num_clips = num_clips if mode == "test" else 1
        self.num_crops = num_crops if mode == "test" else 1
        self.seed, self.epoch = seed, 0
        if mode == "train":
            self.transform = TrainTransform(size, mean, std, scales=train_scales, short_side_range=short_side_range,
                                            flip=flip, normalize=normalize)
        else:
            self.transform = TestTransform(size, mean, std, num_crops=self.num_crops, scale_size=scale_size,
                                           normalize=normalize)
        self._owned_log = bad_video_log is None
        if self._owned_log:  # a private log, created at the first bad video and removed with the dataset
            bad_video_log = Path(tempfile.gettempdir()) / f"actionbench-bad-videos-{os.getpid()}-{uuid.uuid4().hex}.tsv"
            weakref.finalize(self, _remove_owned_log, bad_video_log, os.getpid())
        self.bad_video_log = Path(bad_video_log)
        self.index_cache = index_cache  # folder of the videos' frame indexes (decoding/frame_index.py)
        self.clip_timeout = clip_timeout  # seconds a clip may take to decode before it counts as a bad video
        self._frame_counts: dict[int, int] = {}
        self._logged: set[str] = set()
        # whole decoded videos kept in this process (each worker its own), up to this many bytes: small,
        # low-resolution sets are then decoded once per run instead of once per epoch (the same frames)
        self._decoded_budget, self._decoded_bytes = decoded_cache_mb << 20, 0
        self._decoded: dict[int, np.ndarray] = {}
        self._too_large: set[int] = set()  # decoded once in full and did not fit: read only their clips after

    def __len__(self) -> int:
        return len(self.records) * self.num_clips * self.num_crops

    def log_bad_videos_to(self, path: str | Path) -> None:
        """Append bad videos to `path` from now on (a run's bad_videos.tsv, known once its directory exists)."""
        self.bad_video_log, self._owned_log = Path(path), False

    def close(self) -> None:
        """Remove the private bad-video log, if this dataset made one (a given `bad_video_log` is the caller's)."""
        if self._owned_log:
            _remove_owned_log(self.bad_video_log, os.getpid())

    @property
    def views_per_video(self) -> int:
        return self.num_clips * self.num_crops

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def path_of(self, record: VideoRecord) -> Path:
        path = Path(record.path)
        return path if path.is_absolute() else self.root / path

    def load_clip(self, video_index: int, clip_index: int, rng: np.random.Generator | None) -> np.ndarray:
        """Decode the frames of one clip, uint8 (T, H, W, 3), within `clip_timeout` seconds."""
        with time_budget(self.clip_timeout, self.path_of(self.records[video_index])):
            return self._load_clip(video_index, clip_index, rng)

    def _load_clip(self, video_index: int, clip_index: int, rng: np.random.Generator | None) -> np.ndarray:
        record = self.records[video_index]
        cached = self._decoded.get(video_index)
        if cached is not None:
            return cached[self._indices(video_index, len(cached), clip_index, rng) + record.first_frame]
        with open_video(self.path_of(record), index_cache=self.index_cache) as reader:
            indices = self._indices(video_index, len(reader), clip_index, rng) + record.first_frame
            if self._decoded_budget <= self._decoded_bytes or video_index in self._too_large:
                return reader.get_frames(indices)
            every = reader.get_frames(np.arange(len(reader)))
        if self._decoded_bytes + every.nbytes <= self._decoded_budget:
            self._decoded[video_index] = every
            self._decoded_bytes += every.nbytes
        else:
            self._too_large.add(video_index)
        return every[indices]

    def _indices(self, video_index: int, frames: int, clip_index: int, rng: np.random.Generator | None) -> np.ndarray:
        """The clip's frame indices within the annotation's frame range (rawframes / ibm lists), else the video."""
        record = self.records[video_index]
        count = self._frame_counts.get(video_index)
        if count is None:
            count = record.num_frames or frames
            if record.first_frame + count > frames:
                raise VideoDecodeError(f"{self.path_of(record)}: the annotation gives frames "
                                       f"{record.first_frame + 1}-{record.first_frame + count}, the video has {frames}")
            self._frame_counts[video_index] = count
        return clip_indices(count, self.num_frames, sampling=self.sampling, train=self.mode == "train",
                            stride=self.stride, clip_index=clip_index, num_clips=self.num_clips, rng=rng)

    def _report_bad(self, record: VideoRecord, exc: BaseException) -> None:
        """Log a bad video once for the run: the first process (worker, rank) to meet it writes its line in the
        bad-video log and warns; the others find it there."""
        path = os.path.normpath(self.path_of(record))
        if path in self._logged:
            return
        self._logged.add(path)
        reason = str(exc).replace("\t", " ").replace("\n", " ")
        with open(self.bad_video_log, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
            f.seek(0)
            if any(line.partition("\t")[0] == path for line in f.read().splitlines()):
                return
            f.write(f"{path}\t{reason}\n")
        log.warning("bad video %s: %s", path, reason)

    def bad_video_summary(self) -> dict[str, str]:
        """Every bad video met so far by any worker: path -> reason."""
        if not self.bad_video_log.is_file():
            return {}
        summary = {}
        for line in self.bad_video_log.read_text().splitlines():
            path, _, reason = line.partition("\t")
            summary.setdefault(path, reason)
        return summary

    def __getitem__(self, index: int):
        video_index, view = divmod(index, self.views_per_video)
        clip_index, crop_index = divmod(view, self.num_crops)
        if self.mode != "train":
            record = self.records[video_index]
            try:
                frames = torch.from_numpy(self.load_clip(video_index, clip_index, None))
            except _BAD_VIDEO_ERRORS as exc:
                self._report_bad(record, exc)
                size = self.transform.size
                dtype = torch.float32 if self.transform.normalize else torch.uint8
                return torch.zeros(3, self.num_frames, size, size, dtype=dtype), -1, video_index, view
            return self.transform(frames, crop_index), record.label, video_index, view
        epoch, index = divmod(index, len(self)) if index >= len(self) else (self.epoch, index)  # epoch * len + i
        video_index = index
        rng = np.random.default_rng([self.seed, epoch, index])
        for _ in range(len(self.records)):
            record = self.records[video_index]
            try:
                frames = torch.from_numpy(self.load_clip(video_index, 0, rng))
            except _BAD_VIDEO_ERRORS as exc:
                self._report_bad(record, exc)
                video_index = int(rng.integers(len(self.records)))  # a deterministic replacement
                continue
            clip, label = self.transform(frames, record.label, rng)
            return clip, label, video_index, 0
        raise DataError(f"no readable video found in {len(self.records)} attempts (see {self.bad_video_log}); check "
                        "data.root and the files (actionbench data check)")


INTERRUPTS = {signal.SIGINT, signal.SIGTERM}


def start_worker(worker_id: int, main_pid: int) -> None:
    """A data-loader worker's start. SIGINT and SIGTERM are ignored: a terminal's Ctrl-C and a scheduler's SIGTERM
    go to the whole process group; the main process decides what they mean (write last.pt, stop), and a worker
    killed by them would only turn that into "DataLoader worker exited unexpectedly". The loader starts its workers
    with both blocked (`engine.evaluation.make_loader`), so that one arriving before this runs waits and is then
    discarded. The worker ends when the main process does, however that ends: a worker started by a forkserver
    is the server's child, and torch's own check (its parent) would keep it, and the server, alive for ever after
    the main process was killed."""
    for signum in INTERRUPTS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTS)
    threading.Thread(target=_exit_with, args=(main_pid,), name="actionbench-main-watch", daemon=True).start()


def _exit_with(pid: int) -> None:
    try:
        descriptor = os.pidfd_open(pid)  # readable once the process has ended (Linux 5.3+)
        select.select([descriptor], [], [])
    except (AttributeError, OSError):  # no pidfds here, or the process is gone already
        while os.path.exists(f"/proc/{pid}") and _state(pid) != "Z":
            time.sleep(1.0)
    os._exit(0)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


class ClipTimeout(VideoDecodeError):
    """A clip took longer than its time budget to decode (a stuck or pathological file)."""


_budget_active = False


def _on_alarm(signum, frame) -> None:
    if _budget_active:  # only inside a clip's decoding: a late alarm must not hit anything else
        raise ClipTimeout("decoding took longer than data.clip_timeout")


@contextlib.contextmanager
def time_budget(seconds: float, path: Path):
    """Raise ClipTimeout (a bad video, then) when the block runs longer than `seconds`; a no-op without a budget or
    off the main thread (signals reach only it; data-loader workers decode on theirs). Decoding returns to Python
    between packets and frames, where the alarm interrupts it."""
    global _budget_active
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    _budget_active = True
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except ClipTimeout:
        raise ClipTimeout(f"{path}: decoding took longer than {seconds:g} s (data.clip_timeout)") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _budget_active = False
        signal.signal(signal.SIGALRM, previous)


def _remove_owned_log(path: Path, creator: int) -> None:
    if os.getpid() == creator:  # not from a data-loader worker, whose exit must not take the shared log away
        Path(path).unlink(missing_ok=True)


def build_dataset(annotations: str | Path, root: str | Path | None = None, format: str | None = None,
                  **kwargs) -> VideoClipDataset:
    """Load an annotation file (any supported format) and wrap it in a `VideoClipDataset`."""
    ann = load_annotations(annotations, format, root=root)
    return VideoClipDataset(ann, root=root or Path(annotations).parent, **kwargs)
