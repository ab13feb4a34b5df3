"""Whole-pipeline clip rate: VideoClipDataset (sampling + decoding + multi-scale crop + flip + normalise) through a
DataLoader with 2 workers, against the decoder alone in one process; for videos and for frame folders (our
simplejpeg reader against the same dataset reading frames with PIL). Rates are medians over rounds that alternate
the methods, in one run.

Run by hand (not a test):  python benchmarks/data_loader.py [--videos 12] [--epochs 4] [--rounds 3]
Uses the 10 s 340x256 30 fps H.264 videos (GOP 30) that benchmarks/clip_loading.py makes (made here if missing).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))
from clip_loading import make_video  # noqa: E402

from actionbench.data.dataset import VideoClipDataset  # noqa: E402
from actionbench.data.decoding import FrameFolderReader, open_video  # noqa: E402
from actionbench.data.extract import extract_frames  # noqa: E402
from actionbench.data.records import VideoRecord  # noqa: E402
from actionbench.data.sampling import uniform_train_indices  # noqa: E402
from actionbench.data.transforms import normalize_clips  # noqa: E402


class PILFrameDataset(VideoClipDataset):
    """The same dataset, frames decoded by our reader's PIL fallback instead of simplejpeg."""

    def load_clip(self, video_index: int, clip_index: int, rng) -> np.ndarray:
        with FrameFolderReader(self.path_of(self.records[video_index]), use_pil=True) as reader:
            return reader.get_frames(uniform_train_indices(len(reader), self.num_frames, rng))


def decoder_rate(paths: list[Path], epochs: int, use_pil: bool = False) -> float:
    """Clips/s of the reader alone in this process (uniform 8-frame training clips)."""
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(epochs):
        for path in paths:
            reader = FrameFolderReader(path, use_pil=True) if use_pil else open_video(path)
            with reader:
                reader.get_frames(uniform_train_indices(len(reader), 8, rng))
    return epochs * len(paths) / (time.perf_counter() - start)


def parallel_decoder_rate(paths: list[Path], epochs: int, processes: int = 2) -> float:
    """Aggregate clips/s of the reader alone in `processes` processes at once: what 2 workers could deliver at best."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.map(abs, range(processes))  # processes up before the timing
        start = time.perf_counter()
        pool.starmap(decoder_rate, [(paths, epochs)] * processes)
        return processes * epochs * len(paths) / (time.perf_counter() - start)


def loader_rate(loader: DataLoader) -> float:
    """Clips/s out of the loader; uint8 batches are normalised here, as the trainer does on its device."""
    transform = loader.dataset.transform
    batches = iter(loader)
    next(batches)  # workers up and their queues full before the timing
    start, clips = time.perf_counter(), 0
    for batch in batches:
        if batch[0].dtype == torch.uint8:
            normalize_clips(batch[0], transform.mean, transform.std)
        clips += batch[0].shape[0]
    return clips / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=4, help="passes over the videos per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "actionbench_bench"))
    args = parser.parse_args()
    cache = Path(args.cache)
    cache.mkdir(exist_ok=True)
    torch.set_num_threads(1)
    videos = [make_video(cache, 30, v) for v in range(args.videos)]
    folders = []
    for path in videos:
        folders.append(cache / f"frames420_{path.stem}")
        extract_frames(path, folders[-1], short_side=256, quality=90)

    def loader(dataset_class, paths, normalize=False):
        # one long epoch (the videos `epochs` times over): a real epoch's 100k clips have no start/end bubbles
        records = [VideoRecord(str(p), 0, p.stem) for p in paths] * args.epochs
        dataset = dataset_class(records, num_frames=8, size=224, mode="train", flip=True, normalize=normalize)
        return DataLoader(dataset, batch_size=4, num_workers=2, shuffle=True)

    alone, pair, loader2 = "decoder alone, 1 process", "decoder alone, 2 processes at once", "DataLoader, 2 workers"
    methods = {
        ("video", alone): lambda: decoder_rate(videos, args.epochs),
        ("video", pair): lambda: parallel_decoder_rate(videos, args.epochs),
        ("video", loader2): lambda: loader_rate(loader(VideoClipDataset, videos)),
        ("video", f"{loader2}, float32 out of the workers"): lambda: loader_rate(
            loader(VideoClipDataset, videos, normalize=True)),
        ("frames simplejpeg", alone): lambda: decoder_rate(folders, args.epochs),
        ("frames simplejpeg", loader2): lambda: loader_rate(loader(VideoClipDataset, folders)),
        ("frames, our PIL fallback", alone): lambda: decoder_rate(folders, args.epochs, use_pil=True),
        ("frames, our PIL fallback", loader2): lambda: loader_rate(loader(PILFrameDataset, folders)),
    }
    rates = {key: [] for key in methods}
    for _ in range(args.rounds):
        for key, measure in methods.items():
            rates[key].append(measure())

    def ratio(key, base) -> str:
        """Median over rounds of the ratio within a round (the machine's speed drifts between rounds)."""
        if base not in rates or base == key:
            return ""
        return f"{statistics.median(a / b for a, b in zip(rates[key], rates[base], strict=True)):.2f}x"

    print(f"| source, stage (uniform 8-frame training clips) | clips/s | / {alone} | / {pair} |")
    print("|---|---|---|---|")
    for (source, stage), values in rates.items():
        print(f"| {source}, {stage} | {statistics.median(values):.1f} | {ratio((source, stage), (source, alone))} | "
              f"{ratio((source, stage), (source, pair))} |")
    print(f"\nDataLoader = decode + TSN multi-scale crop to 224 + flip in the workers, uint8 clips out, normalised in "
          f"the main process as the trainer does (or float32 normalised in the workers where said), batch 4, "
          f"{args.videos} videos x {args.epochs} passes per measurement, medians over {args.rounds} rounds")


if __name__ == "__main__":
    main()
