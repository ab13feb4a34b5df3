"""What a new user hit (issue 21), each run the way the user ran it: signals to the whole process group, the retry
after a failed start, same-named videos in class folders, labels with spaces, each mistake as one line with its
exit status, and `mini` -> `data check` -> `train` on the official Kinetics layout."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actionbench.cli import main
from actionbench.config import Config, save_config
from actionbench.data.synthetic import make_synthetic_dataset
from tests.test_user_mistakes import TINY, _lists, _one_line_error

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("data"), "appearance", 4, 6, seed=3, frames=8, size=32,
                                  workers=1)


def _start(args: list[str]) -> subprocess.Popen:
    """`actionbench ARGS` in a session of its own, as a terminal or a batch job starts it."""
    return subprocess.Popen([sys.executable, "-m", "actionbench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=SRC),
                            start_new_session=True)


def _finish(process: subprocess.Popen) -> str:
    """Its stderr once it ended; a process group that does not end is killed (by its id), then the test fails."""
    try:
        return process.communicate(timeout=300)[1]
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise


def _long_val(data, tmp_path: Path, copies: int = 60) -> Path:
    lines = [f"{data['root'] / line}" for line in data["val"].read_text().split("\n") if line]
    (tmp_path / "classes.txt").write_text(data["classes"].read_text())
    val = tmp_path / "val.txt"
    val.write_text("".join(f"{line}\n" for line in lines * copies))
    return val


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_process_group_during_validation_stops_cleanly(signum, data, tmp_path):
    val = _long_val(data, tmp_path)
    run = tmp_path / "run"
    args = ["train", *TINY, f"data.train_list={data['train']}", f"data.val_list={val}", "data.workers=2",
            "data.worker_start=fork", "optim.epochs=2", f"output_dir={run}"]
    process = _start(args)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "last.pt").exists():  # written just before validation starts
        time.sleep(0.02)
    os.killpg(process.pid, signum)  # the workers get it too, as from Ctrl-C or scancel
    err = _finish(process)
    assert process.returncode == 75, err
    assert f"stopped by {signum.name} during the validation after epoch 1" in err, err
    assert "exited unexpectedly" not in err and "Traceback" not in err
    assert main(["train", str(run), "--resume"]) == 0
    assert json.loads((run / "results.json").read_text())["epochs"] == 2


def test_a_signal_to_the_process_group_during_a_test_is_one_line(data, tmp_path):
    run = tmp_path / "run"
    assert main(["train", *TINY, *_lists(data), f"output_dir={run}"]) == 0
    val = _long_val(data, tmp_path, copies=200)
    process = _start(["test", str(run), f"data.val_list={val}", "data.workers=2", "data.worker_start=fork"])
    time.sleep(6)  # past start-up, inside the evaluation
    os.killpg(process.pid, signal.SIGINT)
    err = _finish(process)
    assert process.returncode == 75, err
    assert err.strip().splitlines()[-1] == ("actionbench test: error: stopped by SIGINT during the test; no result "
                                            "was written"), err
    assert "exited unexpectedly" not in err and "Traceback" not in err


def _failing_starts(data, tmp_path: Path) -> dict:
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "bad.csv").write_text("file,class\na.mp4,x\n")
    lines = data["val"].read_text().splitlines()
    (tmp_path / "classes.txt").write_text(data["classes"].read_text() + "stranger\n")
    (tmp_path / "val.txt").write_text("".join(f"{data['root'] / line.rsplit(' ', 1)[0]} stranger\n"
                                              for line in lines[:2]) + "".join(
        f"{data['root'] / line}\n" for line in lines[2:]))
    videos = data["root"] / "videos"
    return {  # case: (overrides, exit status, what the line says)
        "val_fraction missing": ([f"data.train_list={videos.parent / 'folders'}",
                                  f"data.val_list={videos.parent / 'folders'}"], 2, "data.val_fraction=0.2"),
        "unknown CSV header": ([f"data.train_list={tmp_path / 'bad.csv'}"], 3, "unknown CSV header 'file,class'"),
        "batch larger than the dataset": (["data.batch_size=64"], 2, "larger than the training set"),
        "empty list": ([f"data.train_list={tmp_path / 'empty.txt'}"], 3, "lists no video"),
        "unknown validation label": ([f"data.val_list={tmp_path / 'val.txt'}"], 3, "classes the model does not know"),
        "bad pool_style": (["model.options.pool_style=foo"], 2, "pool_style must be one of"),
    }


def _class_folders(data, root: Path) -> Path:
    """<class>/v0.mp4 ... in every class folder: the same file names in each."""
    classes = data["classes"].read_text().splitlines()
    for line in data["train"].read_text().splitlines() + data["val"].read_text().splitlines():
        path, label = line.rsplit(" ", 1)
        folder = root / classes[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(data["root"] / path, folder / f"v{len(list(folder.iterdir()))}.mp4")
    return root


def test_a_failed_start_leaves_nothing_that_blocks_its_retry(data, tmp_path, capsys):
    _class_folders(data, data["root"] / "folders")
    for case, (extra, code, fragment) in _failing_starts(data, tmp_path).items():
        run = tmp_path / f"run-{case.replace(' ', '-')}"
        result = main(["train", *TINY, *_lists(data), f"output_dir={run}", *extra])
        _one_line_error(capsys, result, code, fragment)
        assert not run.exists(), f"{case}: {list(run.iterdir())}"
    # the fixed command then starts, without --resume or --overwrite; so does one where a failed start of an older
    # version left only its config.yaml
    run = tmp_path / "leftover"
    run.mkdir()
    save_config(Config(), run / "config.yaml")
    assert main(["train", *TINY, *_lists(data), f"output_dir={run}"]) == 0
    assert (run / "results.json").is_file()
    # a config.yaml no run wrote (the user's own) is never deleted to make room
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("model: {name: tsn_resnet18}\n")
    _one_line_error(capsys, main(["train", *TINY, *_lists(data), f"output_dir={mine}"]), 6, "already holds a run")
    assert (mine / "config.yaml").read_text() == "model: {name: tsn_resnet18}\n"


def test_default_run_directories_are_not_left_behind_by_a_failed_start(data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY, *_lists(data), "data.batch_size=64"]) == 2
    capsys.readouterr()
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_comparisons_pair_same_named_videos_of_different_class_folders(data, tmp_path):
    folders = _class_folders(data, tmp_path / "folders")
    study = tmp_path / "study.yaml"
    overrides = [*TINY, f"data.train_list={folders}", f"data.val_list={folders}", "data.val_fraction=0.5"]
    study.write_text(json.dumps({"name": "same names", "overrides": overrides,
                                 "axes": {"model.name": ["tsn_resnet18", "tsm_resnet18"]}}))
    assert main(["study", str(study), "--out", str(tmp_path / "out")]) == 0
    results = [json.loads(p.read_text()) for p in (tmp_path / "out").rglob("results.json")]
    tested = {r["video_videos"] for r in results}
    assert len(tested) == 1 and tested.pop() > len(list(folders.iterdir())), tested  # more videos than names
    with (tmp_path / "out" / "comparisons.csv").open() as f:
        [row] = list(csv.DictReader(f))
    assert int(row["videos"]) == results[0]["video_videos"]


def test_labels_with_spaces_are_kept_whole(data, tmp_path, capsys):
    classes = ["wäving hand", "kicking ball", "jumping", "running fast"]
    (tmp_path / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    for split in ("train", "val"):
        lines = []
        for line in data[split].read_text().splitlines():
            path, label = line.rsplit(" ", 1)
            target = tmp_path / classes[int(label)] / f"clip {Path(path).stem} ☺.mp4"
            target.parent.mkdir(exist_ok=True)
            shutil.copy(data["root"] / path, target)
            lines.append(f'"{target.relative_to(tmp_path)}" {classes[int(label)]}')
        (tmp_path / f"{split}.txt").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    assert main(["train", *TINY, f"data.train_list={tmp_path / 'train.txt'}",
                 f"data.val_list={tmp_path / 'val.txt'}", f"output_dir={run}"]) == 0
    out = capsys.readouterr().out
    results = json.loads((run / "results.json").read_text())
    listed = len(data["val"].read_text().splitlines())
    assert results["video_bad_videos"] == 0 and results["video_videos"] == results["video_videos_listed"] == listed
    assert f'"videos_tested": "{listed} of {listed}"' in out
    assert not (run / "bad_videos.tsv").exists()
    # without quotes and without a class list the split is a guess: refused, naming the line
    (tmp_path / "guess").mkdir()
    (tmp_path / "guess" / "train.txt").write_text("my clips/clip 4 waving hand\nb 1\n")
    result = main(["train", *TINY, f"data.train_list={tmp_path / 'guess' / 'train.txt'}",
                   f"data.val_list={tmp_path / 'val.txt'}", f"output_dir={tmp_path / 'guessed'}"])
    _one_line_error(capsys, result, 3, "train.txt:1:", "quote the path")


def test_a_split_with_many_unreadable_videos_stops_the_run(data, tmp_path, capsys):
    lines = data["train"].read_text().splitlines()
    for i, line in enumerate(lines[:6]):  # a quarter of the training videos: damaged downloads
        (tmp_path / f"junk{i}.mp4").write_bytes(b"junk" * 100)
        lines[i] = f"{tmp_path / f'junk{i}.mp4'} {line.rsplit(' ', 1)[1]}"
    (tmp_path / "train.txt").write_text("".join(f"{line if line.startswith('/') else data['root'] / line}\n"
                                                for line in lines))
    shutil.copy(data["classes"], tmp_path / "classes.txt")
    result = main(["train", *TINY, f"data.train_list={tmp_path / 'train.txt'}", f"data.val_list={data['val']}",
                   f"output_dir={tmp_path / 'run'}"])
    _one_line_error(capsys, result, 3, "could not be read", "data.max_bad_fraction=0.05")


def test_each_mistake_is_one_line_with_its_exit_status(data, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("")
    ssv2 = tmp_path / "ssv2"
    ssv2.mkdir()
    (ssv2 / "labels.json").write_text(json.dumps({"Pushing something": "0", "Pulling something": "1"}))
    (ssv2 / "train.json").write_text(json.dumps([{"id": str(i), "template": "Pushing [something]" if i % 2 else
                                                  "Pulling [something]"} for i in range(12)]))
    cases = {  # overrides: (exit status, what the line says)
        (f"data.train_list={tmp_path / 'empty.txt'}",): (3, "lists no video"),
        ("model.options.pool_style=foo",): (2, "pool_style must be one of"),
        ("device=cuda",): (2, "no CUDA device"),
        ("data.short_side_range=[256",): (2, "not valid YAML"),
        (f"data.train_list={ssv2 / 'train.json'}", f"data.val_list={ssv2 / 'train.json'}"):
            (3, "set data.root to the folder"),
    }
    for extra, (code, fragment) in cases.items():
        result = main(["train", *TINY, *_lists(data), f"output_dir={tmp_path / 'run'}", *extra])
        _one_line_error(capsys, result, code, fragment)


def test_mini_then_data_check_then_train_on_the_kinetics_layout(data, tmp_path, capsys):
    """Kinetics as downloaded: CSVs with the official header, videos under videos/train/<class>/."""
    classes = data["classes"].read_text().splitlines()
    root = tmp_path / "kinetics"
    for split, source in (("train", data["train"]), ("validate", data["val"])):
        rows = ["youtube_id,time_start,time_end,label,split"]
        for i, line in enumerate(source.read_text().splitlines()):
            path, label = line.rsplit(" ", 1)
            youtube_id = f"{split[:2]}{i:09d}"
            target = root / "videos" / split / classes[int(label)] / f"{youtube_id}_000010_000020.mp4"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(data["root"] / path, target)
            rows.append(f"{youtube_id},10,20,{classes[int(label)]},{split}")
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "mini"
    assert main(["mini", str(root / "train.csv"), "--val", str(root / "validate.csv"), "--fraction", "0.5",
                 "--out", str(out)]) == 0
    assert main(["data", "check", str(out / "train.txt")]) == 0
    assert main(["data", "check", str(out / "val.txt")]) == 0
    assert main(["train", *TINY, f"data.train_list={out / 'train.txt'}", f"data.val_list={out / 'val.txt'}",
                 "data.batch_size=2", f"output_dir={tmp_path / 'run'}"]) == 0
    assert json.loads((tmp_path / "run" / "results.json").read_text())["video_bad_videos"] == 0
