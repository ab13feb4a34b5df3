"""Clip loading speed, side by side in one run: our PyAV reader vs plain keyframe seeking, sequential decoding and
decord, against the per-clip physical limit; and frame folders with simplejpeg vs PIL.

Run by hand (not a test):  python benchmarks/clip_loading.py [--videos 3] [--clips 6]
decord is optional (`pip install decord`): its column is skipped when it is not installed.
The limit of a clip = single-thread decode time per frame x the decode-order frames from each needed frame's
keyframe up to it (overlapping spans merged) + RGB conversion of the clip's frames + opening the file.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from actionbench.data.decode import FrameFolderReader, VideoReader
from actionbench.data.extract import extract_frames
from actionbench.data.sampling import dense_train_indices, uniform_test_indices


def make_video(path: Path, gop: int, seconds: int = 10, fps: int = 30, width: int = 340, height: int = 256) -> Path:
    if path.exists():
        return path
    rng = np.random.default_rng(gop)
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "medium", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=3"}
        phase = rng.uniform(0, 6.28, 3)
        for i in range(seconds * fps):  # moving textures: realistic motion-compensated frame sizes
            t = i / fps
            image = np.stack([127 + 120 * np.sin(xx / (17 + 5 * c) + yy / 23 + 3 * t + phase[c]) for c in range(3)], -1)
            frame = av.VideoFrame.from_ndarray(image.astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_order_info(path: Path):
    """Per display frame: its decode position and the decode position of its keyframe."""
    with av.open(str(path)) as c:
        packets = [(p.dts, p.pts, p.is_keyframe) for p in c.demux(c.streams.video[0]) if p.size and p.pts is not None]
    packets.sort()  # decode order
    decode_pos = {pts: i for i, (_, pts, _) in enumerate(packets)}
    keys = [i for i, (_, _, key) in enumerate(packets) if key]
    display = sorted(decode_pos)
    pos = np.array([decode_pos[p] for p in display])
    key_of = np.array([max(k for k in keys if k <= p) for p in pos])
    return pos, key_of


def limit_ms(indices, pos, key_of, per_frame_ms: float, rgb_ms: float, open_ms: float) -> float:
    spans = sorted((key_of[i], pos[i]) for i in set(indices))
    total, end = 0, -1
    for start, stop in spans:
        start = max(start, end + 1)
        if stop >= start:
            total += stop - start + 1
            end = stop
    return total * per_frame_ms + len(indices) * rgb_ms + open_ms


def time_call(fn, repeat: int = 3) -> float:
    best = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best.append((time.perf_counter() - start) * 1000)
    return statistics.median(best)


def sequential(path: Path, indices) -> np.ndarray:
    wanted, out = set(int(i) for i in indices), {}
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_count = 1
        for i, frame in enumerate(c.decode(stream)):
            if i in wanted:
                out[i] = frame.to_ndarray(format="rgb24")
            if i >= max(wanted):
                break
    return np.stack([out[int(i)] for i in indices])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=3, help="videos per GOP size")
    parser.add_argument("--clips", type=int, default=6, help="clips per video and sampling")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "actionbench_bench"))
    args = parser.parse_args()
    try:
        import decord
    except ImportError:
        decord = None
    cache = Path(args.cache)
    cache.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    print(f"10 s 340x256 30 fps H.264 (3 B-frames), {args.videos} videos per GOP, {args.clips} clips each; ms per clip")
    header = "| GOP | clip | limit | ours | ours/limit | plain seek | sequential | decord | ours clips/s vs decord |"
    print(header + "\n|" + "---|" * (header.count("|") - 1))
    for gop in (30, 250):
        videos = [make_video(cache / f"g{gop}_{v}.mp4", gop) for v in range(args.videos)]
        for sampling in ("uniform", "dense"):
            rows = {k: [] for k in ("limit", "ours", "plain", "seq", "decord")}
            for path in videos:
                pos, key_of = decode_order_info(path)
                n = len(pos)
                with av.open(str(path)) as c:  # single-thread full decode without conversion
                    c.streams.video[0].thread_count = 1
                    start = time.perf_counter()
                    frames = list(c.decode(c.streams.video[0]))
                    per_frame = (time.perf_counter() - start) * 1000 / n
                rgb = time_call(lambda f=frames[:8]: [x.to_ndarray(format="rgb24") for x in f]) / 8
                open_ms = time_call(lambda p=path: av.open(str(p)).close())
                for clip in range(args.clips):
                    if sampling == "uniform":
                        idx = uniform_test_indices(n, 8, clip, args.clips)
                    else:
                        idx = dense_train_indices(n, 8, 8, rng)
                    rows["limit"].append(limit_ms(idx, pos, key_of, per_frame, rgb, open_ms))

                    def ours(p=path, i=idx, skip=True):
                        with VideoReader(p, skip_nonref=skip) as r:
                            return r.get_frames(i)

                    rows["ours"].append(time_call(ours))
                    rows["plain"].append(time_call(lambda p=path, i=idx: ours(p, i, False)))
                    rows["seq"].append(time_call(lambda p=path, i=idx: sequential(p, i), repeat=1))
                    if decord is not None:
                        def with_decord(p=path, i=idx):
                            return decord.VideoReader(str(p), num_threads=1).get_batch(list(i)).asnumpy()

                        rows["decord"].append(time_call(with_decord))
            m = {k: statistics.mean(v) if v else float("nan") for k, v in rows.items()}
            print(f"| {gop} | {sampling} 8 | {m['limit']:.1f} | {m['ours']:.1f} | {m['ours'] / m['limit']:.2f} | "
                  f"{m['plain']:.1f} | {m['seq']:.1f} | {m['decord']:.1f} | {m['decord'] / m['ours']:.2f} |")
    folder = cache / "frames_g30_0"
    extract_frames(cache / "g30_0.mp4", folder, short_side=256, quality=90)
    idx = uniform_test_indices(300, 8)
    fast = time_call(lambda: FrameFolderReader(folder).get_frames(idx), repeat=7)
    pil = time_call(lambda: FrameFolderReader(folder, use_pil=True).get_frames(idx), repeat=7)
    print(f"\nframe folder, 8-frame clip (340x256 JPEG q90): simplejpeg {fast:.2f} ms, PIL {pil:.2f} ms, "
          f"speed-up {pil / fast:.2f}x")


if __name__ == "__main__":
    main()
