"""Synthetic action datasets written as real H.264 MP4 files (`actionbench synth`): the embedded default.

- `temporal`: classes that differ ONLY in temporal order, in time-reversed pairs: moving left / right, approaching /
  receding, appearing / disappearing, rotating clockwise / counter-clockwise. Colours, shapes, backgrounds,
  positions, sizes and speeds are drawn so that a video of one class played backwards is a sample of its partner
  class with the same probability: no frame, nor the set of frames, tells the pair's classes apart. A model
  without temporal modelling (TSN) can tell the four pairs apart but sits at chance within each pair.
- `appearance`: classes that differ by the object's shape and colour, with random motion: temporal modelling does
  not help.
Each video is drawn from its own seed (derived from the dataset seed, class and index) and encoded single-threaded,
so the same seed writes the same files.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TEMPORAL_CLASSES = ("moving left", "moving right", "approaching", "receding", "appearing", "disappearing",
                    "rotating clockwise", "rotating counter-clockwise")
SHAPES = ("disc", "ring", "triangle", "square")  # the most distinct first: 8 classes = 2 shapes x 4 colours
COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 230), "green": (40, 190, 60), "yellow": (230, 210, 40)}
APPEARANCE_CLASSES = tuple(f"{colour} {shape}" for shape in SHAPES for colour in COLOURS)


@dataclass(frozen=True)
class VideoSpec:
    kind: str
    label: int
    index: int
    seed: int
    frames: int
    size: int


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return ys, xs


def _background(rng: np.random.Generator, size: int, saturation: float = 1.0) -> np.ndarray:
    """A static random colour (greyish when `saturation` is small) with a smooth random texture."""
    grey = rng.uniform(40, 200)
    base = grey + (rng.uniform(40, 200, size=3) - grey) * saturation
    ys, xs = _grid(size)
    fx, fy = rng.uniform(0.5, 3, 2) * 2 * np.pi / size
    texture = np.sin(xs * fx + ys * fy + rng.uniform(0, 2 * np.pi))[..., None] * rng.uniform(10, 30, size=3)
    return np.clip(base + texture, 0, 255).astype(np.float32)


def _shape_mask(shape: str, ys, xs, cy: float, cx: float, radius: float, angle: float = 0.0) -> np.ndarray:
    dy, dx = ys - cy, xs - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # rotated coordinates
    if shape == "disc":
        return (u**2 + v**2 <= radius**2).astype(np.float32)
    if shape == "square":
        return ((np.abs(u) <= radius * 0.85) & (np.abs(v) <= radius * 0.85)).astype(np.float32)
    if shape == "triangle":
        return ((v <= radius * 0.7) & (v >= -radius + 1.7 * np.abs(u))).astype(np.float32)
    if shape == "ring":
        r2 = u**2 + v**2
        return ((r2 <= radius**2) & (r2 >= (0.55 * radius) ** 2)).astype(np.float32)
    if shape == "pointer":  # a bar with a head: its orientation is visible, so rotation direction is learnable
        bar = (np.abs(v) <= radius * 0.18) & (np.abs(u) <= radius)
        head = (u - radius * 0.8) ** 2 + v**2 <= (radius * 0.35) ** 2
        return (bar | head).astype(np.float32)
    raise ValueError(shape)


def _object_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    mean = background.reshape(-1, 3).mean(0)
    colour = rng.uniform(0, 255, size=3)
    while np.abs(colour - mean).sum() < 180:  # keep the object visible against its background
        colour = rng.uniform(0, 255, size=3)
    return colour.astype(np.float32)


def _temporal_video(label: int, rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """Draw the parameters of the pair, then play forward (even label) or backward (odd label)."""
    pair, backward = divmod(label, 2)
    background = _background(rng, size)
    colour = _object_colour(rng, background)
    ys, xs = _grid(size)
    progress = np.linspace(0.0, 1.0, frames)
    shape = ("disc", "square", "triangle")[rng.integers(3)]
    radius = rng.uniform(0.12, 0.2) * size
    cy, cx = rng.uniform(0.3, 0.7, size=2) * size
    masks, alphas = [], np.ones(frames)
    if pair == 0:  # horizontal motion: moving left played backwards is moving right
        travel = rng.uniform(0.35, 0.55) * size
        centre = rng.uniform(radius + travel / 2, size - radius - travel / 2)
        xs_path = centre + travel * (0.5 - progress)
        masks = [_shape_mask(shape, ys, xs, cy, x, radius) for x in xs_path]
    elif pair == 1:  # growing (approaching) / shrinking (receding)
        small, large = rng.uniform(0.06, 0.1) * size, rng.uniform(0.26, 0.34) * size
        masks = [_shape_mask(shape, ys, xs, size / 2 + (cy - size / 2) * 0.4, size / 2 + (cx - size / 2) * 0.4, r)
                 for r in small + (large - small) * progress]
    elif pair == 2:  # fading in (appearing) / fading out (disappearing)
        masks = [_shape_mask(shape, ys, xs, cy, cx, radius)] * frames
        alphas = progress
    else:  # rotating clockwise (angle decreasing in image coordinates) / counter-clockwise
        start, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.35)
        masks = [_shape_mask("pointer", ys, xs, size / 2, size / 2, 0.34 * size, start + speed * i)
                 for i in range(frames)]
    video = np.empty((frames, size, size, 3), np.uint8)
    order = range(frames - 1, -1, -1) if backward else range(frames)
    for t, source in enumerate(order):
        a = (masks[source] * alphas[source])[..., None]
        video[t] = np.clip(background * (1 - a) + colour * a, 0, 255)
    return video


def _appearance_video(label: int, rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    shape = SHAPES[label // len(COLOURS)]
    colour = np.array(list(COLOURS.values())[label % len(COLOURS)], np.float32) + rng.uniform(-20, 20, 3)
    background = _background(rng, size, saturation=0.25)  # the object's colour is the class: keep it unambiguous
    ys, xs = _grid(size)
    radius = rng.uniform(0.18, 0.26) * size
    start = rng.uniform(radius, size - radius, size=2)
    end = rng.uniform(radius, size - radius, size=2)
    video = np.empty((frames, size, size, 3), np.uint8)
    for t, p in enumerate(np.linspace(0, 1, frames)):
        cy, cx = start + (end - start) * p
        a = _shape_mask(shape, ys, xs, cy, cx, radius, angle=rng.uniform(-0.2, 0.2))[..., None]
        video[t] = np.clip(background * (1 - a) + np.clip(colour, 0, 255) * a, 0, 255)
    return video


def render(spec: VideoSpec) -> np.ndarray:
    """The frames of one synthetic video, uint8 (T, H, W, 3)."""
    rng = np.random.default_rng([spec.seed, spec.label, spec.index])
    draw = _temporal_video if spec.kind == "temporal" else _appearance_video
    return draw(spec.label, rng, spec.frames, spec.size)


def encode_mp4(frames: np.ndarray, path: str | Path, fps: int = 12) -> None:
    """Encode RGB frames as H.264 (yuv420p, GOP 8) to the same bytes every time: single-threaded and without
    x264's macroblock tree, which at these tiny sizes gave different bytes for about one video in ten when the same
    frames were encoded again in one process (measured: 21 of 224 videos over 6 encodes each; none with mbtree=0)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "18",
                          "x264-params": "threads=1:keyint=8:min-keyint=8:scenecut=0:mbtree=0"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_one(args: tuple[VideoSpec, str]) -> None:
    spec, path = args
    encode_mp4(render(spec), path)


