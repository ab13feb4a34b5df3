"""A run's job, as its directory records it (`job.json`), and the job's entry point.

The submitting command writes the record (state `submitting`, then `submitted` with the job id), the job itself
updates it (`running`, then `finished`, `preempted`, `retrying` or `failed`), `--cancel` marks it `cancelled`
before it asks the scheduler. A run's state is that record read beside what the scheduler still holds:

    queued     submitted (or requeued after a failure) and waiting   running    training or testing
    preempted  stopped by a preemption or its time limit, requeued   finished   results.json is there
    failed     failed max_retries + 1 times (or the job vanished)    cancelled  by --cancel
    stopped    a local run interrupted (Ctrl-C)                       -          never submitted

The job's entry, `python -m actionbench.study.jobs RUN_DIR [slurm|local]`, trains the run's `job.yaml` with
resume-if-any: under `srun` every task becomes a rank (RANK, WORLD_SIZE, MASTER_ADDR from SLURM's variables); rank
0 keeps the record. SIGUSR1 (asked for before the time limit; sent on preemption) and SIGTERM stop the run after
writing last.pt; on SIGUSR1 the job requeues itself (`scontrol requeue`), and the requeued job resumes where it
stopped. A failure requeues it until `max_retries` is spent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

RECORD = "job.json"
JOB_CONFIG = "job.yaml"
EXIT_RETRY = 75  # a local job asks its launcher to start it again


def read_record(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / RECORD).read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, OSError):
        return None  # a record cut short: as if never submitted (the scheduler check still prevents doubles)


def write_record(run_dir: Path, **values) -> dict:
    """Update the record (atomically: a reader sees the old or the new one); adds the state change to `events`."""
    record = read_record(run_dir) or {"events": []}
    if "state" in values and values["state"] != record.get("state"):
        record["events"] = [*record.get("events", [])[-30:], [round(time.time(), 1), values["state"]]]
    record.update(values, updated=time.time())
    tmp = run_dir / f".{RECORD}.{os.getpid()}"
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, run_dir / RECORD)
    return record


# scheduler states that mean "waiting" and "running"; anything else, or none, means the job no longer runs
WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SUSPENDED", "RESV_DEL_HOLD"}
RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}


def run_state(run_dir: Path, alive: dict[str, str]) -> str:
    """The run's state (module docstring) from its directory and `alive`: job id -> scheduler state of the jobs
    the scheduler still holds."""
    if (run_dir / "results.json").is_file():
        return "finished"
    record = read_record(run_dir)
    if record is None:
        return "stopped" if (run_dir / "last.pt").is_file() else "-"
    state = record.get("state")
    if state in ("failed", "cancelled"):
        return state
    if record.get("launcher") == "local":  # the foreground command is the scheduler
        scheduled = ("RUNNING" if state == "running" and pid_alive(record.get("pid")) else
                     "PENDING" if state in ("submitted", "queued") and pid_alive(record.get("pool")) else None)
    else:
        scheduled = alive.get(str(record.get("job_id")))
    if scheduled in WAITING or scheduled in RUNNING:
        if state == "preempted" or (state == "running" and scheduled in WAITING):
            return "preempted"  # (a job waiting again that its record says runs was requeued from outside)
        return "running" if scheduled in RUNNING else "queued"
    if state == "submitting":
        return "-"  # interrupted before the scheduler answered, and it holds no such job
    if state == "stopped":
        return "stopped"
    return "lost"  # the job is gone without a result or a word: killed, or its node failed


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def active(state: str) -> bool:
    return state in ("queued", "running", "preempted")


def seconds_used(record: dict | None, running: bool) -> float:
    if not record:
        return 0.0
    extra = time.time() - record["started"] if running and record.get("started") else 0.0
    return record.get("seconds", 0.0) + extra


def _slurm_distributed_env() -> None:
    """Under srun with several tasks: the torch.distributed variables from SLURM's (what torchrun would set)."""
    tasks = int(os.environ.get("SLURM_NTASKS", "1"))
    if tasks <= 1 or "RANK" in os.environ:
        return
    nodes = subprocess.run(["scontrol", "show", "hostnames", os.environ["SLURM_JOB_NODELIST"]],
                           capture_output=True, text=True, check=True).stdout.split()
    os.environ.update(RANK=os.environ["SLURM_PROCID"], WORLD_SIZE=str(tasks), LOCAL_RANK=os.environ["SLURM_LOCALID"],
                      MASTER_ADDR=nodes[0], MASTER_PORT=str(20000 + int(os.environ["SLURM_JOB_ID"]) % 20000))


