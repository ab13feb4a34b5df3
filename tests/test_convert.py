"""Released checkpoints of the reference codebases: converted, loaded with weights_only, their logits reproduced.

The golden files (tests/golden/, written by scripts/check_reference_equivalence.py from the references' own code)
hold per model the reference's key order and shapes, the seed of its weights, how its code wraps a checkpoint and
its logits; these tests need no reference code.
"""

import base64
import collections
import csv
import json

import numpy as np
import pytest
import torch

from actionbench.cli import main
from actionbench.config import from_dict
from actionbench.engine.assembly import build_run_model
from actionbench.models.convert import ConversionError, convert_checkpoint, read_checkpoint
from tests.reference_golden import draw_input, draw_state, golden_files, load_golden, wrap

GOLDEN = golden_files()


def _write_reference_checkpoint(golden: dict, folder):
    path = folder / golden["file_name"]
    torch.save(wrap(draw_state(golden["keys"], golden["seed"], golden.get("scale")), golden["wrapper"]), path)
    return path


def _model(checkpoint: dict):
    model = build_run_model(from_dict(checkpoint["config"]), len(checkpoint["classes"]))
    model.load_state_dict(checkpoint["model"])
    return model.double().eval()


def _relative(ours, theirs) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


def test_there_is_a_golden_file_per_source():
    sources = {load_golden(p)["pair"].split("/")[0] for p in GOLDEN}
    assert sources == {"official", "tsm", "mmaction2", "pytorchvideo", "pyslowfast"}


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name.removesuffix(".json.gz"))
def test_converted_checkpoint_reproduces_the_reference_logits(path, tmp_path):
    golden = load_golden(path)
    checkpoint = convert_checkpoint(_write_reference_checkpoint(golden, tmp_path), **golden["convert"])
    assert checkpoint["config"]["model"]["name"] == golden["model"]
    assert checkpoint["config"]["model"]["options"] == golden["options"]
    model = _model(checkpoint)
    x = draw_input(golden["input"]["shape"], golden["input"]["seed"])
    theirs = torch.tensor(golden["logits"], dtype=torch.float64)
    with torch.no_grad():
        assert _relative(model(x), theirs) <= 1e-6
        # the check can fail: the same weights on the time-reversed clip, or one kernel 0.1 % off, do not match
        key = next(k for k, v in checkpoint["model"].items() if v.dim() >= 4)
        checkpoint["model"][key] = checkpoint["model"][key] * 1.001
        assert _relative(_model(checkpoint)(x), theirs) > 1e-4


@pytest.mark.parametrize("path", [p for p in GOLDEN if "clip" in load_golden(p)],
                         ids=lambda p: p.name.removesuffix(".json.gz"))
def test_predict_and_test_reproduce_the_reference_on_a_clip(path, tmp_path, capsys):
    golden = load_golden(path)
    source = _write_reference_checkpoint(golden, tmp_path)
    frames = tmp_path / "videos" / "clip"
    frames.mkdir(parents=True)
    for i, data in enumerate(golden["clip"]["frames"]):
        (frames / f"{i + 1:05d}.jpg").write_bytes(base64.b64decode(data))
    converted = tmp_path / "converted.pt"
    protocol = [f"--protocol={k}={v}" for k, v in golden["clip"]["protocol"].items()]
    extra = [f"--option={k}={v}" for k, v in golden["convert"].get("options", {}).items()]
    assert main(["convert", str(source), "--out", str(converted), *protocol, *extra]) == 0
    capsys.readouterr()
    logits = torch.tensor(golden["clip"]["logits"][0], dtype=torch.float64)
    probabilities = logits.softmax(0)
    assert main(["predict", str(frames), "--checkpoint", str(converted), "--json", "--topk", "5"]) == 0
    predicted = json.loads(capsys.readouterr().out)[0]
    assert _relative(torch.tensor(predicted["logits"], dtype=torch.float64), logits) <= 1e-4  # float32 here
    best = predicted["predictions"][0]
    assert int(best["label"]) == int(logits.argmax())
    assert best["score"] == pytest.approx(float(probabilities.max()), abs=1e-5)
    # `actionbench test` on a list holding the clip: its predictions.csv carries the reference's best logit
    (tmp_path / "videos" / "list.txt").write_text("clip 1\n")
    config = tmp_path / "eval.yaml"
    config.write_text(f"data:\n  val_list: {tmp_path / 'videos' / 'list.txt'}\n  workers: 0\n"
                      f"output_dir: {tmp_path / 'eval'}\n")
    assert main(["test", str(config), "--checkpoint", str(converted)]) == 0
    [predictions] = (tmp_path / "eval").glob("predictions_converted-*.csv")  # named after what was evaluated
    with predictions.open() as f:
        row = next(csv.DictReader(f))
    assert int(row["predicted"]) == int(logits.argmax())
    assert float(row["score"]) == pytest.approx(float(logits.max()), rel=1e-5, abs=2e-4)  # float32, 4 decimals


