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
seeds: [0, 1, 2]                   # optional: every run once per seed (or `repeats: 3` for seeds 0, 1, 2)
baseline: tsn_resnet18             # optional: compare each configuration with this one (a smaller family)
launcher: {name: slurm, partition: gpu, gpus_per_node: 8, time: "2-00:00:00", max_concurrent: 8}
                                   # optional: where the runs train (docs/cluster.md); flags override it
progression:                       # optional: the paper's Table 5 chain, each run starting from the previous one's
  data.frames: [8, 16]             #   weights (its model.init_from), per model, dataset and seed
  checkpoint: best                 #   best (default) | last
  overrides: {16: [optim.epochs=35, optim.schedule=multistep, "optim.milestones=[10,20,30]"]}
```
A run of a progression is trained once the run it starts from has finished (the local runner orders them; its
config names that run's checkpoint, so a changed parent is a new child run).
Paths in a study (its `base`, data lists, weights) are relative to the study file. A run is identified by its
resolved config: its directory is `OUT/runs/<dataset>/<axis values>[_s<seed>]-<hash of the config>`, so a changed
config (command-line overrides included) is a new run in a new directory, never a silent reuse of another's
results; a run with a results.json is skipped, an interrupted one resumes from its last.pt. Every run's config is
checked (keys, values, model names and options, data files) before the first one trains.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from actionbench.config import (
    PATH_KEYS,
    RESUME_MAY_CHANGE,
    Config,
    ConfigError,
    absolute_paths,
    apply_overrides,
    flat,
    load_config,
    read_yaml_mapping,
    split_overrides,
    to_dict,
)

_STUDY_KEYS = {"name", "base", "overrides", "datasets", "axes", "seeds", "repeats", "progression", "baseline",
               "launcher"}


@dataclass(frozen=True)
class Run:
    name: str  # <dataset>/<axis values>[_s<seed>]
    dataset: str
    overrides: tuple[str, ...]
    seed: int | None = None
    group: str = ""  # the name without the seed: the runs a report groups over seeds
    parent: int | None = None  # index of the run (in the study's list) whose weights this one starts from
    checkpoint: str = "best"  # which of the parent's checkpoints


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
    study = read_yaml_mapping(path, "study file", f"a mapping with {', '.join(sorted(_STUDY_KEYS))}")
    unknown = set(study) - _STUDY_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown study keys {sorted(unknown)} ({', '.join(sorted(_STUDY_KEYS))})")
    if "seeds" in study and "repeats" in study:
        raise ConfigError(f"{path}: give seeds or repeats, not both")
    _check_progression(path, study)
    study["_dir"], study["_path"] = path.parent.resolve(), path
    return study


def _check_progression(path: Path, study: dict) -> None:
    chain = study.get("progression")
    if chain is None:
        return
    keys = [k for k in chain if k not in ("checkpoint", "overrides")] if isinstance(chain, dict) else []
    if len(keys) != 1 or not isinstance(chain[keys[0]], list) or len(chain[keys[0]]) < 2:
        raise ConfigError(f"{path}: progression needs one config key with two or more values, e.g. "
                          "progression: {data.frames: [8, 16, 32, 64]}")
    if keys[0] in (study.get("axes") or {}):
        raise ConfigError(f"{path}: {keys[0]} is both an axis and the progression; keep it in one of them")
    if chain.get("checkpoint", "best") not in ("best", "last"):
        raise ConfigError(f"{path}: progression checkpoint must be best or last, got {chain['checkpoint']!r}")
    unknown = {str(k) for k in chain.get("overrides") or {}} - {_value_text(v) for v in chain[keys[0]]}
    if unknown:
        raise ConfigError(f"{path}: progression overrides for values not in it: {sorted(unknown)}")


def _progression(study: dict) -> tuple[str | None, list, dict, str]:
    """(key, values, per-value overrides, checkpoint) of the study's progression; (None, [None], {}, "") without."""
    chain = study.get("progression")
    if not chain:
        return None, [None], {}, ""
    key = next(k for k in chain if k not in ("checkpoint", "overrides"))
    overrides = {str(k): v for k, v in (chain.get("overrides") or {}).items()}  # YAML keys 16, JSON keys "16"
    return key, list(chain[key]), overrides, chain.get("checkpoint", "best")


def study_seeds(study: dict) -> list[int | None]:
    if "repeats" in study:
        return list(range(int(study["repeats"])))
    return list(study.get("seeds") or [None])


def expand_runs(study: dict) -> list[Run]:
    """Every combination of the axes, for every dataset and seed (and step of the progression), with stable names;
    a progression's runs come after the runs they start from."""
    axes = study.get("axes") or {}
    keys = list(axes)
    datasets = study.get("datasets") or [{"name": "default", "overrides": []}]
    chain_key, chain_values, chain_overrides, checkpoint = _progression(study)
    runs: list[Run] = []
    index: dict[tuple, int] = {}
    for step, chain_value in enumerate(chain_values):
        for dataset in datasets:
            for values in itertools.product(*(axes[k] for k in keys)):
                pairs = list(zip(keys, values, strict=True))
                if chain_key is not None:
                    pairs.append((chain_key, chain_value))
                name = "_".join(_short(k, v) for k, v in pairs) or "run"
                overrides = (*study.get("overrides", []), *dataset.get("overrides", []),
                             *(f"{k}={_value_text(v)}" for k, v in pairs),
                             *(chain_overrides.get(_value_text(chain_value)) or ()), f"dataset={dataset['name']}")
                for seed in study_seeds(study):
                    seeded = (*overrides, f"seed={seed}") if seed is not None else overrides
                    suffix = f"_s{seed}" if seed is not None else ""
                    parent = index.get((step - 1, dataset["name"], values, seed)) if step else None
                    index[(step, dataset["name"], values, seed)] = len(runs)
                    runs.append(Run(f"{dataset['name']}/{name}{suffix}", dataset["name"], seeded, seed,
                                    f"{dataset['name']}/{name}", parent, checkpoint or "best"))
    baseline = study.get("baseline")
    labels = sorted({run.group.split("/")[-1] for run in runs})
    if baseline is not None and baseline not in labels:
        raise ConfigError(f"{study.get('_path', 'study')}: baseline {baseline!r} is none of the study's configurations "
                          f"({', '.join(labels[:8])}); name one of them, or leave baseline out to compare every pair")
    return runs


def base_config_path(study: dict) -> Path | None:
    return (study["_dir"] / study["base"]) if study.get("base") else None


def config_hash(cfg: Config) -> str:
    """What identifies a run: its resolved config, except what a resume may change."""
    values = {k: v for k, v in flat(to_dict(cfg)).items() if k not in RESUME_MAY_CHANGE}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_config(study: dict, run: Run, out_dir: Path, extra: tuple[str, ...] = ()) -> Config:
    """The run's resolved config: paths of the study relative to its file, those of `extra` (the command line)
    relative to the working directory; its output directory named after the config it holds."""
    cfg = absolute_paths(load_config(base_config_path(study), list(run.overrides)), study["_dir"])
    cfg = absolute_paths(apply_overrides(cfg, list(extra)))
    cfg.output_dir = str((out_dir / "runs" / f"{run.name}-{config_hash(cfg)}").resolve())
    return cfg


def check_configs(configs: list[Config], files: bool = True) -> None:
    """Everything that can be checked before the first run trains: models (names and options) and data files
    (`files=False`: not whether they exist here)."""
    from actionbench.engine.assembly import check_model_config, check_run_config

    for cfg in configs:
        check_run_config(cfg, files)
        check_model_config(cfg)


def study_configs(study_path: str | Path, out_dir: str | Path,
                  extra: tuple[str, ...] = ()) -> tuple[dict, list[Run], list[Config]]:
    study = load_study(study_path)
    runs = expand_runs(study)
    configs: list[Config] = []
    for run in runs:  # parents first: a child's config names its parent's checkpoint, so its hash follows it
        parent = configs[run.parent] if run.parent is not None else None
        init = (f"model.init_from={Path(parent.output_dir) / f'{run.checkpoint}.pt'}",) if parent else ()
        configs.append(run_config(study, replace(run, overrides=(*run.overrides, *init)), Path(out_dir), extra))
    return study, runs, configs


def run_study(study_path: str | Path, out_dir: str | Path, *, extra_overrides: tuple[str, ...] = (),
              progress: bool = True, on_result=None) -> list[dict]:
    """Run every run not finished yet, one after another; returns all results (finished earlier or now)."""
    from actionbench.engine.trainer import train

    _, runs, configs = study_configs(study_path, out_dir, extra_overrides)
    check_configs(configs)
    results = []
    for i, (run, cfg) in enumerate(zip(runs, configs, strict=True), start=1):
        result_file = Path(cfg.output_dir) / "results.json"
        parent = configs[run.parent] if run.parent is not None else None
        if parent is not None and not Path(cfg.model.init_from).is_file():
            raise ConfigError(f"{run.name} starts from {runs[run.parent].name}'s {run.checkpoint}.pt, which "
                              f"{Path(parent.output_dir).name} does not hold (did that run finish?)")
        if result_file.is_file():  # its directory name is its config's hash: the same run
            result = json.loads(result_file.read_text())
            print(f"[{i}/{len(runs)}] {run.name}: finished earlier, skipped")
        else:
            print(f"[{i}/{len(runs)}] {run.name}: training")
            cfg.train.progress = cfg.train.progress and progress
            result = train(cfg, resume="auto")  # picks up an interrupted run's last.pt, if any
        result = {**result, "run": run.group}
        if parent is not None:
            result["initialised_from"] = runs[run.parent].group
        results.append(result)
        if on_result:
            on_result(run, result)
    return results


def torchrun_commands(study_path: str | Path, out_dir: str | Path, nproc_per_node: int = 8, nnodes: int = 1,
                      extra_overrides: tuple[str, ...] = ()) -> list[str]:
    """One `torchrun ... actionbench train` command per run (rendezvous placeholders for multi-node): each the
    run's whole resolved config as overrides, command-line overrides included."""
    study, runs, configs = study_configs(study_path, out_dir, extra_overrides)
    check_configs(configs, files=False)  # the data may live on the cluster only
    commands = []
    for run, cfg in zip(runs, configs, strict=True):
        launcher = ["torchrun", f"--nproc_per_node={nproc_per_node}"]
        if nnodes > 1:
            launcher += [f"--nnodes={nnodes}", "--rdzv_backend=c10d", "--rdzv_endpoint=$MASTER_ADDR:29500",
                         f"--rdzv_id={Path(cfg.output_dir).name}"]
        base = base_config_path(study)
        # the paths as resolved here (relative to the study file), so that the command runs from anywhere
        paths = [f"{k}={v}" for k, v in flat(to_dict(cfg)).items() if k in PATH_KEYS and v]
        args = ["-m", "actionbench", "train", *([str(base)] if base else []), *run.overrides, *extra_overrides,
                *paths, f"output_dir={cfg.output_dir}", "--resume-if-any"]
        commands.append(" ".join(launcher + [shlex.quote(a) for a in args]))
    return commands


def gather_results(study_path: str | Path, out_dir: str | Path, extra: tuple[str, ...] = ()) -> list[dict]:
    """The results of this study's runs (its current configs) that have finished; nothing else in OUT. The runs
    not finished yet are named on stderr."""
    _, runs, configs = study_configs(study_path, out_dir, extra)
    files = [(run, Path(cfg.output_dir) / "results.json") for run, cfg in zip(runs, configs, strict=True)]
    missing = [run.name for run, f in files if not f.is_file()]
    parents = {run.name: runs[run.parent].group for run in runs if run.parent is not None}
    if missing:
        print(f"{len(missing)} of {len(runs)} runs have not finished and are not in the report: "
              f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}", file=sys.stderr)
    return [{**json.loads(f.read_text()), "run": run.group,
             **({"initialised_from": parents[run.name]} if run.name in parents else {})}
            for run, f in files if f.is_file()]


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    from actionbench.study.launchers import LAUNCHERS, launcher_fields

    parser.add_argument("study", help="study YAML (see configs/studies/), or `status DIR`")
    parser.add_argument("--out", default=None, help="output folder (default: runs/<study file name>)")
    parser.add_argument("--print-commands", action="store_true", help="print one torchrun command per run, run none")
    parser.add_argument("--nproc-per-node", type=int, default=8,
                        help="with --print-commands: processes (GPUs) per node of each torchrun command (default 8)")
    parser.add_argument("--nnodes", type=int, default=1,
                        help="with --print-commands: nodes per run (default 1; more adds c10d rendezvous options)")
    parser.add_argument("--report-only", action="store_true", help="gather finished runs' results and write the report")
    parser.add_argument("--skip-analysis", action="store_true",
                        help="leave out the temporal-reliance probes (actionbench analyze) of the report")
    jobs = parser.add_argument_group("jobs (docs/cluster.md)")
    jobs.add_argument("--launcher", choices=LAUNCHERS, default=None,
                      help="slurm: one sbatch job per unfinished run; local: runs as processes here (--parallel N). "
                           "Default: the study's launcher section, else one run after another in this process")
    for f in launcher_fields():
        if f.name == "name":
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.name == "sbatch":
            jobs.add_argument(flag, action="append", default=None, help="an extra sbatch option (repeatable)")
        else:
            jobs.add_argument(flag, type=type(f.default), default=None, help=f"launcher.{f.name}")
    jobs.add_argument("--status", action="store_true", help="one line per run: state, job, epochs, accuracy, time")
    jobs.add_argument("--cancel", action="store_true", help="cancel the study's queued and running jobs")
    jobs.add_argument("--wait", action="store_true", help="after submitting, wait until every run has ended, then "
                                                          "write the report")
    jobs.add_argument("--retry-failed", action="store_true", help="submit failed runs again")
    parser.add_argument("overrides", nargs="*", help="key=value overrides applied to every run")


def _launcher_config(args: argparse.Namespace, study: dict):
    from actionbench.study.launchers import launcher_config, launcher_fields

    flags = {f.name: getattr(args, f.name, None) for f in launcher_fields() if f.name != "name"}
    flags["name"] = args.launcher
    section = study.get("launcher")
    if section is not None and not isinstance(section, dict):
        raise ConfigError(f"{study['_path']}: launcher must be a mapping (name: slurm, partition: ..., ...)")
    if args.launcher is None and not section and all(v is None for v in flags.values()):
        return None  # one run after another, in this process
    return launcher_config(section, str(study["_path"]), flags)


def run(args: argparse.Namespace) -> int:
    from actionbench.study import launch
    from actionbench.study.report import write_report

    if args.study == "status":  # `actionbench study status DIR`
        directory = args.out or (args.overrides[0] if args.overrides else None)
        if not directory:
            raise ConfigError("study status needs the study's output folder: actionbench study status DIR")
        return launch.print_status(Path(directory))
    split_overrides(args, ("study",))
    out = Path(args.out or Path("runs") / Path(args.study).stem)
    extra = tuple(args.overrides)
    if args.print_commands:
        for command in torchrun_commands(args.study, out, args.nproc_per_node, args.nnodes, extra):
            print(command)
        return 0
    study = load_study(args.study)
    if args.status:
        return launch.print_status(out)
    if args.cancel:
        return launch.cancel_study(out)
    launcher = None if args.report_only else _launcher_config(args, study)
    if args.report_only:
        results = gather_results(args.study, out, extra)
    elif launcher is None:
        launch.record_study(args.study, out, extra)
        results = run_study(args.study, out, extra_overrides=extra)
    else:
        launch.launch_study(args.study, out, launcher, extra, retry_failed=args.retry_failed)
        if launcher.name == "slurm" and args.wait:
            launch.wait_for(out)
        status = launch.print_status(out)
        if launcher.name == "slurm" and not args.wait:
            print(f"follow it: actionbench study status {out}; the report: actionbench study {args.study} --out "
                  f"{out} --report-only", flush=True)
            return status
        results = gather_results(args.study, out, extra)
    if not results:
        raise ConfigError(f"no finished run of {args.study} under {out} to report")
    if not args.skip_analysis:
        from actionbench.study.analysis import analyze_results

        analyze_results(results)
    paths = write_report(results, out, title=study.get("name", Path(args.study).stem), baseline=study.get("baseline"))
    print(f"report: {paths['html']}  table: {paths['markdown']}")
    return 0
