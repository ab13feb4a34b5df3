"""Annotation formats as downloaded, error messages, Mini-datasets."""

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from actionbench.cli import main
from actionbench.data.formats import load_annotations
from actionbench.data.records import AnnotationError, Annotations, RecordTable, VideoRecord, write_list
from actionbench.data.splits import make_mini


def test_list_file_with_indices_names_and_tsn_frame_counts(tmp_path):
    (tmp_path / "a.txt").write_text("videos/x.mp4 1\nvideos/y.mp4 0\n# comment\n\nframes/z 2\n")
    ann = load_annotations(tmp_path / "a.txt")
    assert [(r.path, r.label, r.num_frames) for r in ann.records] == [
        ("videos/x.mp4", 1, None), ("videos/y.mp4", 0, None), ("frames/z", 2, None)]
    assert ann.classes == ["0", "1", "2"]
    (tmp_path / "rawframes.txt").write_text("frames/z 30 2\nframes/w 12 0\n")  # TSN / MMAction2 rawframes
    ann = load_annotations(tmp_path / "rawframes.txt")
    assert [(r.path, r.label, r.num_frames) for r in ann.records] == [("frames/z", 2, 30), ("frames/w", 0, 12)]
    (tmp_path / "b.txt").write_text("v/1.mp4 walk\nv/2.mp4 run\n")
    assert [r.label for r in load_annotations(tmp_path / "b.txt").records] == [1, 0]  # sorted names: run, walk


def test_csv_with_classes_file(tmp_path):
    (tmp_path / "classes.txt").write_text("walk\nrun\n")
    (tmp_path / "train.csv").write_text("path,label\nv/1.mp4,run\nv/2.mp4,0\n")
    ann = load_annotations(tmp_path / "train.csv")
    assert [r.label for r in ann.records] == [1, 0] and ann.classes == ["walk", "run"]


def test_malformed_lines_and_unknown_labels_name_file_and_line(tmp_path):
    (tmp_path / "bad.txt").write_text("ok.mp4 0\njustonetoken\n")
    with pytest.raises(AnnotationError, match=r"bad.txt:2: expected"):
        load_annotations(tmp_path / "bad.txt")
    (tmp_path / "classes.txt").write_text("walk\nrun\n")
    (tmp_path / "c.txt").write_text("a.mp4 run\nb.mp4 jump\n")
    with pytest.raises(AnnotationError, match=r"c.txt:2: unknown label 'jump'"):
        load_annotations(tmp_path / "c.txt")
    # blank lines (the fast path counts lines again for the message) and comments (the quoting path)
    (tmp_path / "gaps.txt").write_text("\na.mp4 run\n\n   \nb.mp4 run\nc.mp4 jump\n")
    with pytest.raises(AnnotationError, match=r"gaps.txt:6: unknown label 'jump'"):
        load_annotations(tmp_path / "gaps.txt")
    (tmp_path / "notes.txt").write_text("# clips\n\n'a b.mp4' 0\nlonely\n")
    with pytest.raises(AnnotationError, match=r"notes.txt:4: expected 'path label'"):
        load_annotations(tmp_path / "notes.txt")


def test_record_ids_are_stems_unless_given(tmp_path):
    (tmp_path / "l.txt").write_text("v/a.b.mp4 0\nframes/clip7/ 1\n.hidden 0\n")
    records = load_annotations(tmp_path / "l.txt").records
    assert [r.video_id for r in records] == [Path(r.path).stem for r in records] == ["a.b", "clip7", ".hidden"]
    table = RecordTable([VideoRecord("x/y.mp4", 1, "yt_id")]).share_memory()
    assert table[0].video_id == "yt_id" and pickle.loads(pickle.dumps(table))[0] == table[0]