class Arbitrary:
    """An object a checkpoint might pickle: loading it would run code."""


def test_convert_reads_what_the_references_write_and_refuses_code(tmp_path):
    golden = load_golden(next(p for p in GOLDEN if "official__tsn" in p.name))
    state = wrap(draw_state(golden["keys"], golden["seed"], golden.get("scale")), golden["wrapper"])
    # the paper's train.py: best_top1 a tensor, an SGD and a MultiStepLR state (a Counter)
    state.update(best_top1=torch.tensor(70.0), scheduler={"milestones": collections.Counter([10, 20])},
                 meta={"seed": np.int64(3), "history": np.zeros(2)})  # NumPy values as in MMAction2's meta
    path = tmp_path / "ckpt.pth"
    torch.save(state, path)
    assert convert_checkpoint(path)["source"]["best_top1"] == 70.0
    torch.save({"state_dict": {}, "hook": Arbitrary()}, path)
    with pytest.raises(ConversionError, match="Arbitrary.*Only tensors"):
        read_checkpoint(path)


def test_convert_errors_name_the_keys(tmp_path):
    golden = load_golden(next(p for p in GOLDEN if "tsm__tsm_resnet50.json" in p.name))
    state = draw_state(golden["keys"], golden["seed"], golden.get("scale"))
    state.pop("base_model.layer1.0.conv1.net.weight")
    state["base_model.extra.weight"] = torch.zeros(3)
    path = tmp_path / golden["file_name"]
    torch.save(wrap(state, golden["wrapper"]), path)
    with pytest.raises(ConversionError) as error:
        convert_checkpoint(path)
    assert "base_model.extra.weight" in str(error.value) and "layer1.0.conv1.weight" in str(error.value)
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(ConversionError, match="cannot tell which codebase.*--from"):
        convert_checkpoint(path)


def test_convert_command_answers_mistakes_in_one_line(tmp_path, capsys):
    golden = load_golden(next(p for p in GOLDEN if "official__tsn" in p.name))
    source = _write_reference_checkpoint(golden, tmp_path)
    out = tmp_path / "out.pt"
    assert main(["convert", str(tmp_path / "missing.pth"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["convert", str(source), "--out", str(out)]) == 0
    assert "tsn_resnet18" in capsys.readouterr().out
    before = out.read_bytes()
    assert main(["convert", str(source), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["convert", str(source), "--out", str(tmp_path / "x.pt"), "--protocol", "data.colour=1"]) == 2
    assert "data.colour" in capsys.readouterr().err


def test_converted_checkpoint_fine_tunes_with_its_normalisation(tmp_path):
    from actionbench.config import Config
    from actionbench.engine.assembly import adopt_pretrained_normalisation

    golden = load_golden(next(p for p in GOLDEN if "pyslowfast__I3D" in p.name))
    converted = tmp_path / "i3d.pt"
    assert main(["convert", str(_write_reference_checkpoint(golden, tmp_path)), "--out", str(converted)]) == 0
    cfg = Config()
    cfg.model.name, cfg.model.pretrained = "i3d3x1_resnet50", str(converted)
    cfg.model.temporal_pooling, cfg.model.options = True, {"pool_style": "c2d"}
    adopt_pretrained_normalisation(cfg)
    assert cfg.model.mean == [0.45, 0.45, 0.45] and cfg.model.std == [0.225, 0.225, 0.225]
    model = build_run_model(cfg, 7)  # another class count: the classifier is replaced, the rest loaded
    weights = torch.load(converted, weights_only=True)["model"]
    assert torch.equal(model.state_dict()["layer4.2.conv3.weight"], weights["layer4.2.conv3.weight"])
    assert model.fc.out_features == 7 and model.mean == (0.45, 0.45, 0.45)
