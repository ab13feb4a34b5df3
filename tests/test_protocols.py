"""The paper's protocols as written (issue 25): Table 4's Mini-datasets from official-size annotation files,
Table 5's progressive initialisation inside a study, and every protocol sentence of docs/protocols.md checked
against the presets."""

import hashlib
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from actionbench.cli import main
from actionbench.config import flat, load_config, to_dict
from actionbench.data.synthetic import make_synthetic_dataset
from tests.test_user_mistakes import TINY

ROOT = Path(__file__).resolve().parents[1]


def _official_size_list(path: Path, videos: int, classes: int, seed: int) -> None:
    """A list file of the size of an official split: `videos` lines over `classes` classes of uneven sizes."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 1.5, classes)
    labels = rng.choice(classes, videos, p=weights / weights.sum())
    path.write_text("".join(f"v/{i:07d}.mp4 c{label:03d}\n" for i, label in enumerate(labels)))


@pytest.mark.parametrize("preset, train, val, classes, expected", [
    ("mini-ssv2", 168_000, 24_000, 174, (87, 81_000, 12_000)),
    ("mini-kinetics", 240_000, 19_000, 400, (200, 121_000, 10_000)),
    ("mini-mit", 802_000, 34_000, 339, (200, 100_000, 10_000)),
])
def test_mini_presets_give_table_4(preset, train, val, classes, expected, tmp_path, capsys):
    src = tmp_path / "official"
    src.mkdir()
    _official_size_list(src / "train.txt", train, classes, seed=1)
    _official_size_list(src / "val.txt", val, classes, seed=2)
    outs = []
    for attempt in ("a", "b"):
        out = tmp_path / attempt
        assert main(["mini", str(src / "train.txt"), "--val", str(src / "val.txt"), "--preset", preset,
                     "--out", str(out)]) == 0
        outs.append(out)
    report = json.loads((outs[0] / "mini.json").read_text())
    got = (report["classes"], report["train_videos"], report["val_videos"])
    assert got[0] == expected[0]
    for have, want in zip(got[1:], expected[1:], strict=True):  # "within rounding": Table 4 gives thousands
        assert abs(have - want) <= 0.05 * want, (got, expected)
    for name in ("train.txt", "val.txt", "classes.txt"):  # the same seed, the same lists
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()
    per_class = np.bincount([int(line.rsplit(" ", 1)[1]) for line in (outs[0] / "train.txt").read_text().split("\n")
                             if line])
    assert per_class.min() >= 1 and len(per_class) == expected[0]  # stratified: every kept class is there
    assert "kept" in capsys.readouterr().out


def test_mini_takes_a_class_count_and_refuses_both(tmp_path, capsys):
    _official_size_list(tmp_path / "train.txt", 1000, 20, seed=3)
    assert main(["mini", str(tmp_path / "train.txt"), "--classes", "5", "--out", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "mini.json").read_text())["classes"] == 5
    assert main(["mini", str(tmp_path / "train.txt"), "--classes", "5", "--fraction", "0.5", "--out",
                 str(tmp_path / "o2")]) == 2
    assert "not both" in capsys.readouterr().err


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("data"), "appearance", 4, 6, seed=3, frames=16, size=32,
                                  workers=1)


def test_a_progression_trains_each_model_from_its_own_shorter_run(data, tmp_path):
    study = tmp_path / "study.yaml"
    overrides = [o for o in TINY if not o.startswith("data.frames")] + [f"data.train_list={data['train']}",
                                                                        f"data.val_list={data['val']}"]
    study.write_text(json.dumps({
        "name": "progressive", "overrides": overrides,
        "axes": {"model.name": ["tsn_resnet18", "tam_resnet18"]},
        "progression": {"data.frames": [4, 8], "checkpoint": "best", "overrides": {8: ["optim.lr=0.005"]}}}))
    out = tmp_path / "out"
    assert main(["study", str(study), "--out", str(out), "--print-commands"]) == 0
    assert main(["study", str(study), "--out", str(out)]) == 0
    runs = {f"default/{p.parent.name.rsplit('-', 1)[0]}": p.parent for p in out.rglob("results.json")}
    assert sorted(runs) == ["default/tam_resnet18_f4", "default/tam_resnet18_f8", "default/tsn_resnet18_f4",
                            "default/tsn_resnet18_f8"]
    for model in ("tsn_resnet18", "tam_resnet18"):
        child, parent = runs[f"default/{model}_f8"], runs[f"default/{model}_f4"]
        config = load_config(child / "config.yaml")
        assert config.model.init_from == str(parent / "best.pt") and config.optim.lr == 0.005
        result = json.loads((child / "results.json").read_text())
        assert result["init_from_sha256"] == hashlib.sha256((parent / "best.pt").read_bytes()).hexdigest()
        # the weights the 8-frame run started from are its own 4-frame run's best.pt
        from actionbench.engine.assembly import build_run_model

        started = build_run_model(config, 4).state_dict()
        best = torch.load(parent / "best.pt", weights_only=True)["model"]
        assert all(torch.equal(started[k], best[k]) for k in best)
    report = (out / "results.md").read_text()
    assert "default/tam_resnet18_f8 from default/tam_resnet18_f4" in report
    # a second command trains nothing again
    assert main(["study", str(study), "--out", str(out)]) == 0


def _rows() -> list[dict]:
    """The table of docs/protocols.md: its cells hold no '|'."""
    rows = []
    for line in (ROOT / "docs" / "protocols.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| ") else []
        if len(cells) == 5 and cells[0] not in ("§", "---"):
            rows.append(dict(zip(("section", "sentence", "presets", "check", "note"), cells, strict=True)))
    return rows


def _check(name: str, argument: str) -> None:
    """The checks a row names that no preset key can show: the code's behaviour."""
    from actionbench.data import sampling
    from actionbench.data.extract import extract_frames
    from actionbench.data.splits import MINI_PRESETS
    from actionbench.models.backbones.resnet import IMAGENET_MEAN, IMAGENET_STD
    from actionbench.models.registry import build_model
    from actionbench.study.runner import expand_runs, load_study

    if name == "extract-short-side":
        assert inspect.signature(extract_frames).parameters["short_side"].default == int(argument)
    elif name == "uniform-train-jitter":
        draws = {tuple(sampling.uniform_train_indices(80, 8, np.random.default_rng(s))) for s in range(20)}
        assert len(draws) > 1 and all(len({i - 10 * k for k, i in enumerate(d)}) == 1 for d in draws)
    elif name == "backbone-normalisation":
        assert build_model("tsn_resnet50", 2, 8).mean == IMAGENET_MEAN
        assert build_model("tsn_resnet50", 2, 8).std == IMAGENET_STD
        assert build_model("tsn_inception_v1", 2, 8).mean == (0.5, 0.5, 0.5)
    elif name == "uniform-middle":
        assert sampling.uniform_test_indices(80, 8).tolist() == [5 + 10 * k for k in range(8)]
    elif name == "dense-first":
        assert sampling.dense_test_indices(100, 8, 2).tolist()[0] == 0
    elif name == "dense-test-starts":
        starts = [int(sampling.dense_test_indices(100, 8, 2, c, 10)[0]) for c in range(10)]
        assert starts == [int(s) for s in np.linspace(0, 100 - 16, 10)]
    elif name == "uniform-test-offsets":
        middle = sampling.uniform_test_indices(800, 8)
        offsets = [int(sampling.uniform_test_indices(800, 8, c, 10)[0] - middle[0]) for c in range(10)]
        assert offsets == list(range(-4, 6))  # -m/2 < i <= m/2, m = 10 (the official code)
    elif name == "mini-preset":
        preset, *numbers = argument.split(",")
        assert MINI_PRESETS[preset] == tuple(int(n) for n in numbers)
    elif name == "progression":
        for file in argument.split(","):
            study = load_study(ROOT / "configs" / file)
            assert study["progression"]["data.frames"] == [8, 16, 32, 64]
            runs = expand_runs(study)
            for run in runs:
                step = [v for k, v in (o.split("=", 1) for o in run.overrides) if k == "data.frames"][-1]
                if step != "8":
                    parent = runs[run.parent]
                    assert run.name.rsplit("_f", 1)[0] == parent.name.rsplit("_f", 1)[0]  # its own model
    else:
        raise AssertionError(f"docs/protocols.md names an unknown check {name!r}")


def test_every_protocol_sentence_holds_in_the_presets():
    rows = _rows()
    assert len(rows) >= 30
    checked = 0
    for row in rows:
        presets = [p.strip() for p in row["presets"].split(",") if p.strip()]
        for part in (p.strip().strip("`") for p in row["check"].split("`;")):
            if part.startswith("check:"):
                name, _, argument = part.removeprefix("check:").strip().partition("=")
                _check(name, argument)
                checked += 1
            elif part:
                assert presets, row["sentence"]
                for preset in presets:
                    values = flat(to_dict(load_config(ROOT / "configs" / f"{preset}.yaml")))
                    for pair in part.strip("` ").split("; "):
                        key, _, text = pair.partition("=")
                        assert values[key] == yaml.safe_load(text), (preset, key, values[key], row["sentence"])
                        checked += 1
    assert checked >= 60