def test_column_operations_give_the_records_one_by_one_operations_give(tmp_path):
    records = [VideoRecord("v/a.mp4", 2, "a"), VideoRecord("v/ü b/", 0, "yt_1", 30, 4),
               VideoRecord("c.webm", 1, "c"), VideoRecord("d.mp4", 3, "kept_id", 8)]
    table = RecordTable(records)
    assert table.paths() == [r.path for r in records]
    assert list(table.take(np.array([3, 1, 1, 0]))) == [records[i] for i in (3, 1, 1, 0)]
    assert list(table.take(np.array([2]))) == [records[2]] and len(table.take(np.zeros(0, np.int64))) == 0
    assert list(table[1:4:2]) == records[1:4:2] and list(table[::-1]) == records[::-1] and len(table[5:]) == 0
    moved = table.with_paths([f"/data/{r.path}" for r in records])
    assert list(moved) == [dataclasses.replace(r, path=f"/data/{r.path}") for r in records]
    classes = ["w", "x", "y", "z"]
    for name, subset, text in [("plain.txt", [0, 2], "v/a.mp4 2\nc.webm 1\n"),
                               ("ranged.txt", [1, 3], "'v/ü b/' 5 34 0\nd.mp4 1 8 3\n")]:
        write_list(Annotations(table.take(np.array(subset)), classes), tmp_path / name)
        assert (tmp_path / name).read_text() == text
        again = load_annotations(tmp_path / name).records
        assert [(r.path, r.label, r.num_frames, r.first_frame) for r in again] == [
            (r.path, r.label, r.num_frames, r.first_frame) for r in (records[i] for i in subset)]
    with pytest.raises(ValueError, match="some records have frame ranges and some do not"):
        write_list(Annotations(table, classes), tmp_path / "mixed.txt")


def test_kinetics_csv_resolves_files_in_any_layout(tmp_path):
    (tmp_path / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,abc123,14,24,train\n"
        "zumba,def456,0,10,train\n")
    (tmp_path / "videos" / "zumba").mkdir(parents=True)
    (tmp_path / "videos" / "zumba" / "def456_000000_000010.mp4").write_bytes(b"")
    ann = load_annotations(tmp_path / "train.csv", root=tmp_path / "videos")
    assert ann.classes == ["abseiling", "zumba"]
    assert [(r.path, r.label, r.video_id) for r in ann.records] == [
        ("abc123_000014_000024.mp4", 0, "abc123_000014_000024"),
        ("zumba/def456_000000_000010.mp4", 1, "def456_000000_000010")]


def test_something_something_v2_json(tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps({"Pushing something from left to right": "1",
                                                      "Approaching something with your camera": "0"}))
    (tmp_path / "validation.json").write_text(json.dumps([
        {"id": "74225", "label": "pushing a cup from left to right",
         "template": "Pushing [something] from left to right", "placeholders": ["a cup"]}]))
    ann = load_annotations(tmp_path / "validation.json")
    assert ann.records[0].path == "74225.webm" and ann.records[0].label == 1
    assert ann.classes[0] == "Approaching something with your camera"


