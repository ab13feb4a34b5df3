"""Clip transforms on uint8 `(T, H, W, 3)` tensors: the same crop for every frame, float `(C, T, H, W)` out.

Crops are cut from the uint8 frames first and resized once for the whole clip (bilinear, antialiased when
shrinking), then normalised with the model's mean/std; with `normalize=False` the clip stays uint8 and
`normalize_clips` finishes the job on the batch, on the device.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

MULTI_SCALES = (1.0, 0.875, 0.75, 0.66)


def _resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (T, 3, h, w) -> uint8 (T, 3, H, W), bilinear with antialiasing: torch's uint8 path is ~15x faster
    than resizing in float32 here, and rounds to the same 8 bits the frames came in."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=True)


def _to_clip(crop: torch.Tensor, size: tuple[int, int], mean, std) -> torch.Tensor:
    """uint8 (T, h, w, 3) -> (3, T, size_h, size_w): normalised float, or uint8 when `mean` is None."""
    frames = _resize_frames(crop.permute(0, 3, 1, 2), size)  # a (T, 3, h, w) view: channels-last strides
    if mean is None:
        return frames.transpose(0, 1).contiguous()
    out = torch.empty(3, frames.shape[0], *size).copy_(frames.transpose(0, 1))  # layout and dtype in one copy
    return _normalize_(out, mean, std)


@functools.lru_cache(maxsize=64)
def _affine(mean: tuple, std: tuple, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and shift of the normalisation, made once per device (a tensor built from a list on a GPU every batch
    is a blocking host-to-device copy)."""
    std_t = torch.tensor(std, dtype=torch.float64)
    scale = (1.0 / (255.0 * std_t)).to(device=device, dtype=dtype).view(3, 1, 1, 1)
    shift = (-torch.tensor(mean, dtype=torch.float64) / std_t).to(device=device, dtype=dtype).view(3, 1, 1, 1)
    return scale, shift


def _normalize_(clips: torch.Tensor, mean, std) -> torch.Tensor:
    """In place on float clips (..., 3, T, H, W) holding 0-255 values."""
    scale, shift = _affine(tuple(mean), tuple(std), clips.device, clips.dtype)
    return clips.mul_(scale).add_(shift)


def normalize_clips(clips: torch.Tensor, mean, std, dtype: torch.dtype = torch.float32,
                    channel_order: str = "RGB") -> torch.Tensor:
    """uint8 RGB clips (..., 3, T, H, W), e.g. a batch already on the GPU, -> normalised `dtype`.

    Datasets built with `normalize=False` hand over uint8 clips: a quarter of float32's bytes through the
    data-loader workers' shared memory and the host-to-device copy; this finishes the transform on the device.
    `channel_order="BGR"` reverses the channels first, for models trained on BGR input (mean/std in that order).
    """
    if channel_order == "BGR":
        clips = clips.flip(-4)
    return _normalize_(clips.to(dtype), mean, std)


def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    scale = short_side / min(height, width)
    return max(short_side, round(height * scale)), max(short_side, round(width * scale))


def _resize_uint8(clip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (T, h, w, 3) -> uint8 (T, H, W, 3)."""
    return _resize_frames(clip.permute(0, 3, 1, 2), size).permute(0, 2, 3, 1)


def multiscale_offsets(height: int, width: int, crop_h: int, crop_w: int) -> list[tuple[int, int]]:
    """TSN's 13 fixed crop positions (corners, centre, edge middles, quarter points) as (top, left)."""
    h_step, w_step = (height - crop_h) / 4, (width - crop_w) / 4
    grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2), (2, 0), (2, 4), (4, 2), (0, 2), (1, 1), (1, 3), (3, 1), (3, 3)]
    return [(int(round(i * h_step)), int(round(j * w_step))) for i, j in grid]


def load_flip_map(spec: str | bool | None) -> tuple[bool, dict[int, int]]:
    """Flip policy: False / "false" (never), True / "true" (flip, labels kept), or a path to a class-swap map.

    A map file is JSON `{"3": 5, ...}` or lines `3 5`; pairs apply both ways. Flipping a direction-sensitive class
    (SSV2's "left to right") without swapping its label teaches the model wrong labels: the paper's code does it.
    """
    if spec in (None, False, "false", "False", "no", ""):
        return False, {}
    if spec in (True, "true", "True", "yes"):
        return True, {}
    path = Path(str(spec))
    if not path.is_file():
        raise FileNotFoundError(f"flip class-swap map {path} does not exist (data.flip: false | true | path)")
    text = path.read_text()
    if text.lstrip().startswith("{"):
        pairs = json.loads(text).items()
    else:
        pairs = (line.split() for line in text.splitlines() if line.strip())
    swap: dict[int, int] = {}
    for a, b in pairs:
        swap[int(a)], swap[int(b)] = int(b), int(a)
    return True, swap


