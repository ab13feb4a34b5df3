"""The paper's sampling protocol, against worked examples computed by hand."""

import numpy as np
import pytest

from actionbench.data.sampling import (
    clip_indices,
    dense_test_indices,
    dense_train_indices,
    uniform_test_indices,
    uniform_train_indices,
)


def test_uniform_test_single_clip_takes_segment_middles():
    # 80 frames, 8 segments of 10: middles at 5, 15, ..., 75
    assert uniform_test_indices(80, 8).tolist() == [5, 15, 25, 35, 45, 55, 65, 75]
    # 30 frames: tick 3.75, int(1.875 + 3.75 k)
    assert uniform_test_indices(30, 8).tolist() == [1, 5, 9, 13, 16, 20, 24, 28]


def test_uniform_test_clips_shift_the_offset_minus_half_m_exclusive_to_half_m():
    # m = 10: shifts -4 .. 5 (the paper's code: range(-m//2 + 1, m//2 + 1))
    assert uniform_test_indices(80, 8, 0, 10).tolist() == [1, 11, 21, 31, 41, 51, 61, 71]
    assert uniform_test_indices(80, 8, 4, 10).tolist() == [5, 15, 25, 35, 45, 55, 65, 75]
    assert uniform_test_indices(80, 8, 9, 10).tolist() == [10, 20, 30, 40, 50, 60, 70, 79]  # 80 clipped to the last
    # m = 2 (SSV2 video level): shifts 0 and 1
    assert uniform_test_indices(80, 8, 0, 2).tolist() == [5, 15, 25, 35, 45, 55, 65, 75]
    assert uniform_test_indices(80, 8, 1, 2).tolist() == [6, 16, 26, 36, 46, 56, 66, 76]


def test_uniform_train_offsets_shared_or_independent():
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = uniform_train_indices(80, 8, rng)
        offsets = idx - np.arange(8) * 10
        assert (offsets == offsets[0]).all() and 0 <= offsets[0] < 10
    seen_different = False
    for _ in range(20):
        idx = uniform_train_indices(80, 8, rng, shared_offset=False)
        offsets = idx - np.arange(8) * 10
        assert ((offsets >= 0) & (offsets < 10)).all()
        seen_different |= len(set(offsets.tolist())) > 1
    assert seen_different


def test_dense_test_starts_spread_uniformly():
    # 100 frames, 8 frames every 8th (span 64): starts linspace(0, 36, 3) = 0, 18, 36
    assert dense_test_indices(100, 8, 8, 0, 3).tolist() == [0, 8, 16, 24, 32, 40, 48, 56]
    assert dense_test_indices(100, 8, 8, 1, 3).tolist() == [18, 26, 34, 42, 50, 58, 66, 74]
    assert dense_test_indices(100, 8, 8, 2, 3).tolist() == [36, 44, 52, 60, 68, 76, 84, 92]


def test_dense_train_random_start_and_wrap_in_short_videos():
    rng = np.random.default_rng(0)
    starts = {int(dense_train_indices(100, 8, 8, rng)[0]) for _ in range(200)}
    assert min(starts) == 0 and max(starts) == 36  # inclusive range 0 .. N - stride * f
    assert dense_train_indices(50, 8, 8, rng).tolist() == [0, 8, 16, 24, 32, 40, 48, 6]  # mod N


@pytest.mark.parametrize("video_frames", [1, 3, 7, 8, 9, 300])
@pytest.mark.parametrize("sampling", ["uniform", "dense"])
@pytest.mark.parametrize("train", [True, False])
def test_every_sampler_stays_in_range_for_short_and_long_videos(video_frames, sampling, train):
    rng = np.random.default_rng(1)
    for clip in range(4):
        idx = clip_indices(video_frames, 8, sampling=sampling, train=train, stride=4, clip_index=clip, num_clips=4,
                           rng=rng)
        assert idx.dtype == np.int64 and len(idx) == 8
        assert ((idx >= 0) & (idx < video_frames)).all()
        if sampling == "uniform":
            assert (np.diff(idx) >= 0).all()


def test_same_seed_same_clips():
    a = [uniform_train_indices(300, 8, np.random.default_rng(5)).tolist() for _ in range(2)]
    assert a[0] == a[1]
    with pytest.raises(ValueError, match="sampling"):
        clip_indices(10, 8, sampling="random", train=True)
