"""Whole-pipeline clip rate: VideoClipDataset (sampling + decoding + multi-scale crop + flip + normalise) through a
DataLoader with 2 workers, against the decoder alone in one process, in one run.

Run by hand (not a test):  python benchmarks/data_loader.py [--videos 12] [--epochs 2]
Uses the 10 s 340x256 30 fps H.264 videos (GOP 30) that benchmarks/clip_loading.py makes (made here if missing).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))
from clip_loading import make_video  # noqa: E402

from actionbench.data.annotations import VideoRecord  # noqa: E402
from actionbench.data.dataset import VideoClipDataset  # noqa: E402
from actionbench.data.decode import VideoReader  # noqa: E402
from actionbench.data.sampling import uniform_train_indices  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "actionbench_bench"))
    args = parser.parse_args()
    cache = Path(args.cache)
    cache.mkdir(exist_ok=True)
    paths = [make_video(cache / f"pan_g30_{v}.mp4", 30) for v in range(args.videos)]
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(args.epochs):
        for path in paths:
            with VideoReader(path) as reader:
                reader.get_frames(uniform_train_indices(len(reader), 8, rng))
    decoder_rate = args.epochs * len(paths) / (time.perf_counter() - start)
    records = [VideoRecord(str(p), 0, p.stem) for p in paths]
    dataset = VideoClipDataset(records, num_frames=8, size=224, mode="train", flip=True)
    loader = DataLoader(dataset, batch_size=4, num_workers=2, shuffle=True, persistent_workers=True)
    next(iter(loader))  # start the workers outside the timing
    start = time.perf_counter()
    clips = 0
    for epoch in range(args.epochs):
        dataset.set_epoch(epoch)
        for batch in loader:
            clips += batch[0].shape[0]
    loader_rate = clips / (time.perf_counter() - start)
    print(f"decoder alone, 1 process: {decoder_rate:.1f} clips/s (uniform 8 frames)")
    print(f"DataLoader, 2 workers, decode + multi-scale crop 224 + flip + normalise: {loader_rate:.1f} clips/s "
          f"({loader_rate / decoder_rate:.2f}x the single-process decoder)")


if __name__ == "__main__":
    main()