def requeue_slurm_job() -> bool:
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    return done.returncode == 0


def _finish_attempt(run_dir: Path, **values) -> dict:
    record = read_record(run_dir) or {}
    used = record.get("seconds", 0.0) + (time.time() - record["started"] if record.get("started") else 0.0)
    return write_record(run_dir, seconds=used, started=None, **values)


def main(argv: list[str] | None = None) -> int:
    """The job: train the run in RUN_DIR (its job.yaml), keeping its record; the exit status says what happened."""
    argv = sys.argv[1:] if argv is None else argv
    run_dir, launcher = Path(argv[0]).resolve(), (argv[1] if len(argv) > 1 else "slurm")
    if launcher == "slurm":
        _slurm_distributed_env()
    main_rank = int(os.environ.get("RANK", "0")) == 0
    from actionbench.config import load_config
    from actionbench.engine.trainer import train
    from actionbench.errors import Interrupted

    early: list[str] = []  # SIGUSR1 before the trainer listens for it would kill the process unrecorded
    signal.signal(signal.SIGUSR1, lambda signum, frame: early.append("SIGUSR1"))
    record = read_record(run_dir) or {}
    if main_rank:
        write_record(run_dir, state="running", started=time.time(), host=os.uname().nodename, pid=os.getpid(),
                     job_id=os.environ.get("SLURM_JOB_ID", record.get("job_id")),
                     attempt=record.get("attempt", 0) + 1, restarts=int(os.environ.get("SLURM_RESTART_COUNT", "0")),
                     devices=os.environ.get("CUDA_VISIBLE_DEVICES"), world=int(os.environ.get("WORLD_SIZE", "1")))
    try:
        cfg = load_config(run_dir / JOB_CONFIG)
        if early:
            raise Interrupted("stopped by SIGUSR1 before training started", signal="SIGUSR1")
        train(cfg, resume="auto")
    except Interrupted as exc:
        if not main_rank:
            return exc.exit_code
        if (read_record(run_dir) or {}).get("state") == "cancelled":
            _finish_attempt(run_dir, state="cancelled")
            return exc.exit_code
        if launcher == "slurm":
            # SIGUSR1: the time limit is near, or a preemption; SIGTERM: a preemption or requeue by SLURM (which
            # requeues the job itself). Either way the job runs again and resumes from last.pt.
            _finish_attempt(run_dir, state="preempted", stopped_by=exc.signal)
            print(f"actionbench job: {exc}", file=sys.stderr, flush=True)
            if exc.signal == "SIGUSR1":
                requeue_slurm_job()
        else:
            _finish_attempt(run_dir, state="stopped", stopped_by=exc.signal)
        return exc.exit_code
    except Exception as exc:  # any failure: recorded, then retried or given up
        if not main_rank:
            raise
        lines = traceback.format_exc().strip().splitlines()[-12:]
        now = read_record(run_dir) or {}
        failures = now.get("failures", 0) + 1
        retry = failures <= now.get("max_retries", 0)
        _finish_attempt(run_dir, state="queued" if retry else "failed", failures=failures, last_error=lines)
        print(f"actionbench job: failed ({failures} time(s)): {exc}", file=sys.stderr, flush=True)
        traceback.print_exc()
        if retry and launcher == "slurm" and not requeue_slurm_job():
            _finish_attempt(run_dir, state="failed")
        return EXIT_RETRY if retry else 1
    if main_rank:
        _finish_attempt(run_dir, state="finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
