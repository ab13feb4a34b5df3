"""Frame-exact decoding on real files, including those popular readers get wrong."""

import os
from types import SimpleNamespace

import numpy as np
import pytest

from actionbench.data import mp4index
from actionbench.data.decoding import FrameFolderReader, VideoDecodeError, VideoReader, decode_all, frames, open_video
from actionbench.data.mp4index import mp4_frame_index
from tests.videos import cut_with_edit_list, write_video


def _check_every_access_pattern(path, expect_frames=None):
    truth = decode_all(path)
    with VideoReader(path) as reader:  # the index from the MP4 sample table, when taken, equals the demuxed one
        reader._reopen()
        assert (reader._pts, reader._keyframe_pts) == reader._demux_index()
    cache = path.parent / f"index-cache-{path.name}"
    # without an index cache, then with one: cold (index built and written), warm (index read back)
    for kwargs in ({}, {"index_cache": cache}, {"index_cache": cache}):
        with open_video(path, **kwargs) as reader:
            _check_reader(reader, truth, expect_frames)
    assert len(list(cache.rglob("*.idx"))) == 1


def _check_reader(reader, truth, expect_frames):
    path = reader.path
    assert len(reader) == len(truth)
    if expect_frames is not None:
        assert len(reader) == expect_frames
    n = len(reader)
    rng = np.random.default_rng(0)
    patterns = [
        list(range(n)),  # everything
        [n - 1, 0, n // 2, n // 2],  # unsorted, repeated
        list(range(0, n, 7)),  # uniform-like, forward
        list(range(n // 3, n // 3 + 8)),  # dense
        sorted(rng.choice(n, size=min(8, n), replace=False).tolist()),
        [n - 1],  # last frame alone (seek to the last keyframe)
        [1, 2],  # right after the first frames: decoded forward
    ]
    # decode forward across nearby keyframes, or seek to every target's keyframe; with and without skipping
    for seek_gap, skip in ((16, True), (0, True), (4, False)):
        reader.seek_gap, reader.skip_nonref = seek_gap, skip
        for indices in patterns:
            got = reader.get_frames(indices)
            assert got.dtype == np.uint8 and got.shape == (len(indices), *truth.shape[1:])
            np.testing.assert_array_equal(got, truth[indices],
                                          err_msg=f"{path} frames {indices} gap {seek_gap} skip {skip}")


def test_h264_with_b_frames_at_two_gop_sizes(tmp_path):
    _check_every_access_pattern(write_video(tmp_path / "g12.mp4", 60, gop=12, bframes=3), 60)
    with VideoReader(tmp_path / "g12.mp4") as reader:
        reader.get_frames([5, 50])
        assert reader._seekable  # served by keyframe seeking, not by the sequential fallback
        reader._reopen()
        assert mp4_frame_index(reader.path, reader._container, reader._stream) is not None  # no full demux
    _check_every_access_pattern(write_video(tmp_path / "g250.mp4", 60, gop=250, bframes=2), 60)


def test_sample_table_disagreeing_with_the_packets_is_not_trusted(tmp_path, monkeypatch):
    path = write_video(tmp_path / "g10.mp4", 30, gop=10, bframes=2)
    offsets = mp4index._composition_offsets
    monkeypatch.setattr(mp4index, "_composition_offsets", lambda moov, spans: offsets(moov, spans) + 1)
    with VideoReader(path) as reader:  # the index comes from demuxing the whole file instead
        np.testing.assert_array_equal(reader.get_frames(range(30)), decode_all(path))
        old_pyav_stream = SimpleNamespace(id=reader._stream.id)  # no index_entries: demux
        assert mp4_frame_index(reader.path, reader._container, old_pyav_stream) is None


def test_mp4_whose_video_is_the_second_track(tmp_path):
    path = write_video(tmp_path / "with_audio.mp4", 40, gop=10, bframes=3, audio=True)
    with VideoReader(path) as reader:
        assert reader._stream.index == 1
        reader._reopen()
        assert mp4_frame_index(reader.path, reader._container, reader._stream) is not None
    _check_every_access_pattern(path, 40)


def test_fragmented_mp4_is_demuxed(tmp_path):
    path = write_video(tmp_path / "frag.mp4", 40, gop=10, bframes=2,
                       muxer_options={"movflags": "frag_keyframe+empty_moov"})
    with VideoReader(path) as reader:
        reader._reopen()
        assert mp4_frame_index(reader.path, reader._container, reader._stream) is None
    _check_every_access_pattern(path, 40)


def test_open_gop_h264(tmp_path):
    _check_every_access_pattern(write_video(tmp_path / "open.mp4", 72, gop=12, bframes=3, open_gop=True), 72)


def test_mp4_cut_by_stream_copy_has_only_the_frames_after_the_cut(tmp_path):
    source = write_video(tmp_path / "source.mp4", 60, gop=20, bframes=2)
    cut = cut_with_edit_list(source, tmp_path / "cut.mp4", start_frame=25)
    truth = decode_all(cut)
    assert len(truth) == 35  # the 5 frames between the keyframe and the cut are hidden by the edit list
    _check_every_access_pattern(cut, 35)
    np.testing.assert_array_equal(truth, decode_all(source)[25:])


def test_variable_frame_rate(tmp_path):
    path = write_video(tmp_path / "vfr.mp4", 50, gop=10, durations=[33, 20, 50, 33, 66])
    _check_every_access_pattern(path, 50)


def test_mpeg_ts_falls_back_to_sequential_decoding(tmp_path):
    path = write_video(tmp_path / "stream.ts", 45, gop=10, container_format="mpegts")
    with VideoReader(path) as reader:
        assert not reader._seekable
    _check_every_access_pattern(path, 45)


def test_webm_vp9(tmp_path):
    _check_every_access_pattern(write_video(tmp_path / "clip.webm", 40, codec="libvpx-vp9", gop=10), 40)


def test_index_cache_follows_the_file_and_survives_bad_entries(tmp_path, caplog):
    path = write_video(tmp_path / "a.mp4", 30, gop=10)
    cache = tmp_path / "cache"
    with VideoReader(path, index_cache=cache) as reader:
        index = (list(reader._pts), list(reader._keyframe_pts))
    entry = next(cache.rglob("*.idx"))
    entry.write_bytes(b"\x01" * 20)  # damaged: rebuilt, not trusted
    with VideoReader(path, index_cache=cache) as reader:
        assert (reader._pts, reader._keyframe_pts) == index
    write_video(path, 20, gop=10)  # the video changes: a new entry, the right frame count
    with VideoReader(path, index_cache=cache) as reader:
        assert len(reader) == 20
    assert len(list(cache.rglob("*.idx"))) == 2
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    with VideoReader(path, index_cache=blocked) as reader:  # cannot write: warns, still reads
        assert len(reader.get_frames([0, 19])) == 2


def test_resize_at_conversion(tmp_path):
    path = write_video(tmp_path / "a.mp4", 12, width=64, height=48)
    with open_video(path, short_side=24) as reader:
        assert reader.get_frames([0, 5]).shape == (2, 24, 32, 3)


def test_broken_files_raise_errors_naming_them(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="empty.mp4: empty file"):
        open_video(tmp_path / "empty.mp4")
    with pytest.raises(VideoDecodeError, match="missing.mp4: no such file"):
        open_video(tmp_path / "missing.mp4")
    good = write_video(tmp_path / "good.mp4", 30).read_bytes()
    (tmp_path / "garbage.mp4").write_bytes(b"\x00" * 100 + good[-500:])
    with pytest.raises(VideoDecodeError, match="garbage.mp4"):
        open_video(tmp_path / "garbage.mp4").get_frames([0])
    with open_video(tmp_path / "good.mp4") as reader, pytest.raises(IndexError, match="frame 30"):
        reader.get_frames([30])


def test_frame_folder_reader_simplejpeg_and_pil(tmp_path):
    from PIL import Image

    truth = decode_all(write_video(tmp_path / "a.mp4", 10))
    folder = tmp_path / "frames" / "a"
    folder.mkdir(parents=True)
    for i, image in enumerate(truth, start=1):  # 1-based on disk
        Image.fromarray(image).save(folder / f"img_{i:05d}.jpg", quality=95)
    with open_video(folder) as reader:
        assert len(reader) == 10
        got = reader.get_frames([0, 9, 9])
    assert got.shape == (3, 48, 64, 3)
    assert np.abs(got[1].astype(int) - truth[9].astype(int)).mean() < 4  # JPEG-close to frame 9
    assert np.abs(got[0].astype(int) - truth[9].astype(int)).mean() > 10  # and clearly not another frame
    with FrameFolderReader(folder, use_pil=True) as reader:
        via_pil = reader.get_frames([0, 9, 9])
    assert np.abs(via_pil.astype(int) - got.astype(int)).max() <= 1  # both libjpeg-turbo underneath
    with FrameFolderReader(folder, short_side=24) as reader:
        assert reader.get_frames([3, 4]).shape == (2, 24, 32, 3)


def test_frame_folder_with_frames_of_two_sizes_names_the_file(tmp_path):
    from PIL import Image

    folder = tmp_path / "v"
    folder.mkdir()
    Image.new("RGB", (64, 48), "red").save(folder / "00001.jpg")
    Image.new("RGB", (32, 48), "red").save(folder / "00002.jpg")
    Image.new("RGB", (64, 48), "blue").save(folder / "00003.png")
    with FrameFolderReader(folder) as reader:
        assert reader.get_frames([2, 0])[0, 0, 0, 2] > 200  # the PNG, blue
        with pytest.raises(VideoDecodeError, match="00002.jpg: frame is 32x48"):
            reader.get_frames([0, 1])


def test_frame_folder_names_in_natural_order_and_remembered_until_the_folder_changes(tmp_path):
    from PIL import Image

    folder = tmp_path / "v"
    folder.mkdir()
    for i in range(1, 13):  # unpadded numbers: 10.jpg sorts after 9.jpg, not after 1.jpg
        Image.new("RGB", (16, 16), (20 * i, 0, 0)).save(folder / f"{i}.jpg", quality=100)
    red = [int(FrameFolderReader(folder).get_frames([i])[0, 8, 8, 0]) for i in range(12)]
    assert red == sorted(red) and abs(red[9] - 200) <= 3
    assert isinstance(FrameFolderReader(folder)._names, frames._NumberedNames)  # remembered as a run
    Image.new("RGB", (16, 16), "blue").save(folder / "13.jpg")  # a frame added, even within the same mtime tick
    assert len(FrameFolderReader(folder)) == 13
    (folder / "13.jpg").unlink()
    (folder / "12.jpg").unlink()
    assert len(FrameFolderReader(folder)) == 11
    (folder / "x.jpg").write_bytes((folder / "1.jpg").read_bytes())
    os.utime(folder, ns=(1, 1))  # an irregular folder is listed, not remembered
    reader = FrameFolderReader(folder)
    assert len(reader) == 12 and reader._names[-1] == "x.jpg" and isinstance(reader._names, list)
