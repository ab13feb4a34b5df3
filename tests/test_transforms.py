"""Clip transforms: crop geometry, flips with label swaps, normalisation."""

import json

import numpy as np
import pytest
import torch

from actionbench.data.transforms import (
    TestTransform,
    TrainTransform,
    load_flip_map,
    multiscale_offsets,
    normalize_clips,
)

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _clip(t=4, h=60, w=80):
    # pixel value encodes the column, so crops and flips can be located
    cols = torch.arange(w, dtype=torch.uint8).view(1, 1, w, 1).expand(t, h, w, 3)
    return cols.contiguous()


def test_test_transform_center_and_three_crops_along_the_long_side():
    clip = _clip()
    one = TestTransform(40, MEAN, STD, scale_size=60)
    out = one(clip)
    assert out.shape == (3, 4, 40, 40)
    left_column = (out[0, 0, 0, 0] * 0.25 + 0.5) * 255
    assert left_column.round() == 20  # centre crop of an 80-wide frame starts at column 20
    three = TestTransform(40, MEAN, STD, num_crops=3, scale_size=60)
    starts = [round(float((three(clip, v)[0, 0, 0, 0] * 0.25 + 0.5) * 255)) for v in range(3)]
    assert starts == [0, 20, 40]
    assert three.crop_box(100, 60, 2) == (60, 10, False)  # portrait: crops along the height


def test_test_transform_five_and_ten_crops():
    ten = TestTransform(40, MEAN, STD, num_crops=10, scale_size=60)
    assert ten.crop_box(60, 80, 1) == (0, 40, False)
    assert ten.crop_box(60, 80, 6) == (0, 40, True)
    flipped = ten(_clip(), 5)  # top-left crop, mirrored: first column is the crop's last (39)
    assert round(float((flipped[0, 0, 0, 0] * 0.25 + 0.5) * 255)) == 39
    with pytest.raises(ValueError):
        TestTransform(40, MEAN, STD, num_crops=4)


def test_normalisation_values():
    clip = torch.full((2, 8, 8, 3), 255, dtype=torch.uint8)
    out = TestTransform(8, MEAN, STD)(clip)
    torch.testing.assert_close(out, torch.full((3, 2, 8, 8), 2.0))


def test_uint8_output_normalised_later_matches_the_float_output():
    clip = torch.randint(0, 256, (4, 60, 80, 3), dtype=torch.uint8)
    for make in (lambda **kw: TestTransform(40, MEAN, STD, num_crops=3, scale_size=50, **kw),
                 lambda **kw: TrainTransform(40, MEAN, STD, flip=True, **kw)):
        as_float, as_uint8 = make(), make(normalize=False)
        for view in range(3):
            if isinstance(as_float, TestTransform):
                expected, raw = as_float(clip, view), as_uint8(clip, view)
            else:  # same random crop and flip from the same seed
                expected, raw = as_float(clip, 0, np.random.default_rng(view))[0], as_uint8(
                    clip, 0, np.random.default_rng(view))[0]
            assert raw.dtype == torch.uint8 and raw.shape == (3, 4, 40, 40)
            batch = normalize_clips(raw.unsqueeze(0), MEAN, STD)  # as on the device, batched
            torch.testing.assert_close(batch[0], expected)


def test_multiscale_offsets_are_tsn_grid():
    offsets = multiscale_offsets(100, 120, 60, 80)
    assert len(offsets) == 13 and (0, 0) in offsets and (40, 40) in offsets and (20, 20) in offsets


def test_train_transform_sizes_and_same_crop_for_every_frame():
    clip = torch.randint(0, 255, (1, 64, 96, 3), dtype=torch.uint8).expand(6, 64, 96, 3).contiguous()
    rng = np.random.default_rng(0)
    for transform in (TrainTransform(32, MEAN, STD), TrainTransform(32, MEAN, STD, short_side_range=(40, 48))):
        out, label = transform(clip, 3, rng)
        assert out.shape == (3, 6, 32, 32) and label == 3
        assert all(torch.equal(out[:, 0], out[:, t]) for t in range(6))


def test_flip_policies(tmp_path):
    clip = _clip(2, 40, 40)
    never = TrainTransform(40, MEAN, STD, scales=(1.0,), flip=False)
    always_ok = TrainTransform(40, MEAN, STD, scales=(1.0,), flip=True)
    rng = np.random.default_rng(0)
    def is_flipped(out):
        return bool(out[0, 0, 0, 0] > out[0, 0, 0, -1])

    assert not any(is_flipped(never(clip, 1, rng)[0]) for _ in range(10))  # column 0 stays left
    flipped = [always_ok(clip, 1, rng) for _ in range(40)]
    assert any(is_flipped(out) for out, _ in flipped) and all(label == 1 for _, label in flipped)
    (tmp_path / "swap.json").write_text(json.dumps({"1": 2}))
    swapping = TrainTransform(40, MEAN, STD, scales=(1.0,), flip=str(tmp_path / "swap.json"))
    for _ in range(40):
        out, label = swapping(clip, 1, rng)
        assert label == (2 if is_flipped(out) else 1)  # a flipped "left to right" becomes "right to left"
    (tmp_path / "swap.txt").write_text("4 7\n")
    assert load_flip_map(str(tmp_path / "swap.txt")) == (True, {4: 7, 7: 4})
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_flip_map("nope.json")
