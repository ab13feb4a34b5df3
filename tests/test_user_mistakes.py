"""What a new user does wrong, and what actionbench answers: one line, an exit status of its kind, and no file of
another run touched (every case hashes a finished run before and after)."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from actionbench.cli import main
from actionbench.data.synthetic import make_synthetic_dataset

TINY = ["model.name=tsn_resnet18", "model.base_channels=4", "model.dropout=0.0", "data.frames=4", "data.size=32",
        "data.scale_size=32", "data.train_scales=[1.0]", "data.workers=0", "data.batch_size=4", "optim.epochs=1",
        "optim.warmup_epochs=0", "train.progress=false", "train.tensorboard=false", "test.num_clips=1",
        "test.num_crops=1", "data.index_cache=null"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("data"), "appearance", 4, 6, seed=3, frames=8, size=32,
                                  workers=1)


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """A finished run that no mistake below may change."""
    run = tmp_path_factory.mktemp("runs") / "finished"
    assert main(["train", *TINY, *_lists(data), f"output_dir={run}"]) == 0
    return run


def _lists(data):
    return [f"data.train_list={data['train']}", f"data.val_list={data['val']}"]


def _hashes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(capsys, code: int, expected_code: int, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == expected_code, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("WARNING")]
    assert len(lines) == 1 and lines[0].startswith("actionbench"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


MISTAKES = {  # id: (arguments after the tiny run's, exit status, what the line says)
    "unknown model": (["model.name=tam_resnet05"], 2, ["unknown model 'tam_resnet05'", "tam_resnet50"]),
    "batch larger than the dataset": (["data.batch_size=64"], 2, ["data.batch_size=64 is larger than the training"]),
    "bad crop count": (["test.num_crops=4"], 2, ["test.num_crops: 4 crops", "1 (centre)"]),
    "unknown format": (["data.format=kinetic"], 2, ["data.format: 'kinetic' is not one of"]),
    "negative learning rate": (["optim.lr=-0.1"], 2, ["optim.lr: must be positive"]),
    "missing ImageNet file": (["model.pretrained=/nowhere/resnet18.pth"], 4,
                              ["weights file /nowhere/resnet18.pth does not exist"]),
    "misspelt key": (["optim.lrr=0.1"], 2, ["unknown config key 'optim.lrr'", "optim.lr"]),
    "NaN loss": (["optim.lr=1e30"], 5, ["NaN or infinite at epoch 1", "lower optim.lr"]),
}


@pytest.mark.parametrize("case", list(MISTAKES))
def test_training_mistakes(case, data, finished, tmp_path, capsys):
    before = _hashes(finished)
    extra, code, fragments = MISTAKES[case]
    result = main(["train", *TINY, *_lists(data), f"output_dir={tmp_path / 'new'}", *extra])
    _one_line_error(capsys, result, code, *fragments)
    assert _hashes(finished) == before


def test_missing_lists_and_labels_are_named(data, tmp_path, capsys):
    _one_line_error(capsys, main(["train", *TINY, f"output_dir={tmp_path / 'a'}"]), 2,
                    "data.train_list is not set")
    (tmp_path / "minus.txt").write_text("videos/00_0000.mp4 0\nvideos/00_0001.mp4 -1\n")
    _one_line_error(capsys, main(["train", *TINY, f"data.train_list={tmp_path / 'minus.txt'}",
                                  f"data.val_list={data['val']}", f"output_dir={tmp_path / 'b'}"]), 3,
                    "minus.txt:2: label -1 is not a class index")
    (tmp_path / "classes.txt").write_text("walk\nrun\n")
    (tmp_path / "names.txt").write_text("a.mp4 run\nb.mp4 jump\n")
    _one_line_error(capsys, main(["data", "check", str(tmp_path / "names.txt")]), 3, "names.txt:2: unknown label")


def test_a_run_is_never_overwritten_nor_resumed_by_mistake(data, finished, tmp_path, capsys):
    before = _hashes(finished)
    _one_line_error(capsys, main(["train", *TINY, *_lists(data), f"output_dir={finished}"]), 6,
                    "already holds a run", "--resume", "--overwrite")
    _one_line_error(capsys, main(["train", *TINY, *_lists(data), f"output_dir={finished}", "optim.lr=0.2",
                                  "--resume"]), 6, "cannot resume", "optim.lr: 0.01 -> 0.2")
    _one_line_error(capsys, main(["train", *TINY, *_lists(data), f"output_dir={finished}x", "--resume"]), 6,
                    "nothing to resume", "finishedx")
    _one_line_error(capsys, main(["train", str(finished), "--resume", "optim.epochs=2"]), 6,
                    "optim.epochs: 1 -> 2")  # an override after an option is read, and refused for a resume
    assert _hashes(finished) == before
    _one_line_error(capsys, main(["trian", "x"]), 2, "unknown command 'trian'", "actionbench train")


def test_overwrite_replaces_the_whole_run_its_evaluations_included(finished, tmp_path, capsys):
    before = _hashes(finished)
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    assert main(["test", str(copy)]) == 0
    evaluations = {p.name for pattern in ("test_*", "predictions_*", "confusion_*") for p in copy.glob(pattern)}
    assert len(evaluations) == 3
    assert main(["train", str(copy), "--overwrite"]) == 0
    assert not evaluations & {p.name for p in copy.iterdir()}  # none of the old run's evaluations beside the new
    assert (copy / "results.json").is_file() and _hashes(finished) == before


def test_checkpoint_mistakes(data, finished, tmp_path, capsys):
    before = _hashes(finished)
    video = str(data["root"] / "videos" / "00_0000.mp4")
    _one_line_error(capsys, main(["predict", video, "--checkpoint", str(tmp_path / "nope.pt")]), 4,
                    "nope.pt does not exist")
    line = _one_line_error(capsys, main(["predict", video, "--checkpoint", str(finished / "config.yaml")]), 4,
                           "is a YAML file, not a checkpoint")
    assert "Delete" not in line
    (tmp_path / "cut.pt").write_bytes((finished / "best.pt").read_bytes()[:1000])
    line = _one_line_error(capsys, main(["predict", video, "--checkpoint", str(tmp_path / "cut.pt")]), 4,
                           "cannot read", "damaged")
    assert "Delete" not in line
    # a run directory as the checkpoint is its best.pt; overrides after options and videos after them work
    assert main(["predict", video, "--checkpoint", str(finished), video, "test.num_clips=2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [item["video"] for item in out] == [video, video]
    assert _hashes(finished) == before


def test_a_copied_run_tests_predicts_and_resumes_in_place(data, finished, tmp_path, capsys, monkeypatch):
    before = _hashes(finished)
    copy = tmp_path / "moved" / "copy"
    shutil.copytree(finished, copy)
    monkeypatch.chdir(tmp_path)  # another working directory than the one it was trained from
    assert main(["test", str(copy), "--checkpoint", str(copy / "last.pt"), "test.num_clips=2"]) == 0
    written = sorted(p.name for p in copy.glob("test_last-*.json"))
    assert len(written) == 1 and (copy / written[0].replace("test_", "predictions_").replace(".json", ".csv")).is_file()
    result = json.loads((copy / written[0]).read_text())
    assert result["checkpoint"] == str(copy / "last.pt") and result["evaluation"]["test.num_clips"] == 2
    assert result["checkpoint_sha256"] == hashlib.sha256((copy / "last.pt").read_bytes()).hexdigest()
    assert main(["train", str(copy), "--resume"]) == 0  # finished: re-evaluated, in the copy
    assert json.loads((copy / "results.json").read_text())["output_dir"] == str(copy)
    assert _hashes(finished) == before
    capsys.readouterr()


def test_two_default_trainings_never_share_a_directory(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["train", *TINY, *_lists(data)]) == 0
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all((r / "results.json").is_file() for r in runs)
    assert runs[0].name.startswith("tsn_resnet18_") and runs[0].name != runs[1].name


def test_stray_files_and_self_describing_outputs(data, finished, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    temp = set(Path(tempfile.gettempdir()).glob("actionbench-bad-videos-*"))
    assert main(["predict", str(data["root"] / "videos" / "00_0000.mp4"), "--checkpoint", str(finished)]) == 0
    assert set(Path(tempfile.gettempdir()).glob("actionbench-bad-videos-*")) == temp
    assert main(["data", "check", str(data["train"])]) == 0
    assert list(tmp_path.iterdir()) == []  # no data_check.csv where the user stands
    confusion = (finished / "confusion.csv").read_text().splitlines()
    classes = data["classes"].read_text().splitlines()
    assert confusion[0].split(",")[1:] == classes and confusion[1].split(",")[0] == classes[0]
    header = (finished / "predictions.csv").read_text().splitlines()[0]
    assert header == "video_id,path,label,predicted,probability,score,top5"
    results = json.loads((finished / "results.json").read_text())
    assert {"checkpoint", "config_file", "train_list", "test_list", "seed"} <= set(results)
    losses = [json.loads(line) for line in (finished / "metrics.jsonl").read_text().splitlines()]
    assert any("train/loss" in entry for entry in losses)  # an epoch shorter than log_every still logs its loss
    capsys.readouterr()


def test_folders_of_classes_with_a_seeded_split(data, tmp_path, capsys):
    folder = tmp_path / "my videos"
    for i, line in enumerate(data["train"].read_text().splitlines()):
        path, label = line.rsplit(" ", 1)
        target = folder / f"class {label}" / f"clip {i}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data["root"] / path, target)
    _one_line_error(capsys, main(["train", *TINY, f"data.train_list={folder}", f"data.val_list={folder}",
                                  f"output_dir={tmp_path / 'r0'}"]), 2, "data.val_fraction=0.2")
    assert main(["train", *TINY, f"data.train_list={folder}", f"data.val_list={folder}", "data.val_fraction=0.25",
                 f"output_dir={tmp_path / 'r1'}"]) == 0
    results = json.loads((tmp_path / "r1" / "results.json").read_text())
    assert results["clip_videos"] == 4  # a quarter of each class's 3 training videos, rounded: 1 x 4 classes
    assert main(["data", "check", str(folder)]) == 0
    assert main(["mini", str(folder), "--fraction", "0.5", "--out", str(tmp_path / "mini")]) == 0
    lines = (tmp_path / "mini" / "train.txt").read_text().splitlines()
    assert lines and all(line.startswith(f'"{folder}') or line.startswith(f"'{folder}") for line in lines)
    capsys.readouterr()


def test_transcode_keeps_videos_whose_names_collide(data, tmp_path, capsys):
    source = tmp_path / "in"
    source.mkdir()
    video = data["root"] / "videos" / "00_0000.mp4"
    shutil.copy(video, source / "x.mp4")
    shutil.copy(video, source / "x.mkv")
    assert main(["transcode", str(source), str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x_mkv.mp4", "x_mp4.mp4"]
    capsys.readouterr()


def test_interrupt_outside_training_is_one_line(monkeypatch, capsys):
    from actionbench.profiling import cli as profile_cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(profile_cli, "run", interrupted)
    assert main(["profile", "tsn_resnet18"]) == 130
    assert capsys.readouterr().err.strip() == "actionbench profile: interrupted"


def test_sigterm_mid_epoch_saves_and_resumes_without_losing_an_iteration(data, tmp_path):
    """What preemption does: SIGTERM mid-epoch, exit 75 with last.pt; --resume then ends with the weights of an
    uninterrupted run (deterministic, single process)."""
    common = [*TINY, *_lists(data), "optim.epochs=3", "data.batch_size=2", "train.deterministic=true",
              "train.log_every=1"]
    assert main(["train", *common, f"output_dir={tmp_path / 'straight'}"]) == 0
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    run = tmp_path / "stopped"
    process = subprocess.Popen([sys.executable, "-m", "actionbench", "train", *common, f"output_dir={run}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "metrics.jsonl").exists():
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 75, err
    assert "stopped by SIGTERM" in err and f"actionbench train {run} --resume" in err
    assert main(["train", str(run), "--resume"]) == 0
    ours, straight = (torch.load(p / "last.pt", weights_only=True)["model"] for p in (run, tmp_path / "straight"))
    assert all(torch.equal(ours[k], straight[k]) for k in straight)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if "train/loss" in line]
    assert steps == sorted(set(steps))  # every step logged once, resumed or not


def test_an_evaluation_list_may_hold_a_subset_of_the_classes_by_name(data, finished, tmp_path, capsys):
    classes = data["classes"].read_text().splitlines()
    lines = [line for line in data["val"].read_text().splitlines() if int(line.rsplit(" ", 1)[1]) in (1, 3)]
    subset = tmp_path / "subset"
    subset.mkdir()
    (subset / "classes.txt").write_text(f"{classes[3]}\n{classes[1]}\n")  # another order, two classes only
    (subset / "val.txt").write_text("".join(f"{data['root'] / line.rsplit(' ', 1)[0]} "
                                            f"{0 if line.endswith(' 3') else 1}\n" for line in lines))
    assert main(["test", str(finished), f"data.val_list={subset / 'val.txt'}", "data.test_list=null"]) == 0
    [written] = finished.glob("predictions_best-*.csv")
    rows = written.read_text().splitlines()[1:]
    assert len(rows) == len(lines) and {row.split(",")[2] for row in rows} == {classes[1], classes[3]}
    written.unlink()
    for stale in [*finished.glob("test_best-*.json"), *finished.glob("confusion_best-*.csv")]:
        stale.unlink()  # this test's own files: the module's other tests hash the run
    capsys.readouterr()
