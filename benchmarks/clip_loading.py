"""Clip loading speed, side by side in one run: our PyAV reader vs plain keyframe seeking, sequential decoding and
decord, against the per-clip physical limit; and frame folders with simplejpeg vs PIL.

Run by hand (not a test):  python benchmarks/clip_loading.py [--videos 3] [--clips 6] [--rounds 5]
decord is optional (`pip install decord`): its column is skipped when it is not installed.
The limit of a clip = single-thread decode time per frame x the decode-order frames from each needed frame's
keyframe up to it (overlapping spans merged) + RGB conversion of the clip's frames + opening the file.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from actionbench.data.decode import FrameFolderReader, VideoReader
from actionbench.data.extract import extract_frames
from actionbench.data.sampling import dense_train_indices, uniform_test_indices


def make_video(path: Path, gop: int, seconds: int = 10, fps: int = 30, width: int = 340, height: int = 256) -> Path:
    """A camera pan over a natural-looking texture (smoothed noise at several scales), x264 medium with 3 B-frames:
    ~0.5 Mbit/s, the bitrate of Kinetics' 340x256 files (~550 KB per 10 s clip)."""
    if path.exists():
        return path
    rng = np.random.default_rng(gop + 1000 * int(path.stem.rsplit("_", 1)[-1]))
    big_h, big_w = 2 * height, 2 * width
    texture = np.full((big_h, big_w, 3), 128.0)
    for scale, amplitude in ((64, 60), (16, 40), (4, 25)):
        small = rng.normal(0, amplitude, (big_h // scale + 1, big_w // scale + 1, 3))
        texture += np.kron(small, np.ones((scale, scale, 1)))[:big_h, :big_w]
    texture = np.clip(texture, 0, 255).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "medium", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=3"}
        for i in range(seconds * fps):
            t = i / fps
            y = int(big_h / 4 + big_h / 5 * np.sin(0.7 * t))
            x = int(big_w / 4 + big_w / 5 * np.cos(0.5 * t))
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[y:y + height, x:x + width]), "rgb24")
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


def decode_costs(path: Path) -> tuple[float, float]:
    """ms per frame of a single-thread full decode that drops each frame (as `ffmpeg -threads 1 -f null` does; keeping
    them measured 6 % slower), median of 3; and ms per frame of RGB conversion with a kept scaling context."""
    def full_decode(keep: int = 0) -> list:
        with av.open(str(path)) as c:
            c.streams.video[0].thread_count = 1
            kept = []
            for frame in c.decode(c.streams.video[0]):
                if len(kept) < keep:
                    kept.append(frame)
            return kept

    frames = full_decode(keep=8)
    count = len(decode_order_info(path)[0])
    per_frame = time_call(full_decode) / count
    converter = VideoReformatter()
    rgb = time_call(lambda: [converter.reformat(f, format="rgb24", threads=1).to_ndarray() for f in frames]) / 8
    return per_frame, rgb


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


def pil_clip(folder: Path, indices) -> np.ndarray:
    """The usual PIL loader (as in the paper's code and torchvision-style datasets): open, convert, stack."""
    from PIL import Image

    return np.stack([np.asarray(Image.open(folder / f"{i + 1:05d}.jpg").convert("RGB")) for i in indices])


FRAME_METHODS = {
    "ours (simplejpeg, reader construction included)": lambda folder, idx: FrameFolderReader(folder).get_frames(idx),
    "ours, PIL fallback": lambda folder, idx: FrameFolderReader(folder, use_pil=True).get_frames(idx),
    "PIL loader (Image.open + convert + stack)": pil_clip,
}


def frame_method_ms(name: str, folder: Path, calls: int = 5) -> float:
    indices = uniform_test_indices(len(list(folder.glob("*.jpg"))), 8)
    return time_call(lambda: FRAME_METHODS[name](folder, indices), repeat=calls)


