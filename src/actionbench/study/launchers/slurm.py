"""SLURM: one batch job per run, submitted with sbatch.

Why sbatch and not submitit: a run is already a command over a config file in its own directory, so a job is a
ten-line script anyone can read and resubmit (`RUN_DIR/job.sh`); there is no pickled function to keep in step with
the cluster's Python, and states come from the run's own record plus `squeue`, so no job accounting (slurmdbd,
which submitit needs for its states) is required. The field's conventions are kept: `srun` starts one task per
process (ranks from SLURM's variables, multi-node included), `--signal=USR1@S` before the time limit (and on
preemption) with a checkpoint and a self-requeue, `--requeue` so that a preempted job comes back.

`max_concurrent` uses SLURM itself: the runs are dealt round-robin to that many job names and every job depends on
`singleton` (one running job per name at a time), so the limit holds with no process of ours waiting.
"""

from __future__ import annotations

import getpass
import hashlib
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from actionbench.config import ConfigError
from actionbench.study.jobs import JOB_CONFIG, read_record, write_record
from actionbench.study.launchers import LauncherConfig, Submission


def _sbatch_options(cfg: LauncherConfig) -> list[str]:
    options = [f"--nodes={cfg.nodes}", f"--ntasks-per-node={cfg.processes_per_node}", "--requeue",
               f"--signal=USR1@{cfg.signal_seconds}", "--open-mode=append"]
    for key in ("partition", "cpus_per_task", "mem", "time", "account", "qos", "constraint"):
        value = getattr(cfg, key)
        if value:
            options.append(f"--{key.replace('_', '-')}={value}")
    if cfg.gpus_per_node:
        options.append(f"--gpus-per-node={cfg.gpus_per_node}")
    return options + list(cfg.sbatch)


def job_script(run_dir: Path, cfg: LauncherConfig) -> str:
    lines = ["#!/bin/bash", *(f"#SBATCH {o}" for o in _sbatch_options(cfg)),
             f"#SBATCH --output={run_dir}/slurm-%j.out", f"#SBATCH --chdir={run_dir}",
             "# one task per process; the job's record and its rank variables come from actionbench.study.jobs",
             f"exec srun --kill-on-bad-exit=1 {shlex.quote(sys.executable)} -m actionbench.study.jobs "
             f"{shlex.quote(str(run_dir))} slurm"]
    return "\n".join(lines) + "\n"


def _token(run_dir: Path) -> str:
    """What names a run's job to the scheduler (its --comment): found again after an interrupted submission."""
    return "actionbench:" + hashlib.sha256(str(run_dir).encode()).hexdigest()[:16]


def _run(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise ConfigError(f"{command[0]} is not on PATH: --launcher slurm needs SLURM's commands (run on a login "
                          "node of the cluster)") from None
    if done.returncode:
        said = [line.split("error:", 1)[-1].strip() for line in (done.stderr or done.stdout).splitlines()]
        raise ConfigError(f"{command[0]} refused: {'; '.join(dict.fromkeys(s for s in said if s))} "
                          f"(check the launcher section / flags: {' '.join(command[1:])})")
    return done.stdout


class SlurmLauncher:
    name = "slurm"

    def __init__(self, cfg: LauncherConfig) -> None:
        self.cfg, self.comments = cfg, {}
        if shutil.which("sbatch") is None:
            raise ConfigError("sbatch is not on PATH: --launcher slurm needs SLURM's commands (run on a login node "
                              "of the cluster)")

    def alive(self) -> dict[str, str]:
        """Job id -> state of this user's jobs that SLURM still holds."""
        out = _run(["squeue", "-h", "-u", getpass.getuser(), "-o", "%i|%T|%k"])
        jobs, self.comments = {}, {}
        for line in out.splitlines():
            job, state, comment = (line.split("|", 2) + ["", ""])[:3]
            jobs[job.strip()] = state.strip()
            self.comments[comment.strip()] = job.strip()
        return jobs

    def recover(self, run_dir: Path) -> str | None:
        """The job of a run whose submission was interrupted before its id was recorded, if SLURM holds one."""
        return self.comments.get(_token(run_dir))

    def submit(self, items: list[Submission], max_retries: int) -> None:
        """sbatch every run (parents before children: a child depends on its parent's job, afterok)."""
        jobs: dict[Path, str] = {}
        for i, item in enumerate(items):
            dependencies = []
            if self.cfg.max_concurrent:
                dependencies.append("singleton")
            parent = (read_record(item.parent_dir) or {}) if item.parent_dir else {}
            parent_job = jobs.get(item.parent_dir) or parent.get("job_id")
            if item.parent_dir and not (item.parent_dir / "results.json").is_file() and parent_job:
                dependencies.append(f"afterok:{parent_job}")
            script = item.run_dir / "job.sh"
            script.write_text(job_script(item.run_dir, self.cfg))
            name = (f"ab-{hashlib.sha256(str(item.run_dir.parents[1]).encode()).hexdigest()[:6]}-"
                    f"{i % self.cfg.max_concurrent}" if self.cfg.max_concurrent else f"ab-{item.run_dir.name}")
            command = ["sbatch", "--parsable", f"--job-name={name}", f"--comment={_token(item.run_dir)}",
                       *([f"--dependency={','.join(dependencies)}"] if dependencies else []), str(script)]
            # Ctrl-C waits until the record names the job: a run is never submitted without its id written down
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            try:
                write_record(item.run_dir, state="submitting", launcher="slurm", max_retries=max_retries,
                             job_config=JOB_CONFIG)
                job = _run(command).strip().split(";")[0]
                write_record(item.run_dir, state="submitted", job_id=job, script=str(script))
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            jobs[item.run_dir] = job
            print(f"{item.name}: submitted as job {job}", flush=True)

    def cancel(self, run_dirs: list[Path]) -> list[str]:
        jobs = []
        for run_dir in run_dirs:
            record = read_record(run_dir)
            if record and record.get("job_id"):
                write_record(run_dir, state="cancelled")  # first: the job then knows not to requeue itself
                jobs.append(str(record["job_id"]))
        if jobs:
            _run(["scancel", *jobs])
        return jobs
