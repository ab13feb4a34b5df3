"""Where a study's runs train. A launcher starts one job per unfinished run and says which of its jobs the
scheduler still holds; everything else about a run's state is in the run's directory (`study/jobs.py`), written by
the job itself, so that `actionbench study status` needs no scheduler accounting and a second `study` command
sees what the first one submitted. Another scheduler (Kubernetes, Ray) is one more module with this interface.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from actionbench.config import ConfigError


@dataclass
class LauncherConfig:
    """The study file's `launcher:` section; every key is also a command-line flag (`--gpus-per-node 8`)."""

    name: str = "local"  # local | slurm
    parallel: int = 1  # local: runs at once, each on its own devices
    partition: str = ""
    nodes: int = 1  # per run (multi-node: one srun task per process on every node)
    gpus_per_node: int = 0  # per run; 0: CPU runs
    tasks_per_node: int = 0  # processes per node; 0: one per GPU (one without GPUs)
    cpus_per_task: int = 0
    mem: str = ""  # per node, as sbatch --mem takes it (64G)
    time: str = ""  # limit per job, as sbatch --time takes it (minutes, or D-HH:MM:SS)
    account: str = ""
    qos: str = ""
    constraint: str = ""
    sbatch: list[str] = field(default_factory=list)  # extra sbatch options, as they are
    max_concurrent: int = 0  # runs allowed at once (0: no limit)
    max_retries: int = 1  # a run that fails (not a preemption) is tried again this many times
    signal_seconds: int = 120  # the job asks for SIGUSR1 this long before its time limit (and on preemption)

    @property
    def processes_per_node(self) -> int:
        return self.tasks_per_node or max(1, self.gpus_per_node)


LAUNCHERS = ("local", "slurm")


def launcher_config(section: dict | None, where: str, flags: dict | None = None) -> LauncherConfig:
    """The study file's section, then the command line's flags (those not None), checked."""
    values = dict(section or {})
    known = {f.name for f in dataclasses.fields(LauncherConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown launcher keys {unknown} (known: {', '.join(sorted(known))})")
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    cfg = LauncherConfig()
    for f in dataclasses.fields(LauncherConfig):
        if f.name not in values:
            continue
        value, default = values[f.name], getattr(cfg, f.name)
        if isinstance(default, list):
            value = [value] if isinstance(value, str) else value
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        else:
            value = "" if value is None else str(value)
            ok = True
        if not ok:
            raise ConfigError(f"{where}: launcher.{f.name} must be {type(default).__name__}"
                              f"{' >= 0' if isinstance(default, int) else ''}, got {values[f.name]!r}")
        setattr(cfg, f.name, value)
    if cfg.name not in LAUNCHERS:
        raise ConfigError(f"{where}: launcher {cfg.name!r} is not one of {', '.join(LAUNCHERS)}")
    if cfg.parallel < 1 or cfg.nodes < 1:
        raise ConfigError(f"{where}: launcher.parallel and launcher.nodes must be at least 1")
    if cfg.name == "local" and cfg.nodes > 1:
        raise ConfigError(f"{where}: a local launcher runs on one node; nodes={cfg.nodes} needs --launcher slurm")
    return cfg


def launcher_fields() -> list[dataclasses.Field]:
    return list(dataclasses.fields(LauncherConfig))


@dataclass
class Submission:
    """A run to start: its name, directory (holding its job.yaml) and the run it starts from (a progression)."""

    name: str
    run_dir: Path
    parent_dir: Path | None = None


def make_launcher(cfg: LauncherConfig):
    if cfg.name == "slurm":
        from actionbench.study.launchers.slurm import SlurmLauncher

        return SlurmLauncher(cfg)
    from actionbench.study.launchers.local import LocalLauncher

    return LocalLauncher(cfg)
