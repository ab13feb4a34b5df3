"""`actionbench analyze`: temporal reliance probes on trained runs, through the evaluation path."""

import json

import pytest
import torch

from actionbench.cli import main
from actionbench.config import load_config
from actionbench.data.synthetic import make_synthetic_dataset
from actionbench.engine.trainer import train
from actionbench.study.analysis import PROBES, probe_clips, shuffled_order


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    data = make_synthetic_dataset(root / "data", "temporal", 4, 6, seed=4, frames=8, size=32, workers=1)
    out = {}
    for name in ("tsn_resnet18", "tsm_resnet18"):
        train(load_config(None, [f"model.name={name}", "model.base_channels=8", "data.frames=4", "data.size=32",
                                 "data.scale_size=32", "data.workers=0", "train.progress=false",
                                 "train.tensorboard=false", "optim.epochs=1", "test.num_clips=2",
                                 "test.num_crops=1", f"data.train_list={data['train']}",
                                 f"data.val_list={data['val']}", f"output_dir={root / name}"]))
        out[name] = root / name
    return out


def test_probes_change_only_the_frame_order():
    clips = torch.arange(2 * 3 * 4 * 2 * 2, dtype=torch.float32).reshape(2, 3, 4, 2, 2)
    assert torch.equal(probe_clips(clips, "reversed")[:, :, 0], clips[:, :, 3])
    order = shuffled_order(4)
    assert sorted(order.tolist()) == [0, 1, 2, 3] and order.tolist() != [0, 1, 2, 3]
    assert torch.equal(probe_clips(clips, "shuffled"), clips[:, :, order])
    static = probe_clips(clips, "static")
    assert all(torch.equal(static[:, :, t], clips[:, :, 2]) for t in range(4))


def test_analyze_writes_each_runs_reliance_in_its_own_directory(runs, capsys):
    assert main(["analyze", str(runs["tsn_resnet18"]), str(runs["tsm_resnet18"]), "test.num_clips=1"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("| reversed |") == 2
    results = {}
    for name, run_dir in runs.items():
        [written] = run_dir.glob("temporal_reliance_best-*.json")  # named after the checkpoint and settings
        results[name] = {row["probe"]: row for row in json.loads(written.read_text())["probes"]}
        assert [*results[name]] == list(PROBES) and (written.with_suffix(".csv")).is_file()
    tsn = results["tsn_resnet18"]  # an average of per-frame predictions: blind to the order of its frames
    assert tsn["reversed"]["drop"] == 0 and tsn["shuffled"]["drop"] == 0
    assert tsn["reversed"]["video_top1"] == tsn["normal"]["video_top1"]
    assert main(["analyze", str(runs["tsn_resnet18"]), "test.num_clips=1"]) == 0  # again: the same file
    assert len(list(runs["tsn_resnet18"].glob("temporal_reliance_*.json"))) == 1


def test_analyze_mistakes_are_one_line(runs, tmp_path, capsys):
    assert main(["analyze", str(tmp_path)]) == 2
    assert main(["analyze", str(runs["tsn_resnet18"]), str(runs["tsm_resnet18"]), "--checkpoint", "x.pt"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "no config.yaml" in errors[0]
