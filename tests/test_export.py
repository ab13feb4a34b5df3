"""`actionbench export` (ONNX, torch.export) and `predict --onnx` on a trained run: the same top-5 as the checkpoint,
the preprocessing in the file, one-line refusals."""

import json

import onnx
import pytest

from actionbench.cli import main
from actionbench.config import load_config
from actionbench.data.synthetic import make_synthetic_dataset
from actionbench.engine.export import open_exported
from actionbench.engine.trainer import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = make_synthetic_dataset(root / "data", "temporal", 4, 6, seed=3, frames=8, size=32, workers=1)
    cfg = load_config(None, ["model.name=tam_resnet18", "model.base_channels=8", "data.frames=4", "data.size=32",
                             "data.scale_size=32", "data.workers=0", "train.progress=false",
                             "train.tensorboard=false", "optim.epochs=1", "test.num_clips=2", "test.num_crops=1",
                             f"data.train_list={data['train']}", f"data.val_list={data['val']}",
                             f"output_dir={root / 'run'}"])
    train(cfg)
    return {"dir": root / "run", "videos": sorted(str(p) for p in (data["root"] / "videos").glob("*.mp4"))[:3]}


def _predict(capsys, *args):
    assert main(["predict", *args, "--json", "--topk", "4"]) == 0
    return [[p["label"] for p in item["predictions"]] for item in json.loads(capsys.readouterr().out)]


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("exported-program", ".pt2")])
def test_export_then_predict_gives_the_checkpoints_top5(run, tmp_path, capsys, fmt, suffix):
    out = tmp_path / f"model{suffix}"
    assert main(["export", str(run["dir"]), "--format", fmt, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "parity with the checkpoint's eager logits" in printed and "(B, 3, 4, 32, 32)" in printed
    expected = _predict(capsys, *run["videos"], "--checkpoint", str(run["dir"]))
    assert _predict(capsys, *run["videos"], "--onnx", str(out)) == expected
    meta = open_exported(out).metadata
    assert meta["frames"] == 4 and meta["size"] == 32 and meta["num_clips"] == 2 and len(meta["classes"]) == 4
    assert meta["channel_order"] == "RGB" and len(meta["mean"]) == 3 and len(meta["checkpoint_sha256"]) == 64
    if fmt == "onnx":  # readable by any ONNX tool, not only ours
        props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        assert json.loads(props["actionbench.classes"]) == meta["classes"]


def test_export_refuses_in_one_line(run, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    out.write_text("someone's file")
    assert main(["export", str(run["dir"]), "--out", str(out)]) == 2
    assert out.read_text() == "someone's file"  # never overwritten without --overwrite
    assert main(["export", str(run["dir"]), "--out", str(tmp_path / "m.pt2")]) == 2  # onnx named .pt2
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.onnx")]) == 4
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"<html>not found</html>")
    assert main(["predict", run["videos"][0], "--onnx", str(bad)]) == 4
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4 and all(line.startswith("actionbench ") for line in errors), errors
    assert not list(tmp_path.glob(".*partial*"))
