"""Which frames make a clip: the paper's uniform (TSN-style segments) and dense sampling, train and test.

All indices are 0-based positions in display order, returned as int64 arrays of length `num_frames`; randomness
comes only from the `np.random.Generator` given, so a seed fixes a run. Videos shorter than a clip repeat frames
instead of failing.
"""

from __future__ import annotations

import numpy as np

_INDEX = np.int64


def _check(video_frames: int, num_frames: int) -> None:
    if video_frames < 1:
        raise ValueError(f"a video needs at least one frame to sample from, got {video_frames}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be positive, got {num_frames}")


def uniform_train_indices(video_frames: int, num_frames: int, rng: np.random.Generator,
                          shared_offset: bool = True) -> np.ndarray:
    """One frame from each of `num_frames` equal segments, at a random position in the segment (temporal jitter).

    `shared_offset=True` is the paper's code: one offset drawn once and used in every segment. `False` is TSN's
    original: an independent offset per segment.
    """
    _check(video_frames, num_frames)
    segment = video_frames // num_frames
    if segment == 0:  # shorter than the clip: every frame, some repeated, in order
        return (np.arange(num_frames) * video_frames // num_frames).astype(_INDEX)
    size = 1 if shared_offset else num_frames
    offsets = rng.integers(0, segment, size=size)
    return (np.arange(num_frames) * segment + offsets).astype(_INDEX)


def uniform_test_indices(video_frames: int, num_frames: int, clip_index: int = 0, num_clips: int = 1) -> np.ndarray:
    """Clip `clip_index` of `num_clips`: segment centres shifted by s frames, -m/2 < s <= m/2 (the paper's code).

    With one clip this is the middle frame of every segment (the paper's clip-level protocol).
    """
    _check(video_frames, num_frames)
    if not 0 <= clip_index < num_clips:
        raise ValueError(f"clip_index {clip_index} out of range for {num_clips} clips")
    shift = (-num_clips) // 2 + 1 + clip_index  # Python floor division, as the paper code: range(-m//2 + 1, ...)
    tick = video_frames / num_frames
    indices = (tick / 2 + shift + tick * np.arange(num_frames)).astype(_INDEX)
    return np.clip(indices, 0, video_frames - 1)


def dense_train_indices(video_frames: int, num_frames: int, stride: int, rng: np.random.Generator) -> np.ndarray:
    """`num_frames` frames `stride` apart from a random start; wraps around (mod N) in short videos."""
    _check(video_frames, num_frames)
    start = rng.integers(0, max(0, video_frames - stride * num_frames) + 1)
    return ((start + stride * np.arange(num_frames)) % video_frames).astype(_INDEX)


def dense_test_indices(video_frames: int, num_frames: int, stride: int, clip_index: int = 0,
                       num_clips: int = 1) -> np.ndarray:
    """Clip `clip_index` of `num_clips` whose starts are spread uniformly over the video (the first starts at 0)."""
    _check(video_frames, num_frames)
    if not 0 <= clip_index < num_clips:
        raise ValueError(f"clip_index {clip_index} out of range for {num_clips} clips")
    last_start = max(1, 1 + video_frames - stride * num_frames) - 1
    start = int(np.linspace(0, last_start, num_clips)[clip_index])
    return ((start + stride * np.arange(num_frames)) % video_frames).astype(_INDEX)


def clip_indices(video_frames: int, num_frames: int, *, sampling: str, train: bool, stride: int = 1,
                 clip_index: int = 0, num_clips: int = 1, rng: np.random.Generator | None = None) -> np.ndarray:
    """Dispatch to the four samplers: `sampling` is "uniform" or "dense"."""
    if sampling == "uniform":
        if train:
            return uniform_train_indices(video_frames, num_frames, rng)
        return uniform_test_indices(video_frames, num_frames, clip_index, num_clips)
    if sampling == "dense":
        if train:
            return dense_train_indices(video_frames, num_frames, stride, rng)
        return dense_test_indices(video_frames, num_frames, stride, clip_index, num_clips)
    raise ValueError(f"sampling must be 'uniform' or 'dense', got {sampling!r}")
