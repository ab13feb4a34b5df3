"""`actionbench extract`, `actionbench transcode` and `actionbench data check` on generated videos."""

import csv
from types import SimpleNamespace

import av
import numpy as np

from actionbench.cli import main
from actionbench.data.decoding import VideoReader, decode_all, open_video
from actionbench.data.extract import _in_display_order
from tests.videos import write_video


def _videos(tmp_path):
    src = tmp_path / "src" / "class_a"
    src.mkdir(parents=True)
    write_video(src / "one.mp4", 20, width=64, height=48, gop=50)
    write_video(src / "two.mp4", 12, width=48, height=64, gop=50)
    return tmp_path / "src"


def test_extract_frames_resumable(tmp_path, capsys):
    src = _videos(tmp_path)
    out = tmp_path / "frames"
    (out / "class_a").mkdir(parents=True)
    (out / "class_a" / ".one.partial-999").mkdir()  # a crashed run's leftover: never taken for a result
    assert main(["extract", str(src), str(out), "--short-side", "32", "--workers", "2"]) == 0
    with open_video(out / "class_a" / "one") as reader:
        assert len(reader) == 20 and reader.get_frames([0]).shape == (1, 32, 42, 3)
    assert len(list((out / "class_a" / "two").iterdir())) == 12
    truth = decode_all(src / "class_a" / "two.mp4")
    with open_video(out / "class_a" / "two") as reader:
        assert reader.get_frames([5]).shape == (1, 42, 32, 3)
    with open_video(out / "class_a" / "one") as frames:
        extracted = frames.get_frames(range(20)).astype(int)
    with av.open(str(src / "class_a" / "one.mp4")) as video:  # at extract's size: even sides for 4:2:0
        resized = np.stack([f.to_ndarray(format="rgb24", width=42, height=32) for f in video.decode(video=0)])
    errors = np.abs(extracted - resized).mean(axis=(1, 2, 3))
    assert errors.max() < 4, errors  # every frame in its place, JPEG loss only
    assert truth.shape[0] == 12
    assert main(["extract", str(src), str(out), "--short-side", "32"]) == 0
    assert "0 done, 2 already there" in capsys.readouterr().out


def test_frames_decoded_out_of_display_order_come_out_in_it():
    frames = [SimpleNamespace(pts=p) for p in (0, 2, 1, None, 3, 5, 4)]
    assert [f.pts for f in _in_display_order(frames, window=2)] == [0, 1, 2, 3, 4, 5]


def test_transcode_short_side_and_gop(tmp_path, capsys):
    src = _videos(tmp_path)
    out = tmp_path / "small"
    assert main(["transcode", str(src), str(out), "--short-side", "32", "--gop", "6", "--workers", "1"]) == 0
    with VideoReader(out / "class_a" / "one.mp4") as reader:
        assert len(reader) == 20 and reader.get_frames([19]).shape == (1, 32, 42, 3)
        keys = reader._keyframe_pts
        gaps = np.diff([reader._pts.index(k) for k in keys] + [len(reader)])
        assert len(keys) >= 3 and gaps.max() <= 6
    assert main(["transcode", str(src), str(out), "--short-side", "32"]) == 0
    assert "0 done, 2 already there" in capsys.readouterr().out


def test_data_check_reports_every_bad_entry(tmp_path, capsys):
    src = _videos(tmp_path)
    (src / "empty.mp4").write_bytes(b"")
    good = (src / "class_a" / "one.mp4").read_bytes()
    (src / "truncated.mp4").write_bytes(good[: len(good) // 3])
    (src / "list.txt").write_text("class_a/one.mp4 0\nclass_a/two.mp4 1\nempty.mp4 0\ntruncated.mp4 1\nmissing.mp4 0\n")
    report = tmp_path / "report.csv"
    assert main(["data", "check", str(src / "list.txt"), "--report", str(report), "--min-frames", "13"]) == 1
    rows = {row["path"].rsplit("/", 1)[-1]: row["problem"] for row in csv.DictReader(report.open())}
    assert set(rows) == {"two.mp4", "empty.mp4", "truncated.mp4", "missing.mp4"}
    assert rows["two.mp4"].startswith("too short") and rows["empty.mp4"] == "zero-byte file"
    assert rows["missing.mp4"] == "missing" and rows["truncated.mp4"].startswith("unreadable")
    assert "5 videos checked, 4 bad" in capsys.readouterr().out


def test_shards_of_a_check_merge_into_one_report_in_any_order_and_again(tmp_path, capsys):
    src = _videos(tmp_path)
    (src / "empty.mp4").write_bytes(b"")
    (src / "list.txt").write_text("class_a/one.mp4 0\nclass_a/two.mp4 1\nempty.mp4 0\nmissing.mp4 0\n")
    whole, merged = tmp_path / "whole.csv", tmp_path / "merged.csv"
    assert main(["data", "check", str(src / "list.txt"), "--report", str(whole), "--min-frames", "13"]) == 1
    for shard in ("1/3", "0/3", "2/3", "1/3"):  # any order, one twice (a requeued array task)
        main(["data", "check", str(src / "list.txt"), "--report", str(merged), "--min-frames", "13",
              "--shard", shard])
    out = capsys.readouterr().out
    assert "shard 0/3: 2 videos checked" in out and "shard 2/3: 1 videos checked" in out

    def problems(path):
        return sorted((r["path"], r["problem"]) for r in csv.DictReader(path.open()))

    assert problems(merged) == problems(whole) and len(problems(merged)) == 3  # each bad video once
    for bad in ("1", "3/3", "a/b"):
        assert main(["data", "check", str(src / "list.txt"), "--shard", bad]) == 2
    assert main(["data", "check", str(src / "list.txt"), "--report", str(merged), "--shard", "0/2"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4 and "holds shards of 3, not of 2" in errors[-1]


def test_sharded_extraction_writes_what_one_run_writes(tmp_path, capsys):
    src = _videos(tmp_path)
    for shard in ("0/2", "1/2"):
        assert main(["extract", str(src), str(tmp_path / "sharded"), "--short-side", "32", "--shard", shard]) == 0
    assert main(["extract", str(src), str(tmp_path / "once"), "--short-side", "32"]) == 0

    def files(root):
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    assert files(tmp_path / "sharded") == files(tmp_path / "once") and len(files(tmp_path / "once")) == 32
    assert "extract (shard 1/2): 1 done" in capsys.readouterr().out