def make_synthetic_dataset(out_dir: str | Path, kind: str = "temporal", num_classes: int = 8,
                           videos_per_class: int = 24, seed: int = 0, frames: int = 16, size: int = 64,
                           val_fraction: float = 0.25, workers: int = 2, progress: bool = False) -> dict[str, Path]:
    """Write videos/, train.txt, val.txt (list format `videos/x.mp4 label`), classes.txt (and pairs.json for the
    temporal kind); returns their paths."""
    names = {"temporal": TEMPORAL_CLASSES, "appearance": APPEARANCE_CLASSES}.get(kind)
    if names is None:
        raise ValueError(f"kind must be 'temporal' or 'appearance', got {kind!r}")
    if not 2 <= num_classes <= len(names) or (kind == "temporal" and num_classes % 2):
        parity = " (an even number)" if kind == "temporal" else ""
        raise ValueError(f"{kind} datasets have 2..{len(names)} classes{parity}, got {num_classes}")
    if size % 2:
        raise ValueError(f"size must be even for H.264 (yuv420p), got {size}")
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    n_val = max(1, round(videos_per_class * val_fraction))
    jobs, train_lines, val_lines = [], [], []
    for label in range(num_classes):
        for index in range(videos_per_class):
            rel = f"videos/{label:02d}_{index:04d}.mp4"
            jobs.append((VideoSpec(kind, label, index, seed, frames, size), str(out / rel)))
            (val_lines if index >= videos_per_class - n_val else train_lines).append(f"{rel} {label}\n")
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = pool.map(_write_one, jobs, chunksize=8)
            _drain(results, len(jobs), progress, f"synth {kind}")
    else:
        _drain(map(_write_one, jobs), len(jobs), progress, f"synth {kind}")
    paths = {"root": out, "train": out / "train.txt", "val": out / "val.txt", "classes": out / "classes.txt"}
    paths["train"].write_text("".join(train_lines))
    paths["val"].write_text("".join(val_lines))
    paths["classes"].write_text("".join(f"{n}\n" for n in names[:num_classes]))
    if kind == "temporal":
        paths["pairs"] = out / "pairs.json"
        paths["pairs"].write_text(json.dumps([[i, i + 1] for i in range(0, num_classes, 2)]))
    return paths


def _drain(results, total: int, progress: bool, description: str) -> None:
    if not progress:
        for _ in results:
            pass
        return
    from rich.progress import track

    for _ in track(results, total=total, description=description):
        pass


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("out", help="output folder")
    parser.add_argument("--kind", choices=("temporal", "appearance"), default="temporal",
                        help="temporal: classes differ only in the order of their frames (pairs of reversed "
                             "motions); appearance: a single frame tells the class (default temporal)")
    parser.add_argument("--classes", type=int, default=8, help="number of classes (default 8)")
    parser.add_argument("--videos-per-class", type=int, default=24, help="videos per class (default 24)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the videos (default 0)")
    parser.add_argument("--frames", type=int, default=16, help="frames per video (default 16)")
    parser.add_argument("--size", type=int, default=64, help="frame height and width (default 64)")
    parser.add_argument("--workers", type=int, default=2, help="processes encoding videos (default 2)")


def run(args: argparse.Namespace) -> int:
    paths = make_synthetic_dataset(args.out, args.kind, args.classes, args.videos_per_class, args.seed,
                                   args.frames, args.size, workers=args.workers, progress=True)
    print(f"wrote {args.kind} set: {paths['train']} and {paths['val']} ({args.classes} classes)")
    return 0
