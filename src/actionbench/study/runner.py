"""Studies (`actionbench study STUDY.yaml`): a base config and axes to sweep, run one after another or printed as
torchrun commands for a cluster, gathered into one report.

```yaml
name: my study
base: ../cpu_small.yaml            # a config file, relative to this file (optional)
overrides: [optim.epochs=8]        # applied to every run
datasets:                          # optional; each adds its own overrides and a name
  - {name: temporal, overrides: [data.train_list=syn/train.txt, data.val_list=syn/val.txt]}
axes:                              # every combination becomes a run
  model.name: [tsn_resnet18, tam_resnet18]
  model.temporal_pooling: [false, true]
  data.frames: [8, 16]
```
A run's directory is `OUT/runs/<dataset>/<axis values>`; a run with a results.json is skipped, an interrupted one
resumes from its last.pt.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from actionbench.config import ConfigError, load_config


@dataclass(frozen=True)
class Run:
    name: str
    dataset: str
    overrides: tuple[str, ...]


def _value_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _short(key: str, value) -> str:
    leaf = key.split(".")[-1]
    if leaf == "name":
        return str(value)
    if leaf == "temporal_pooling":
        return "tp" if value else "notp"
    if leaf == "frames":
        return f"f{value}"
    return f"{leaf}-{_value_text(value)}"


def load_study(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study file {path} does not exist")
    study = yaml.safe_load(path.read_text()) or {}
    unknown = set(study) - {"name", "base", "overrides", "datasets", "axes"}
    if unknown:
        raise ConfigError(f"{path}: unknown study keys {sorted(unknown)} (name, base, overrides, datasets, axes)")
    study["_dir"] = path.parent
    return study


def expand_runs(study: dict) -> list[Run]:
    """Every combination of the axes, for every dataset, with stable names."""
    axes = study.get("axes") or {}
    keys = list(axes)
    datasets = study.get("datasets") or [{"name": "default", "overrides": []}]
    runs = []
    for dataset in datasets:
        for values in itertools.product(*(axes[k] for k in keys)):
            name = "_".join(_short(k, v) for k, v in zip(keys, values, strict=True)) or "run"
            overrides = (*study.get("overrides", []), *dataset.get("overrides", []),
                         *(f"{k}={_value_text(v)}" for k, v in zip(keys, values, strict=True)),
                         f"dataset={dataset['name']}")
            runs.append(Run(f"{dataset['name']}/{name}", dataset["name"], tuple(overrides)))
    return runs


def base_config_path(study: dict) -> Path | None:
    return (study["_dir"] / study["base"]) if study.get("base") else None


def run_config(study: dict, run: Run, out_dir: Path, extra: tuple[str, ...] = ()):
    return load_config(base_config_path(study),
                       [*run.overrides, *extra, f"output_dir={out_dir / 'runs' / run.name}"])


def run_study(study_path: str | Path, out_dir: str | Path, *, extra_overrides: tuple[str, ...] = (),
              progress: bool = True, on_result=None) -> list[dict]:
    """Run every run not finished yet, one after another; returns all results (finished earlier or now)."""
    from actionbench.engine.trainer import train

    study = load_study(study_path)
    out = Path(out_dir)
    runs = expand_runs(study)
    configs = [run_config(study, r, out, extra_overrides) for r in runs]  # check every config before training
    results = []
    for i, (run, cfg) in enumerate(zip(runs, configs, strict=True), start=1):
        result_file = Path(cfg.output_dir) / "results.json"
        if result_file.is_file():
            result = json.loads(result_file.read_text())
            print(f"[{i}/{len(runs)}] {run.name}: finished earlier, skipped")
        else:
            print(f"[{i}/{len(runs)}] {run.name}: training")
            cfg.train.resume = True  # picks up an interrupted run's last.pt, if any
            cfg.train.progress = progress
            result = train(cfg)
        results.append(result)
        if on_result:
            on_result(run, result)
    return results


def torchrun_commands(study_path: str | Path, out_dir: str | Path, nproc_per_node: int = 8,
                      nnodes: int = 1) -> list[str]:
    """One `torchrun ... actionbench train` command per run (rendezvous placeholders for multi-node)."""
    study = load_study(study_path)
    out = Path(out_dir)
    base = base_config_path(study)
    commands = []
    for run in expand_runs(study):
        launcher = ["torchrun", f"--nproc_per_node={nproc_per_node}"]
        if nnodes > 1:
            launcher += [f"--nnodes={nnodes}", "--rdzv_backend=c10d", "--rdzv_endpoint=$MASTER_ADDR:29500",
                         f"--rdzv_id={run.name.replace('/', '-')}"]
        args = ["-m", "actionbench", "train", *([str(base)] if base else []), *run.overrides,
                f"output_dir={out / 'runs' / run.name}", "train.resume=true"]
        commands.append(" ".join(launcher + [shlex.quote(a) for a in args]))
    return commands


def gather_results(out_dir: str | Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(out_dir, "runs").rglob("results.json"))]


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("study", help="study YAML (see configs/studies/)")
    parser.add_argument("--out", default=None, help="output folder (default: runs/<study file name>)")
    parser.add_argument("--print-commands", action="store_true", help="print one torchrun command per run, run none")
    parser.add_argument("--nproc-per-node", type=int, default=8)
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--report-only", action="store_true", help="gather finished runs' results and write the report")
    parser.add_argument("overrides", nargs="*", help="key=value overrides applied to every run")


def run(args: argparse.Namespace) -> int:
    from actionbench.study.report import write_report

    out = Path(args.out or Path("runs") / Path(args.study).stem)
    if args.print_commands:
        for command in torchrun_commands(args.study, out, args.nproc_per_node, args.nnodes):
            print(command)
        return 0
    if args.report_only:
        results = gather_results(out)
    else:
        results = run_study(args.study, out, extra_overrides=tuple(args.overrides))
    study = load_study(args.study)
    paths = write_report(results, out, title=study.get("name", Path(args.study).stem))
    print(f"report: {paths['html']}  table: {paths['markdown']}")
    return 0
