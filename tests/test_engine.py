"""The engine end to end on real synthetic videos: learning, DDP equivalence, exact resume after SIGKILL, errors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from actionbench.cli import main
from actionbench.config import ConfigError, load_config
from actionbench.data.synthetic import make_synthetic_dataset
from actionbench.engine.schedules import learning_rate
from actionbench.engine.trainer import train
from actionbench.errors import CheckpointError, TrainingDiverged
from actionbench.models.weights import load_checkpoint, save_checkpoint

TINY = ["model.name=tsn_resnet18", "model.base_channels=8", "model.dropout=0.0", "data.frames=4", "data.size=32",
        "data.scale_size=32", "data.train_scales=[1.0]", "data.workers=0", "train.progress=false",
        "train.tensorboard=false", "test.num_clips=2", "test.num_crops=1", "optim.warmup_epochs=0"]


@pytest.fixture(scope="module")
def appearance(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("app"), "appearance", 4, 12, seed=2, frames=8, size=32,
                                  workers=1)


def _overrides(data, out, *extra):
    return [*TINY, f"data.train_list={data['train']}", f"data.val_list={data['val']}", f"output_dir={out}", *extra]


def test_a_tiny_model_learns_the_appearance_set(appearance, tmp_path):
    cfg = load_config(None, _overrides(appearance, tmp_path / "run", "optim.epochs=10", "optim.lr=0.02",
                                       "data.batch_size=4", "model.base_channels=16",
                                       "train.deterministic=true"))
    results = train(cfg)
    assert results["clip_top1"] >= 60  # chance is 25
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    for key in ("model", "frames", "sampling", "temporal_pooling", "clip_top1", "clip_top5", "video_top1",
                "video_top5", "num_clips", "num_crops", "params", "paper_gflops", "epochs"):
        assert key in saved
    assert (tmp_path / "run" / "predictions.csv").read_text().count("\n") == 1 + saved["video_videos"]
    assert main(["test", str(tmp_path / "run"), "test.num_clips=1"]) == 0
    assert main(["predict", str(appearance["root"] / "videos" / "00_0000.mp4"), "--checkpoint",
                 str(tmp_path / "run" / "best.pt"), "--topk", "2"]) == 0


def _final_weights(run_dir):
    return load_checkpoint(run_dir / "last.pt")["model"]


def test_ddp_with_two_processes_equals_one_process(appearance, tmp_path):
    common = _overrides(appearance, tmp_path / "single", "optim.epochs=2", "data.batch_size=8", "train.freeze_bn=true",
                        "model.base_channels=4")
    train(load_config(None, common))
    ddp_dir = tmp_path / "ddp"
    odd = tmp_path / "test_odd.txt"  # 11 videos x 1 view: does not divide across 2 ranks
    odd.write_text("".join(appearance["val"].read_text().splitlines(keepends=True)[:11]))
    (tmp_path / "classes.txt").write_text(appearance["classes"].read_text())
    args = [a if not a.startswith("output_dir=") else f"output_dir={ddp_dir}" for a in common]
    args += [f"data.test_list={odd}", f"data.root={appearance['root']}", "test.num_clips=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                    "actionbench", "train", *args], check=True, env=env, capture_output=True, timeout=300)
    single, ddp = _final_weights(tmp_path / "single"), _final_weights(ddp_dir)
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=1e-4, atol=1e-5, msg=key)
    assert json.loads((ddp_dir / "results.json").read_text())["video_videos"] == 11  # every video exactly once


def test_sigkill_mid_epoch_then_resume_is_bit_identical(appearance, tmp_path):
    extra = ("optim.epochs=3", "data.batch_size=4", "train.checkpoint_every=1", "train.deterministic=true",
             "model.dropout=0.3")
    train(load_config(None, _overrides(appearance, tmp_path / "whole", *extra)))
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "actionbench", "train", *_overrides(appearance, killed, *extra)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it once it is inside epoch 2, between checkpoints or while writing one
        if (killed / "last.pt").exists():
            try:
                state = load_checkpoint(killed / "last.pt")
            except CheckpointError:
                continue
            if state["epoch"] >= 1 and state["batch"] >= 2:
                break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "results.json").exists()
    assert main(["train", *_overrides(appearance, killed, *extra), "--resume"]) == 0
    whole, resumed = _final_weights(tmp_path / "whole"), _final_weights(killed)
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key


def test_errors_are_clear(appearance, tmp_path, capsys):
    assert main(["train", "optim.lrr=0.1"]) == 2
    assert "unknown config key 'optim.lrr'; did you mean optim.lr?" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="data.frames: expected an integer"):
        load_config(None, ["data.frames=eight"])
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="cannot read .*last.pt: damaged or not a checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(TrainingDiverged, match=r"NaN or infinite at epoch 1, by iteration \d+ .*lower optim.lr"):
        train(load_config(None, _overrides(appearance, tmp_path / "nan", "optim.lr=1e30", "optim.epochs=1",
                                           "data.batch_size=8")))


def test_broken_videos_do_not_stop_training(appearance, tmp_path):
    lines = appearance["train"].read_text()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(b"junk" * 100)
    broken = f"{tmp_path / 'empty.mp4'} 0\n{tmp_path / 'junk.mp4'} 1\n{tmp_path / 'missing.mp4'} 2\n"
    (tmp_path / "train.txt").write_text(lines + broken)
    (tmp_path / "val.txt").write_text(appearance["val"].read_text() + broken)
    (tmp_path / "classes.txt").write_text(appearance["classes"].read_text())
    cfg = load_config(None, [*TINY, f"data.train_list={tmp_path / 'train.txt'}",
                             f"data.val_list={tmp_path / 'val.txt'}",
                             f"data.root={appearance['root']}", f"output_dir={tmp_path / 'run'}", "optim.epochs=1",
                             "data.batch_size=8", "data.max_bad_fraction=0.5"])
    results = train(cfg)
    assert results["bad_videos"] == 3 and results["video_bad_videos"] == 3
    assert results["video_videos"] == len(appearance["val"].read_text().splitlines())


def test_schedules():
    cfg = load_config(None, ["optim.lr=0.1", "optim.epochs=10", "optim.schedule=multistep", "optim.milestones=[4,8]"])
    assert [round(learning_rate(cfg.optim, i * 10, 10), 6) for i in (0, 3, 4, 8, 9)] == [0.1, 0.1, 0.01, 0.001, 0.001]
    cfg = load_config(None, ["optim.lr=1.6", "optim.epochs=196", "optim.warmup_epochs=34",
                             "optim.warmup_start_lr=0.01"])
    assert learning_rate(cfg.optim, 0, 100) == pytest.approx(0.01)
    assert learning_rate(cfg.optim, 1700, 100) == pytest.approx(0.01 + 1.59 * 17 / 34)
    assert learning_rate(cfg.optim, 3400, 100) == pytest.approx(1.6)
    assert learning_rate(cfg.optim, 3400 + 8100, 100) == pytest.approx(0.8)  # half-way through the cosine
    assert learning_rate(cfg.optim, 19600, 100) == pytest.approx(0.0, abs=1e-12)


def test_checkpoint_write_is_atomic(tmp_path):
    save_checkpoint({"model": {"w": torch.ones(2)}, "config": {}}, tmp_path / "a.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]  # no temp file left behind
    assert torch.equal(load_checkpoint(tmp_path / "a.pt")["model"]["w"], torch.ones(2))