def test_moments_in_time_and_ucf101(tmp_path):
    (tmp_path / "moments_categories.txt").write_text("clapping,1\naiming,0\n")
    (tmp_path / "trainingSet.csv").write_text("clapping/a.mp4,clapping,3,0\naiming/b.mp4,aiming,2,1\n")
    ann = load_annotations(tmp_path / "trainingSet.csv")
    assert [r.label for r in ann.records] == [1, 0] and ann.classes == ["aiming", "clapping"]
    (tmp_path / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    (tmp_path / "trainlist01.txt").write_text("Archery/v_Archery_g01_c01.avi 2\n")
    (tmp_path / "testlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n")
    assert load_annotations(tmp_path / "trainlist01.txt").records[0].label == 1
    assert load_annotations(tmp_path / "testlist01.txt").records[0].label == 0


def test_mini_dataset_is_seeded_and_byte_reproducible(tmp_path):
    lines = "".join(f"v/{i}.mp4 c{i % 10}\n" for i in range(100))
    (tmp_path / "train.txt").write_text(lines)
    (tmp_path / "val.txt").write_text("".join(lines.splitlines(keepends=True)[:30]))
    outs = []
    for run in range(2):
        out = tmp_path / f"mini{run}"
        assert main(["mini", str(tmp_path / "train.txt"), "--val", str(tmp_path / "val.txt"),
                     "--fraction", "0.5", "--seed", "3", "--out", str(out)]) == 0
        outs.append([(out / n).read_bytes() for n in ("train.txt", "val.txt", "classes.txt")])
    assert outs[0] == outs[1]
    classes = outs[0][2].decode().split()
    assert len(classes) == 5 and classes == sorted(classes)
    mini, chosen = make_mini(load_annotations(tmp_path / "train.txt"), 0.5, seed=3)
    assert len(mini) == 50 and {r.label for r in mini.records} == set(range(5))
    assert make_mini(load_annotations(tmp_path / "train.txt"), 0.5, seed=4)[1] != chosen


def test_hmdb51_split_files(tmp_path):
    (tmp_path / "brush_hair_test_split1.txt").write_text("a.avi 1\nb.avi 2\nc.avi 0\n")
    (tmp_path / "cartwheel_test_split1.txt").write_text("d.avi 2\ne.avi 1\n")
    (tmp_path / "cartwheel_test_split2.txt").write_text("d.avi 1\n")
    train = load_annotations(tmp_path / "cartwheel_test_split1.txt")
    assert train.classes == ["brush_hair", "cartwheel"]
    assert [(r.path, r.label) for r in train.records] == [("brush_hair/a.avi", 0), ("cartwheel/e.avi", 1)]
    test = load_annotations(tmp_path / "cartwheel_test_split1.txt", subset="test")
    assert [r.path for r in test.records] == ["brush_hair/b.avi", "cartwheel/d.avi"]
    (tmp_path / "bad_test_split3.txt").write_text("x.avi 7\n")
    with pytest.raises(AnnotationError, match=r"bad_test_split3.txt:1"):
        load_annotations(tmp_path / "bad_test_split3.txt")


def test_the_papers_list_format_is_detected_by_its_columns(tmp_path):
    # IBM/action-recognition-pytorch: `folder start_frame end_frame label`, 1-based, inclusive
    (tmp_path / "ibm.txt").write_text("abseiling/vid1 1 300 0\nzumba/vid 2 5 120 1\n")
    ann = load_annotations(tmp_path / "ibm.txt")
    assert [(r.path, r.num_frames, r.first_frame, r.label) for r in ann.records] == [
        ("abseiling/vid1", 300, 0, 0), ("zumba/vid 2", 116, 4, 1)]
    (tmp_path / "bad.txt").write_text("a 1 300 0\nb 9 3 1\n")
    with pytest.raises(AnnotationError, match=r"bad.txt:2: frames 9-3"):
        load_annotations(tmp_path / "bad.txt")
    (tmp_path / "multi.txt").write_text("a 1 300 0 4\nb 1 30 1\n")  # several labels per video: not supported
    with pytest.raises(AnnotationError, match=r"multi.txt:1: frames 300-0"):
        load_annotations(tmp_path / "multi.txt")


def test_list_layouts_are_per_file_and_paths_may_have_spaces(tmp_path):
    # every line "name number label": rawframes; declaring the format reads a folder named "clip 0" as a path
    (tmp_path / "a.txt").write_text("clip 0 3\nclip 1 4\n")
    assert [r.num_frames for r in load_annotations(tmp_path / "a.txt").records] == [0, 1]
    assert [r.path for r in load_annotations(tmp_path / "a.txt", "plain").records] == ["clip 0", "clip 1"]
    (tmp_path / "b.txt").write_text("my videos/a b.mp4 run\n\"quoted  two spaces.mp4\" walk\nc.mp4 run\n")
    ann = load_annotations(tmp_path / "b.txt")
    assert [r.path for r in ann.records] == ["my videos/a b.mp4", "quoted  two spaces.mp4", "c.mp4"]
    assert ann.classes == ["run", "walk"]
