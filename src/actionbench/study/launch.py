"""A study's runs as jobs: `actionbench study STUDY.yaml --launcher slurm|local`, `--status` (or
`actionbench study status DIR`), `--cancel`. The runner defines the runs; a launcher (study/launchers/) starts them;
each run's directory records its job (study/jobs.py); OUT/study.json lists the study's current runs so that
`status DIR` needs no study file.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

import yaml

from actionbench.config import ConfigError, save_config
from actionbench.study.jobs import JOB_CONFIG, active, read_record, run_state, seconds_used, write_record
from actionbench.study.launchers import LauncherConfig, Submission, make_launcher
from actionbench.study.runner import check_configs, study_configs

MANIFEST = "study.json"


def _write_manifest(out: Path, study_path: str | Path, runs, configs, launcher: str) -> list[tuple[str, Path]]:
    out.mkdir(parents=True, exist_ok=True)
    entries = [(run.name, Path(cfg.output_dir)) for run, cfg in zip(runs, configs, strict=True)]
    manifest = {"study": str(Path(study_path).resolve()), "launcher": launcher,
                "runs": [{"name": name, "dir": str(path)} for name, path in entries]}
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(out / MANIFEST)
    return entries


def record_study(study_path: str | Path, out: Path, extra: tuple[str, ...] = ()) -> None:
    """OUT/study.json for a study run here, one run after another (so that `study status OUT` knows its runs)."""
    _, runs, configs = study_configs(study_path, out, extra)
    _write_manifest(out, study_path, runs, configs, "inline")


def read_manifest(out: Path) -> list[tuple[str, Path]]:
    file = out / MANIFEST
    if not file.is_file():
        raise ConfigError(f"{out} holds no submitted study (no {MANIFEST}): give the --out of an `actionbench study "
                          "... --launcher slurm|local` command")
    return [(r["name"], Path(r["dir"])) for r in json.loads(file.read_text())["runs"]]


def launch_study(study_path: str | Path, out: Path, launcher_cfg: LauncherConfig, extra: tuple[str, ...] = (),
                 retry_failed: bool = False) -> list[tuple[str, Path]]:
    """Start a job for every run not finished, queued or running; returns the study's runs (name, directory)."""
    _, runs, configs = study_configs(study_path, out, extra)
    check_configs(configs)  # a bad config fails here, not in the queue
    launcher = make_launcher(launcher_cfg)
    entries = _write_manifest(out, study_path, runs, configs, launcher_cfg.name)
    alive = launcher.alive()
    todo, counts = [], {}
    for run, cfg in zip(runs, configs, strict=True):
        run_dir = Path(cfg.output_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        state = run_state(run_dir, alive)
        record = read_record(run_dir) or {}
        if state == "-" and record.get("state") == "submitting":
            job = launcher.recover(run_dir)  # a submission cut short after the scheduler took the job
            if job:
                write_record(run_dir, state="submitted", job_id=job)
                state = run_state(run_dir, alive)
        if state == "finished" or active(state) or (state == "failed" and not retry_failed):
            counts[state] = counts.get(state, 0) + 1
            if state != "finished":
                job = f" as job {record.get('job_id')}" if active(state) else ""
                note = " (--retry-failed to try it again)" if state == "failed" else ""
                print(f"{run.name}: {state}{job}{note}")
            continue
        save_config(cfg, run_dir / JOB_CONFIG)
        if state == "failed":
            write_record(run_dir, failures=0)
        parent = Path(configs[run.parent].output_dir) if run.parent is not None else None
        todo.append(Submission(run.name, run_dir, parent))
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"{len(todo)} of {len(runs)} runs to start{f'; {summary}' if summary else ''}", flush=True)
    if todo:
        launcher.submit(todo, launcher_cfg.max_retries)
    return entries


def _progress(run_dir: Path) -> tuple[int | None, float | None]:
    """Epochs validated and the last validation top-1, from metrics.jsonl."""
    epoch = top1 = None
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written
        if "val/clip_top1" in row:
            epoch, top1 = row.get("epoch"), row["val/clip_top1"]
    return epoch, top1


def _total_epochs(run_dir: Path) -> int | None:
    for name in ("config.yaml", JOB_CONFIG):
        try:
            return int(yaml.safe_load((run_dir / name).read_text())["optim"]["epochs"])
        except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
            continue
    return None


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def status_rows(out: Path, launcher: str | None = None) -> list[dict]:
    """One row per run of the study in OUT: name, state, job, epochs, val top-1, time, last error."""
    entries = read_manifest(out)
    kind = launcher or json.loads((out / MANIFEST).read_text()).get("launcher", "local")
    alive = {}
    if kind == "slurm":
        alive = make_launcher(LauncherConfig(name="slurm")).alive()
    rows = []
    for name, run_dir in entries:
        record = read_record(run_dir)
        state = run_state(run_dir, alive)
        done, top1 = _progress(run_dir)
        seconds = seconds_used(record, state == "running")
        if state == "finished":
            with contextlib.suppress(OSError, json.JSONDecodeError):
                seconds = json.loads((run_dir / "results.json").read_text()).get("train_seconds", seconds)
        rows.append({"run": name, "state": state, "job": (record or {}).get("job_id") or "-",
                     "epochs": f"{done or 0}/{_total_epochs(run_dir) or '?'}",
                     "top1": "-" if top1 is None else f"{top1:.2f}", "time": _clock(seconds),
                     "error": ((record or {}).get("last_error") or [""])[-1] if state in ("failed", "lost") else "",
                     "dir": str(run_dir)})
    return rows


def print_status(out: Path) -> int:
    """The status table; exit status 1 while a run has failed (or its job vanished), else 0."""
    rows = status_rows(out)
    width = max(len(r["run"]) for r in rows) if rows else 3
    print(f"{'run':<{width}}  {'state':<9}  {'job':>10}  {'epochs':>7}  {'val top-1':>9}  time")
    for r in rows:
        print(f"{r['run']:<{width}}  {r['state']:<9}  {r['job']:>10}  {r['epochs']:>7}  {r['top1']:>9}  {r['time']}")
        if r["error"]:
            print(f"{'':<{width}}  last error: {r['error']}")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    print(f"{len(rows)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    bad = counts.get("failed", 0) + counts.get("lost", 0)
    if bad:
        print(f"{bad} run(s) failed: see the last error above and the run's slurm-*.out / job.log; "
              "rerun the study command with --retry-failed after fixing the cause", file=sys.stderr)
    return 1 if bad else 0


def wait_for(out: Path, poll_s: float = 5.0) -> None:
    """Until no run of the study is queued, running or preempted."""
    while any(active(r["state"]) for r in status_rows(out)):
        time.sleep(poll_s)


def cancel_study(out: Path) -> int:
    kind = json.loads((out / MANIFEST).read_text()).get("launcher", "local") if (out / MANIFEST).is_file() else None
    entries = read_manifest(out)
    rows = {r["dir"]: r for r in status_rows(out)}
    targets = [run_dir for _, run_dir in entries if active(rows[str(run_dir)]["state"])]
    jobs = make_launcher(LauncherConfig(name=kind or "local")).cancel(targets)
    print(f"cancelled {len(jobs)} job(s){': ' + ' '.join(jobs) if jobs else ''}")
    return 0