class _ClipTransform:
    """What both transforms share: the last step, from a uint8 crop to the clip the model (or device) takes."""

    size: int
    mean: tuple
    std: tuple
    normalize: bool

    def _finish(self, crop: torch.Tensor) -> torch.Tensor:
        """Resize to `size` x `size`, lay out (3, T, H, W); normalised float, or uint8 without `normalize`."""
        mean = self.mean if self.normalize else None
        return _to_clip(crop, (self.size, self.size), mean, self.std)


class TrainTransform(_ClipTransform):
    """Multi-scale crop (TSN) or random short side in a range + random crop; horizontal flip by policy."""

    def __init__(self, size: int, mean, std, *, scales=MULTI_SCALES, short_side_range: tuple[int, int] | None = None,
                 flip: str | bool | None = False, max_distort: int = 1, normalize: bool = True) -> None:
        self.size, self.mean, self.std, self.normalize = size, tuple(mean), tuple(std), normalize
        self.scales, self.short_side_range, self.max_distort = tuple(scales), short_side_range, max_distort
        self.flip, self.swap = load_flip_map(flip)

    def _multiscale_crop(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        _, height, width, _ = clip.shape
        base = min(height, width)
        sizes = [int(base * s) for s in self.scales]
        sizes = [self.size if abs(s - self.size) < 3 else s for s in sizes]
        pairs = [(h, w) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= self.max_distort]
        crop_h, crop_w = pairs[rng.integers(len(pairs))]
        offsets = multiscale_offsets(height, width, crop_h, crop_w)
        top, left = offsets[rng.integers(len(offsets))]
        return clip[:, top : top + crop_h, left : left + crop_w]

    def _short_side_crop(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        low, high = self.short_side_range
        height, width = short_side_size(clip.shape[1], clip.shape[2], int(rng.integers(low, high + 1)))
        clip = _resize_uint8(clip, (height, width))
        top, left = int(rng.integers(0, height - self.size + 1)), int(rng.integers(0, width - self.size + 1))
        return clip[:, top : top + self.size, left : left + self.size]

    def __call__(self, clip: torch.Tensor, label: int, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        crop = self._short_side_crop(clip, rng) if self.short_side_range else self._multiscale_crop(clip, rng)
        if self.flip and rng.random() < 0.5:
            crop = crop.flip(2)
            label = self.swap.get(label, label)
        return self._finish(crop), label


class TestTransform(_ClipTransform):
    """Resize the shorter side to `scale_size`, then 1 (centre), 3 (along the long side), 5 (corners + centre) or
    10 (5 and their flips) crops of `size`; `view` picks the crop."""

    __test__ = False  # not a pytest class

    def __init__(self, size: int, mean, std, *, num_crops: int = 1, scale_size: int | None = None,
                 normalize: bool = True) -> None:
        if num_crops not in (1, 3, 5, 10):
            raise ValueError(f"num_crops must be 1, 3, 5 or 10, got {num_crops}")
        self.size, self.mean, self.std, self.normalize = size, tuple(mean), tuple(std), normalize
        self.num_crops, self.scale_size = num_crops, scale_size or size

    def crop_box(self, height: int, width: int, view: int) -> tuple[int, int, bool]:
        """(top, left, flipped) of crop `view` in a frame of the resized size."""
        s = self.size
        center = ((height - s) // 2, (width - s) // 2)
        if self.num_crops == 1:
            return (*center, False)
        if self.num_crops == 3:
            if width >= height:
                return (center[0], [0, center[1], width - s][view], False)
            return ([0, center[0], height - s][view], center[1], False)
        boxes = [(0, 0), (0, width - s), (height - s, 0), (height - s, width - s), center]
        return (*boxes[view % 5], view >= 5)

    def __call__(self, clip: torch.Tensor, view: int = 0) -> torch.Tensor:
        height, width = short_side_size(clip.shape[1], clip.shape[2], self.scale_size)
        if (height, width) != tuple(clip.shape[1:3]):
            clip = _resize_uint8(clip, (height, width))
        top, left, flipped = self.crop_box(height, width, view)
        crop = clip[:, top : top + self.size, left : left + self.size]
        if flipped:
            crop = crop.flip(2)
        return self._finish(crop)
