"""Studies and reports: expansion, skipping finished runs, a 2-run micro-study end to end, the HTML page."""

import csv
import json

import pytest

from actionbench.cli import main
from actionbench.data.synthetic import make_synthetic_dataset
from actionbench.study.report import embedded_image_count, markdown_table, write_report
from actionbench.study.runner import expand_runs, load_study, torchrun_commands

RESULTS = [
    {"dataset": "ssv2", "model": "tsn_resnet50", "frames": 8, "temporal_pooling": False, "sampling": "uniform",
     "clip_top1": 33.9, "video_top1": 35.0, "paper_gflops": 32.7, "params": 23_686_295},
    {"dataset": "ssv2", "model": "tam_resnet50", "frames": 8, "temporal_pooling": True, "sampling": "uniform",
     "clip_top1": 65.4, "video_top1": 66.0, "paper_gflops": 14.2, "params": 23_725_655},
    {"dataset": "kinetics", "model": "i3d_inception_v1", "frames": 16, "temporal_pooling": False,
     "sampling": "dense", "clip_top1": 70.9, "video_top1": 72.0, "paper_gflops": 67.1, "params": 12_376_439},
]


def test_report_files_table_and_self_contained_html(tmp_path):
    paths = write_report(RESULTS, tmp_path, title="t", paragraphs=["finding <b>x</b>"])
    rows = list(csv.DictReader(paths["csv"].open()))
    assert list(rows[0])[:7] == ["dataset", "label", "model", "frames", "temporal_pooling", "clip_top1",
                                 "video_top1"]
    assert len(rows) == 3
    md = paths["markdown"].read_text()
    assert "| ssv2 | tam_resnet50 | 8 | yes | uniform | 65.4 | 66.0 | 14.2 | 23.73 |" in md  # no predictions: no CI
    assert paths["png"].stat().st_size > 10_000 and paths["svg"].read_text().startswith("<?xml")
    page = paths["html"].read_text()
    assert embedded_image_count(page) == 1 and "<table>" in page and "finding &lt;b&gt;x&lt;/b&gt;" in page
    assert "src=\"http" not in page and "<link" not in page  # nothing to fetch: one file
    with pytest.raises(ValueError, match="no results"):
        write_report([], tmp_path)
    assert markdown_table(RESULTS).count("\n") == 5


def test_study_expansion_names_and_torchrun_commands(tmp_path):
    (tmp_path / "s.yaml").write_text(
        "name: s\noverrides: [optim.epochs=1]\n"
        "datasets:\n  - {name: a, overrides: [data.train_list=a/train.txt, data.val_list=a/val.txt]}\n"
        "  - {name: b, overrides: [data.train_list=/data/b/train.txt, data.val_list=/data/b/val.txt]}\n"
        "axes:\n  model.name: [tsn_resnet18, tam_resnet50]\n  model.temporal_pooling: [false, true]\n"
        "  data.frames: [8, 16]\n")
    runs = expand_runs(load_study(tmp_path / "s.yaml"))
    assert len(runs) == 16 and len({r.name for r in runs}) == 16
    assert runs[0].name == "a/tsn_resnet18_notp_f8" and runs[-1].name == "b/tam_resnet50_tp_f16"
    assert "model.temporal_pooling=true" in runs[-1].overrides and "dataset=b" in runs[-1].overrides
    commands = torchrun_commands(tmp_path / "s.yaml", tmp_path / "out", nproc_per_node=6, nnodes=2)
    assert len(commands) == 16 and commands[0].startswith("torchrun --nproc_per_node=6 --nnodes=2")
    assert "actionbench train" in commands[0] and "--resume-if-any" in commands[0]
    assert f"data.train_list={tmp_path}/a/train.txt" in commands[0]  # relative to the study file
    assert f"output_dir={tmp_path}/out/runs/a/tsn_resnet18_notp_f8-" in commands[0]
    (tmp_path / "bad.yaml").write_text("axis: {}\n")
    with pytest.raises(ValueError, match="unknown study keys"):
        load_study(tmp_path / "bad.yaml")