def frame_folder_table(folder: Path, rounds: int = 15, fresh: bool = False) -> str:
    """ms per uniform 8-frame clip from a frame folder, methods interleaved, median over rounds; with `fresh`, each
    measurement in a new process (the heap as a data-loader worker starts), else in this one."""
    times = {name: [] for name in FRAME_METHODS}
    for _ in range(rounds):
        for name in FRAME_METHODS:
            if fresh:
                run = subprocess.run([sys.executable, __file__, "--frame-method", name, "--cache", str(folder)],
                                     capture_output=True, text=True, check=True)
                times[name].append(float(run.stdout))
            else:
                times[name].append(frame_method_ms(name, folder))
    ours = statistics.median(times[next(iter(FRAME_METHODS))])
    where = "a fresh process per measurement" if fresh else "this process, after the video rows"
    lines = [f"| frame folder, 8-frame clip (340x256 JPEG q90), {where} | ms | ours is faster by |", "|---|---|---|"]
    for name, values in times.items():
        ms = statistics.median(values)
        lines.append(f"| {name} | {ms:.2f} | {ms / ours:.2f}x |")
    return "\n".join(lines)


def video_row(videos: list[Path], gop: int, sampling: str, clips: int, rounds: int, rng, decord) -> str:
    """One table row: every method and the limit's parts timed once per clip per round, interleaved so that the
    machine's drift hits all of them alike; medians over rounds, then means over clips."""
    info = {path: decode_order_info(path) for path in videos}
    plan = []
    for path in videos:
        n = len(info[path][0])
        for clip in range(clips):
            if sampling == "uniform":
                plan.append((path, uniform_test_indices(n, 8, clip, clips)))
            else:
                plan.append((path, dense_train_indices(n, 8, 8, rng)))

    def ours(path, idx, skip=True):
        with VideoReader(path, skip_nonref=skip) as reader:
            return reader.get_frames(idx)

    methods = {
        "ours": ours,
        "plain": lambda path, idx: ours(path, idx, skip=False),
        "seq": sequential,
        "decord": None if decord is None else (
            lambda path, idx: decord.VideoReader(str(path), num_threads=1).get_batch(list(idx)).asnumpy()),
    }
    costs = {path: [] for path in videos}
    times = {(name, k): [] for name in methods for k in range(len(plan))}
    for _ in range(rounds):
        for path in videos:
            per_frame, rgb = decode_costs(path)
            costs[path].append((per_frame, rgb, time_call(lambda p=path: av.open(str(p)).close())))
        for k, (path, idx) in enumerate(plan):
            for name, fn in methods.items():
                if fn is not None:
                    times[name, k].append(time_call(lambda f=fn, p=path, i=idx: f(p, i), repeat=1))
    m = {name: statistics.mean(statistics.median(times[name, k]) if times[name, k] else float("nan")
                               for k in range(len(plan))) for name in methods}
    median_costs = {path: [statistics.median(c[j] for c in costs[path]) for j in range(3)] for path in videos}
    m["limit"] = statistics.mean(limit_ms(idx, *info[path], *median_costs[path]) for path, idx in plan)
    return (f"| {gop} | {sampling} 8 | {m['limit']:.1f} | {m['ours']:.1f} | {m['ours'] / m['limit']:.2f} | "
            f"{m['plain']:.1f} | {m['seq']:.1f} | {m['decord']:.1f} | {m['decord'] / m['ours']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=3, help="videos per GOP size")
    parser.add_argument("--clips", type=int, default=6, help="clips per video and sampling")
    parser.add_argument("--rounds", type=int, default=5, help="timings per clip and method (median taken)")
    parser.add_argument("--gops", type=int, nargs="+", default=[30, 250], help="keyframe intervals to test")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "actionbench_bench"))
    parser.add_argument("--frame-method", choices=list(FRAME_METHODS), help=argparse.SUPPRESS)  # one fresh timing
    args = parser.parse_args()
    if args.frame_method:  # called by frame_folder_table(fresh=True): time one method in this new process
        print(frame_method_ms(args.frame_method, Path(args.cache)))
        return
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
    for gop in args.gops:
        videos = [make_video(cache / f"pan_g{gop}_{v}.mp4", gop) for v in range(args.videos)]
        for sampling in ("uniform", "dense"):
            print(video_row(videos, gop, sampling, args.clips, args.rounds, rng, decord))
    folder = cache / "frames_pan_g30_0"
    extract_frames(cache / "pan_g30_0.mp4", folder, short_side=256, quality=90)
    print("\n" + frame_folder_table(folder))
    print("\n" + frame_folder_table(folder, rounds=5, fresh=True))

if __name__ == "__main__":
    main()
