"""VideoClipDataset on real synthetic videos: shapes, views, determinism, workers, bad videos."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from actionbench.data.dataset import VideoClipDataset, build_dataset
from actionbench.data.formats import load_annotations
from actionbench.data.synthetic import make_synthetic_dataset


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn"), "temporal", 4, 6, seed=1, frames=12, size=48,
                                  workers=1)


def test_train_items_and_determinism(synthetic):
    ds = build_dataset(synthetic["train"], num_frames=4, size=32, mode="train", seed=3, flip=True)
    clip, label, video, view = ds[5]
    assert clip.shape == (3, 4, 32, 32) and clip.dtype == torch.float32
    assert label == ds.records[5].label and video == 5 and view == 0
    again = build_dataset(synthetic["train"], num_frames=4, size=32, mode="train", seed=3, flip=True)
    torch.testing.assert_close(again[5][0], clip)
    ds.set_epoch(1)
    assert not torch.equal(ds[5][0], clip)  # a new epoch jitters differently


def test_test_mode_views(synthetic):
    ds = build_dataset(synthetic["val"], num_frames=4, size=32, mode="test", num_clips=3, num_crops=3,
                       scale_size=32, sampling="dense", stride=2)
    assert len(ds) == len(ds.records) * 9
    items = [ds[i] for i in range(9)]
    assert {it[2] for it in items} == {0} and [it[3] for it in items] == list(range(9))
    assert not torch.equal(items[0][0], items[3][0])  # another clip


def test_data_loader_with_workers_matches_single_process(synthetic):
    ds = build_dataset(synthetic["train"], num_frames=4, size=32, mode="train", seed=0)
    batches = [torch.cat([b[0] for b in DataLoader(ds, batch_size=4, num_workers=w)]) for w in (0, 2)]
    torch.testing.assert_close(batches[0], batches[1])


def test_bad_videos_are_replaced_logged_once_and_counted(synthetic, tmp_path):
    ann = load_annotations(synthetic["train"])
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 50)
    bad = [ann.records[0].__class__(str(tmp_path / name), 0, name) for name in ("empty.mp4", "junk.mp4", "gone.mp4")]
    ds = VideoClipDataset(bad + ann.records, root=synthetic["root"], num_frames=4, size=32,
                          bad_video_log=tmp_path / "bad.tsv")
    loader = DataLoader(ds, batch_size=5, num_workers=2)
    seen = sum(len(batch[1]) for batch in loader)
    assert seen == len(ds)
    summary = ds.bad_video_summary()
    assert set(summary) == {str(tmp_path / n) for n in ("empty.mp4", "junk.mp4", "gone.mp4")}
    assert "empty file" in summary[str(tmp_path / "empty.mp4")]
    assert "no such file" in summary[str(tmp_path / "gone.mp4")]
    test_ds = VideoClipDataset(bad[:1] + ann.records[:1], root=synthetic["root"], num_frames=4, size=32, mode="test",
                               bad_video_log=tmp_path / "bad_test.tsv")
    assert test_ds[0][1] == -1 and test_ds[1][1] == ann.records[0].label  # reported, not replaced
    raw_ds = VideoClipDataset(bad[:1], num_frames=4, size=32, mode="test", bad_video_log=tmp_path / "bad_test.tsv",
                              normalize=False)
    assert raw_ds[0][0].dtype == torch.uint8  # batches with good videos' uint8 clips


def test_uint8_items_normalised_on_the_device_match_float_items(synthetic):
    from actionbench.data.transforms import normalize_clips

    kwargs = dict(num_frames=4, size=32, mode="train", seed=3, flip=True)
    as_float, raw = build_dataset(synthetic["train"], **kwargs), build_dataset(synthetic["train"], **kwargs,
                                                                             normalize=False)
    batch = next(iter(DataLoader(raw, batch_size=4, num_workers=2)))[0]
    assert batch.dtype == torch.uint8
    expected = torch.stack([as_float[i][0] for i in range(4)])
    torch.testing.assert_close(normalize_clips(batch, as_float.transform.mean, as_float.transform.std), expected)


def test_synthetic_temporal_pairs_are_time_reversals(synthetic):
    from actionbench.data.synthetic import _temporal_video

    for pair in range(4):  # with the same draws, the odd class is the even class played backwards
        forward = _temporal_video(2 * pair, np.random.default_rng(7), 10, 32)
        backward = _temporal_video(2 * pair + 1, np.random.default_rng(7), 10, 32)
        np.testing.assert_array_equal(forward[::-1], backward)
        assert not np.array_equal(forward, backward)
    lines = synthetic["train"].read_text().splitlines()
    assert len(lines) == 4 * 4 and (synthetic["root"] / lines[0].split()[0]).stat().st_size > 0


def test_synthetic_videos_encode_to_the_same_bytes_every_time(tmp_path):
    from actionbench.data.synthetic import VideoSpec, encode_mp4, render

    # videos whose bytes changed from one encode to the next with x264's macroblock tree on
    for kind, label, index in (("appearance", 0, 2), ("appearance", 0, 21), ("temporal", 0, 5), ("temporal", 3, 12)):
        frames = render(VideoSpec(kind, label, index, 1, 16, 64))
        encoded = set()
        for attempt in range(8):
            encode_mp4(frames, tmp_path / f"{attempt}.mp4")
            encoded.add((tmp_path / f"{attempt}.mp4").read_bytes())
        assert len(encoded) == 1, (kind, label, index)


def test_index_cache_is_filled_once_per_video_and_auto_uses_the_cache_home(synthetic, tmp_path, monkeypatch):
    from actionbench.data.decoding import resolve_index_cache

    ds = build_dataset(synthetic["train"], num_frames=4, size=32, mode="train", index_cache=tmp_path / "idx")
    first = torch.stack([ds[i][0] for i in range(len(ds))])
    assert len(list((tmp_path / "idx").rglob("*.idx"))) == len(ds.records)
    torch.testing.assert_close(torch.stack([ds[i][0] for i in range(len(ds))]), first)  # same clips when warm
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    assert resolve_index_cache("auto") == tmp_path / "home-cache" / "actionbench" / "video-index"
    assert resolve_index_cache("none") is None and resolve_index_cache(None) is None


def test_the_papers_frame_ranges_pick_their_frames(tmp_path):
    import simplejpeg

    folder = tmp_path / "frames" / "vid"
    folder.mkdir(parents=True)
    for i in range(1, 11):  # frame i is filled with 20 * i
        image = np.full((16, 16, 3), 20 * i, dtype=np.uint8)
        (folder / f"{i:05d}.jpg").write_bytes(simplejpeg.encode_jpeg(image, quality=100))
    (tmp_path / "ibm.txt").write_text("frames/vid 3 6 0\nframes/vid 8 12 1\n")  # the second runs past frame 10
    ds = build_dataset(tmp_path / "ibm.txt", num_frames=4, size=16, scale_size=16, mode="test", normalize=False)
    clip, label, _, _ = ds[0]
    assert label == 0 and clip[0, :, 8, 8].tolist() == pytest.approx([60, 80, 100, 120], abs=2)
    assert ds[1][1] == -1 and "frames 8-12, the video has 10" in next(iter(ds.bad_video_summary().values()))


def test_a_video_too_large_for_the_decoded_cache_is_decoded_in_full_once(synthetic, monkeypatch):
    import actionbench.data.dataset as dataset_module

    frames_read = []
    real_open = dataset_module.open_video

    def counting_open(*args, **kwargs):
        reader = real_open(*args, **kwargs)
        get_frames = reader.get_frames
        reader.get_frames = lambda indices: frames_read.append(len(indices)) or get_frames(indices)
        return reader

    monkeypatch.setattr(dataset_module, "open_video", counting_open)
    ds = build_dataset(synthetic["train"], num_frames=4, size=32, mode="train", seed=3, decoded_cache_mb=1)
    ds._decoded_budget = 1000  # bytes: smaller than any video
    first = ds._load_clip(0, 0, np.random.default_rng(0))
    again = ds._load_clip(0, 0, np.random.default_rng(0))
    assert np.array_equal(first, again) and not ds._decoded
    assert frames_read[0] > 4 and frames_read[1:] == [4]  # the whole video once, then only the clip's 4 frames


def test_decoded_cache_gives_the_same_clips_and_keeps_to_its_budget(synthetic):
    plain = build_dataset(synthetic["train"], num_frames=4, size=32, mode="train", seed=3)
    cached = build_dataset(synthetic["train"], num_frames=4, size=32, mode="train", seed=3, decoded_cache_mb=64)
    for epoch in (0, 1):  # the second epoch reads every video from memory
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(plain)):
            assert torch.equal(plain[i][0], cached[i][0])
    assert len(cached._decoded) == len(cached.records) and not plain._decoded
    test_plain = build_dataset(synthetic["val"], num_frames=4, size=32, mode="test", num_clips=2, scale_size=32)
    test_cached = build_dataset(synthetic["val"], num_frames=4, size=32, mode="test", num_clips=2, scale_size=32,
                                decoded_cache_mb=64)
    assert all(torch.equal(test_plain[i][0], test_cached[i][0]) for i in range(len(test_plain)))
    one_video = next(iter(cached._decoded.values())).nbytes
    small = build_dataset(synthetic["train"], num_frames=4, size=32, mode="train", seed=3, decoded_cache_mb=1)
    for i in range(len(small)):
        small[i]
    assert len(small._decoded) == min(len(small.records), (1 << 20) // one_video)  # stops at the budget