def test_two_run_micro_study_end_to_end(tmp_path, capsys):
    syn = make_synthetic_dataset(tmp_path / "syn", "temporal", 4, 6, seed=0, frames=8, size=32, workers=1)
    (tmp_path / "study.yaml").write_text(
        "name: micro\n"
        "overrides: [model.base_channels=8, data.size=32, data.scale_size=32, data.frames=4, optim.epochs=1,\n"
        "            data.batch_size=8, data.workers=0, train.progress=false, train.tensorboard=false,\n"
        "            test.num_clips=1, test.num_crops=1]\n"
        f"datasets:\n  - {{name: syn, overrides: [data.train_list={syn['train']}, data.val_list={syn['val']}]}}\n"
        "axes:\n  model.name: [tsn_resnet18, tsm_resnet18]\n")
    out = tmp_path / "out"
    assert main(["study", str(tmp_path / "study.yaml"), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["model"] for r in rows] == ["tsn_resnet18", "tsm_resnet18"] and {r["dataset"] for r in rows} == {"syn"}
    assert (out / "accuracy_vs_gflops.png").is_file() and (out / "accuracy_vs_gflops.svg").is_file()
    page = (out / "report.html").read_text()
    assert "tsm_resnet18" in page and embedded_image_count(page) == 3  # accuracy vs cost, reliance, per class
    assert "<h2>Temporal reliance</h2>" in page and (out / "temporal_reliance.png").is_file()
    assert len(list(out.glob("runs/syn/*/temporal_reliance_best-*.json"))) == 2  # in each run's own directory
    # a second invocation skips finished runs and rewrites the same report
    [tsn_dir] = (out / "runs" / "syn").glob("tsn_resnet18-*")  # named after its config's hash
    first = json.loads((tsn_dir / "results.json").read_text())
    capsys.readouterr()
    assert main(["study", str(tmp_path / "study.yaml"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("finished earlier, skipped") == 2
    assert json.loads((tsn_dir / "results.json").read_text()) == first
    # another config (an override after the options) is another run: trained, not the 1-epoch results reused
    assert main(["study", str(tmp_path / "study.yaml"), "--out", str(out), "optim.epochs=2"]) == 0
    assert "finished earlier" not in capsys.readouterr().out
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {r["epochs"] for r in rows} == {"2"} and len(list((out / "runs" / "syn").glob("tsn_resnet18-*"))) == 2


def _demo_results(folder, temporal, appearance, reversal_tsn=50.0):
    """Runs of the demo's four models on both sets, each right on the first `accuracy`% of 80 test videos."""
    models = ("tsn_resnet18", "tsm_resnet18", "tam_resnet18", "i3d_resnet18")
    rows = []
    for dataset, accuracies in (("temporal", temporal), ("appearance", appearance)):
        for model, accuracy in zip(models, accuracies, strict=True):
            correct = [i < round(0.8 * accuracy) for i in range(80)]
            row = _run_with_predictions(folder / dataset / model, model, correct, dataset=dataset)
            row["reversal_acc"] = reversal_tsn if model.startswith("tsn") else 90.0
            rows.append(row)
    return rows


def test_demo_finding_is_computed_from_the_significance_of_the_numbers(tmp_path):
    from actionbench.study.demo import finding

    shown = finding(_demo_results(tmp_path / "a", [45, 80, 90, 70], [95, 96, 97, 94]))
    assert shown[-1].startswith("Finding: temporal modelling is essential")
    assert "no design differs significantly from TSN" in shown[1]
    not_shown = finding(_demo_results(tmp_path / "b", [45, 46, 90, 70], [95, 96, 97, 94]))
    assert "(not significant)" in not_shown[0] and "did NOT show" in not_shown[-1]
    reversal = finding(_demo_results(tmp_path / "c", [45, 80, 90, 70], [95, 96, 97, 94], reversal_tsn=80))
    assert "did NOT show" in reversal[-1]


def test_demo_difference_seen_from_the_other_model_keeps_its_interval_and_prints_no_negative_zero():
    from actionbench.study.demo import _versus

    row = {"dataset": "appearance", "a": "tsn_resnet18", "b": "i3d_resnet18", "difference": 10.0, "ci_low": 0.0,
           "ci_high": 20.0, "significant": False}
    seen = _versus([row], "appearance", "i3d_resnet18", "tsn_resnet18")
    assert seen == {"difference": -10.0, "low": -20.0, "high": 0.0, "significant": False}
    assert f"{seen['high']:.1f}" == "0.0"
    assert _versus([row], "temporal", "i3d_resnet18", "tsn_resnet18") is None


def test_reversal_accuracy(tmp_path):
    from actionbench.study.demo import reversal_accuracy

    (tmp_path / "p.csv").write_text("video_id,path,label,predicted,score,top5\n"
                                    "a,a,left,left,1,x\nb,b,left,right,1,x\nc,c,right,right,1,x\nd,d,up,left,1,x\n")
    assert reversal_accuracy(tmp_path / "p.csv", [[0, 1], [2, 3]], ["left", "right", "up", "down"]) == pytest.approx(
        200 / 3)


def _run_with_predictions(folder, name, correct, seed=0, dataset="d", run=None):
    """A finished run's results.json fields and its predictions.csv: video i right when correct[i]."""
    folder.mkdir(parents=True)
    with (folder / "predictions.csv").open("w") as f:
        f.write("video_id,path,label,predicted,probability,score,top5\n")
        for i, ok in enumerate(correct):
            f.write(f"v{i},v{i}.mp4,a,{'a' if ok else 'b'},0.9,1.0,a|b\n")
    top1 = 100 * sum(correct) / len(correct)
    return {"dataset": dataset, "model": name, "run": run or f"{dataset}/{name}", "frames": 8, "seed": seed,
            "temporal_pooling": False, "sampling": "uniform", "video_top1": top1, "clip_top1": top1,
            "paper_gflops": 1.0, "params": 1000, "num_classes": 4, "output_dir": str(folder),
            "video_top1_ci": [top1 - 5, top1 + 5]}


def test_seeds_are_grouped_and_differences_tested_on_the_same_videos(tmp_path):
    import numpy as np

    from actionbench.study.compare import compare_groups, findings, group_results

    rng = np.random.default_rng(0)
    strong = [[bool(rng.random() < 0.85) for _ in range(80)] for _ in range(3)]
    weak = [[bool(rng.random() < 0.45) for _ in range(80)] for _ in range(3)]
    results = [_run_with_predictions(tmp_path / f"strong{s}", "tam_resnet18", strong[s], s) for s in range(3)]
    results += [_run_with_predictions(tmp_path / f"weak{s}", "tsn_resnet18", weak[s], s) for s in range(3)]
    results += [_run_with_predictions(tmp_path / "twin", "tsm_resnet18", weak[0], 0)]
    rows = group_results(results)
    assert [r["runs"] for r in rows] == [3, 3, 1]
    tam = rows[0]
    assert tam["video_top1"] == pytest.approx(np.mean([100 * np.mean(x) for x in strong]))
    assert tam["video_top1_std"] > 0 and len(tam["video_top1_runs"]) == 3
    assert tam["video_top1_ci"][0] < tam["video_top1"] < tam["video_top1_ci"][1]
    comparisons = compare_groups(rows)
    by_pair = {(c["a"], c["b"]): c for c in comparisons}
    strong_weak = by_pair[("tam_resnet18", "tsn_resnet18")]
    assert strong_weak["significant"] and strong_weak["seed_aware"] and strong_weak["p_adjusted"] < 0.05
    assert strong_weak["p_adjusted"] >= strong_weak["p"] and strong_weak["family"] == 3
    twins = by_pair.get(("tsn_resnet18", "tsm_resnet18")) or by_pair[("tsm_resnet18", "tsn_resnet18")]
    assert twins["seeds_b"] == 1 or twins["seeds_a"] == 1
    assert not twins["seed_aware"] and not twins["significant"] and twins["difference"] == 0
    text = findings(rows, comparisons)[0]
    assert "tam_resnet18 > tsn_resnet18" in text and "compare trained models, not designs" in text
    baseline = compare_groups(rows, baseline="tsn_resnet18")  # each vs the baseline: a family of 2
    assert sorted((c["a"], c["b"]) for c in baseline) == [("tam_resnet18", "tsn_resnet18"),
                                                         ("tsm_resnet18", "tsn_resnet18")]
    assert all(c["family"] == 2 for c in baseline)
    paths = write_report(results, tmp_path / "report")
    assert "± " in paths["markdown"].read_text() and "(3 seeds)" in paths["markdown"].read_text()
    assert paths["comparisons"].read_text().count("\n") == 4  # header + 3 pairs
    (tmp_path / "weak2" / "predictions.csv").unlink()  # a seed's run without predictions: its pairs are left out
    left = [{c["a"], c["b"]} for c in compare_groups(group_results(results))]
    assert len(left) == 2 and {"tam_resnet18", "tsn_resnet18"} not in left


def test_a_study_with_seeds_names_and_groups_its_runs(tmp_path):
    (tmp_path / "s.yaml").write_text("name: s\nseeds: [0, 1]\naxes:\n  model.name: [tsn_resnet18, tsm_resnet18]\n")
    runs = expand_runs(load_study(tmp_path / "s.yaml"))
    assert [r.name for r in runs] == ["default/tsn_resnet18_s0", "default/tsn_resnet18_s1",
                                      "default/tsm_resnet18_s0", "default/tsm_resnet18_s1"]
    assert runs[1].group == "default/tsn_resnet18" and "seed=1" in runs[1].overrides
    (tmp_path / "r.yaml").write_text("name: r\nrepeats: 3\naxes:\n  model.name: [tsn_resnet18]\n")
    assert [r.seed for r in expand_runs(load_study(tmp_path / "r.yaml"))] == [0, 1, 2]


def test_configurations_that_differ_only_in_their_seeds_are_reported_indistinguishable(tmp_path):
    """Three 'designs' that are the same model with different seeds (each seed its own skill): no finding, and the
    report says how large a difference the study could have seen."""
    import numpy as np

    from actionbench.study.compare import compare_groups, findings, group_results

    rng = np.random.default_rng(3)
    difficulty = rng.normal(0, 1.5, 300)
    results = []
    for name in ("tsn_resnet18", "tsm_resnet18", "tam_resnet18"):
        for seed in range(3):
            logit = 0.3 + difficulty + rng.normal(0, 0.35) + rng.normal(0, 0.7, 300)
            correct = list(rng.random(300) < 1 / (1 + np.exp(-logit)))
            results.append(_run_with_predictions(tmp_path / f"{name}{seed}", name, correct, seed))
    rows = group_results(results)
    comparisons = compare_groups(rows)
    assert len(comparisons) == 3 and not any(c["significant"] for c in comparisons)
    assert all(c["seed_aware"] and c["p_adjusted"] >= c["p"] and c["mdd"] > 0 for c in comparisons)
    text = findings(rows, comparisons)[0]
    assert "indistinguishable" in text and f"about {comparisons[0]['mdd']:.1f} points" in text


def test_local_launcher_runs_in_parallel_on_separate_devices_and_reports_status(tmp_path, capsys):
    import yaml

    data = make_synthetic_dataset(tmp_path / "syn", "temporal", 4, 4, seed=2, frames=4, size=32, workers=1)
    study = tmp_path / "par.yaml"
    study.write_text(yaml.safe_dump({
        "name": "parallel", "overrides": [
            "model.base_channels=4", "data.frames=4", "data.size=32", "data.scale_size=32", "data.workers=0",
            "data.batch_size=4", "optim.epochs=1", "train.progress=false", "train.tensorboard=false",
            "test.num_clips=1", "test.num_crops=1", "device=cpu", f"data.train_list={data['train']}",
            f"data.val_list={data['val']}"],
        "axes": {"model.name": ["tsn_resnet18", "tsm_resnet18"]}}))
    out = tmp_path / "out"
    assert main(["study", str(study), "--out", str(out), "--launcher", "local", "--parallel", "2",
                 "--skip-analysis"]) == 0
    printed = capsys.readouterr().out
    assert "devices 0" in printed and "devices 1" in printed and "2 runs: 2 finished" in printed
    records = [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/*/job.json"))]
    assert sorted(r["devices"] for r in records) == ["0", "1"] and all(r["state"] == "finished" for r in records)
    assert main(["study", "status", str(out)]) == 0 and "2 finished" in capsys.readouterr().out
    assert main(["study", str(study), "--out", str(out), "--launcher", "local", "--parallel", "2",
                 "--skip-analysis"]) == 0  # finished: nothing starts again
    assert "0 of 2 runs to start" in capsys.readouterr().out
    assert main(["study", "status", str(tmp_path / "nothing")]) == 2  # not a study's folder: one line
    assert "holds no submitted study" in capsys.readouterr().err


def _class_predictions(folder, accuracy: dict[str, float], partner: dict[str, str], seed: int, videos: int = 30):
    """predictions.csv of a run over classes c0..c3 (`videos` each): right with the class's accuracy, else the
    class's partner predicted."""
    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    right = {}
    with (folder / "predictions.csv").open("w") as f:
        f.write("video_id,path,label,predicted,probability,score,top5\n")
        for name, share in accuracy.items():
            for i in range(videos):
                ok = bool(rng.random() < share)
                right[f"{name}/v{i}.mp4"] = ok
                f.write(f"v{i},{name}/v{i}.mp4,{name},{name if ok else partner[name]},0.9,1.0,{name}\n")
    return right


def test_per_class_differences_show_where_a_design_gains_and_which_classes_it_confuses(tmp_path):
    import numpy as np

    from actionbench.study.compare import compare_groups, group_results
    from actionbench.study.per_class import class_differences, confused_pairs

    partner = {"c0": "c1", "c1": "c0", "c2": "c3", "c3": "c2"}
    strong = {"c0": 0.95, "c1": 0.95, "c2": 0.9, "c3": 0.9}
    weak = {"c0": 0.95, "c1": 0.95, "c2": 0.15, "c3": 0.9}  # loses class c2 (to c3) only
    results, outcomes = [], {"tam": [], "tsn": []}
    for name, accuracy in (("tam", strong), ("tsn", weak)):
        for seed in range(3):
            folder = tmp_path / f"{name}{seed}"
            right = _class_predictions(folder, accuracy, partner, seed + (10 if name == "tsn" else 0))
            outcomes[name].append(right)
            top1 = 100 * np.mean(list(right.values()))
            results.append({"dataset": "d", "model": f"{name}_resnet18", "run": f"d/{name}_resnet18", "seed": seed,
                            "frames": 8, "temporal_pooling": False, "sampling": "uniform", "video_top1": top1,
                            "clip_top1": top1, "paper_gflops": 1.0, "params": 1000, "num_classes": 4,
                            "output_dir": str(folder)})
    rows = group_results(results)
    comparisons = compare_groups(rows, baseline="tsn_resnet18")
    differences = class_differences(rows, comparisons)
    by_class = {d["class"]: d for d in differences}
    assert set(by_class) == {"c0", "c1", "c2", "c3"} and differences[0]["class"] == "c2"  # the largest gain first
    assert all(-100 <= d["ci_low"] <= d["difference"] <= d["ci_high"] <= 100 for d in differences)  # cut to bounds
    gain = by_class["c2"]
    assert gain["ci_low"] > 40 and gain["seed_aware"] and gain["videos"] == 30
    for same in ("c0", "c1", "c3"):
        assert by_class[same]["ci_low"] < 0 < by_class[same]["ci_high"] or by_class[same]["difference"] == 0
    # the per-class accuracies, computed here independently from the predictions
    expected = 100 * np.mean([[o[f"c2/v{i}.mp4"] for i in range(30)] for o in outcomes["tsn"]])
    assert gain["b_acc"] == pytest.approx(expected, abs=0.01)
    confused = {c["configuration"]: c for c in confused_pairs(rows, top=1)}
    assert (confused["tsn_resnet18"]["true"], confused["tsn_resnet18"]["predicted"]) == ("c2", "c3")
    assert confused["tsn_resnet18"]["share"] > 70 and confused["tsn_resnet18"]["seeds"] == 3
    paths = write_report(results, tmp_path / "report", baseline="tsn_resnet18")
    page = paths["html"].read_text()
    assert "<h2>Per class</h2>" in page and "Most confused class pairs" in page and embedded_image_count(page) == 2
    assert paths["per_class_png"].stat().st_size > 10_000 and paths["confusions"].read_text().count("\n") == 7
