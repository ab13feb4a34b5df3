"""`actionbench study --launcher slurm` against a real SLURM started here (scripts/slurm_local.sh: Debian's
slurmctld, slurmd and munge on localhost, installed when absent), stopped by its PIDs. Nothing of SLURM is mocked:
jobs are sbatch jobs, the preemption is a job in a higher-priority partition, the requeue is SLURM's."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
import yaml

from actionbench.config import load_config
from actionbench.data.synthetic import make_synthetic_dataset
from actionbench.engine.trainer import train
from actionbench.study.launch import status_rows

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.base_channels=4", "model.dropout=0.0", "data.frames=4", "data.size=32", "data.scale_size=32",
        "data.train_scales=[1.0]", "data.workers=0", "data.batch_size=2", "optim.warmup_epochs=0",
        "train.progress=false", "train.tensorboard=false", "test.num_clips=1", "test.num_crops=1",
        "data.index_cache=null", "train.deterministic=true", "train.log_every=1", "device=cpu"]

pytestmark = pytest.mark.skipif(shutil.which("slurmctld") is None and os.geteuid() != 0,
                                reason="needs Debian's SLURM, or root to install it (CI is root)")


@pytest.fixture(scope="module")
def slurm():
    # munged runs as its own user: the directory must be reachable by it (pytest's tmp dirs are private to root)
    where = Path(tempfile.mkdtemp(prefix="actionbench-slurm-", dir="/tmp"))
    where.chmod(0o755)
    script = ROOT / "scripts" / "slurm_local.sh"
    started = subprocess.run(["bash", str(script), "start", str(where)], capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(where / "slurm.conf")
    try:
        yield where
    finally:
        subprocess.run(["bash", str(script), "stop", str(where)], timeout=60)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        shutil.rmtree(where, ignore_errors=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("data"), "temporal", 4, 8, seed=5, frames=8, size=32,
                                  workers=1)


def _study(path: Path, data: dict, models: list[str], launcher: dict, overrides: list[str] = ()) -> Path:
    path.write_text(yaml.safe_dump({
        "name": path.stem, "overrides": [*TINY, f"data.train_list={data['train']}", f"data.val_list={data['val']}",
                                         *overrides],
        "axes": {"model.name": models}, "launcher": {"name": "slurm", "partition": "low", **launcher}}))
    return path


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "actionbench", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _until(condition, timeout: float, what: str, poll: float = 0.3, explain=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f"\n{explain()}" if explain else ""))


def _tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else f"({path}: none)"


def _squeue() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %j %T"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def _weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "last.pt", weights_only=True)["model"]


def test_a_study_on_slurm_survives_a_preemption_with_the_uninterrupted_weights(slurm, data, tmp_path):
    study = _study(tmp_path / "three.yaml", data, ["tsn_resnet18", "tsm_resnet18", "tam_resnet18"],
                   {"cpus_per_task": 1, "max_concurrent": 1}, ["optim.epochs=6"])
    out = tmp_path / "out"
    first = _cli("study", str(study), "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert "3 of 3 runs to start" in first.stdout and first.stdout.count("submitted as job") == 3
    again = _cli("study", str(study), "--out", str(out))  # while they wait or run: nothing is submitted twice
    assert again.returncode == 0 and "0 of 3 runs to start" in again.stdout and "submitted as job" not in again.stdout
    jobs = _squeue()
    assert len(jobs) == 3, jobs
    seen: dict[str, set] = {}

    def states() -> dict[str, str]:
        rows = {r["run"]: r for r in status_rows(out)}
        for name, row in rows.items():
            seen.setdefault(name, set()).add(row["state"])
        return {name: row["state"] for name, row in rows.items()}

    def training() -> str | None:  # the running run, once it has taken a few optimiser steps
        for name, state in states().items():
            run_dir = next(Path(r["dir"]) for r in status_rows(out) if r["run"] == name)
            metrics = run_dir / "metrics.jsonl"
            if state == "running" and metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:
                return name
        return None

    def explain() -> str:  # what the job, its record and slurmctld said, when it did not go as expected
        return "\n".join([_tail(next(iter(victim_dir.glob("slurm-*.out")), victim_dir / "slurm.out")),
                          (victim_dir / "job.json").read_text(), _tail(slurm / "log" / "slurmctld.log")])

    missed = []
    for _ in range(3):  # a scheduler that lets one high job through without preempting gets another one
        victim = _until(training, 240, "a run training")
        victim_dir = next(Path(r["dir"]) for r in status_rows(out) if r["run"] == victim)
        assert sum(s == "running" for s in states().values()) == 1  # max_concurrent: 1
        # a job in the higher-priority partition needs every CPU: SLURM preempts (requeues) the running run
        high = subprocess.run(["sbatch", "--parsable", "--partition=high", f"--cpus-per-task={os.cpu_count()}",
                               "--wrap", "sleep 2", f"--output={tmp_path / 'high.out'}"], check=True,
                              capture_output=True, text=True).stdout.strip().split(";")[0]
        try:
            _until(lambda v=victim: states()[v] == "preempted", 45, f"{victim} preempted", explain=explain)
            break
        except AssertionError as exc:
            missed.append(str(exc))
            subprocess.run(["scancel", high], check=False)
    else:
        pytest.fail("no run was preempted in 3 tries:\n" + "\n\n".join(missed))
    print("missed preemptions before this one:", missed)  # in the captured output, should CI need it
    _until(lambda: all(s == "finished" for s in states().values()), 420, "every run finished", poll=0.5,
           explain=explain)
    assert {"preempted", "finished"} <= seen[victim] and {"queued", "running"} <= set().union(*seen.values()), seen
    record = json.loads((victim_dir / "job.json").read_text())
    assert record["restarts"] >= 1 and record["stopped_by"] in ("SIGUSR1", "SIGTERM"), record

    # the same config trained without interruption, here: the same final weights, bit for bit
    cfg = load_config(victim_dir / "job.yaml", [f"output_dir={tmp_path / 'straight'}"])
    train(cfg, resume=False)
    ours, theirs = _weights(victim_dir), _weights(tmp_path / "straight")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in theirs)

    status = _cli("study", "status", str(out))
    assert status.returncode == 0 and "3 runs: 3 finished" in status.stdout, status.stdout + status.stderr
    after = _cli("study", str(study), "--out", str(out), "--report-only", "--skip-analysis")
    assert after.returncode == 0 and (out / "report.html").is_file(), after.stderr
    last = _cli("study", str(study), "--out", str(out), "--skip-analysis")  # finished: nothing to submit
    assert "0 of 3 runs to start" in last.stdout and "submitted" not in last.stdout.replace("runs to start", "")


def test_a_run_that_fails_twice_is_reported_failed_with_its_error(slurm, data, tmp_path):
    broken = tmp_path / "cut.pt"
    broken.write_bytes(b"PK\x03\x04 a checkpoint cut short by a full disk")
    study = _study(tmp_path / "fails.yaml", data, ["tsn_resnet18"], {"max_retries": 1},
                   ["optim.epochs=1", f"model.init_from={broken}"])
    out = tmp_path / "out"
    assert _cli("study", str(study), "--out", str(out)).returncode == 0
    rows = _until(lambda: [r for r in status_rows(out) if r["state"] == "failed"], 180, "the run failed")
    record = json.loads((Path(rows[0]["dir"]) / "job.json").read_text())
    assert record["failures"] == 2 and record["attempt"] == 2, record
    status = _cli("study", "status", str(out))
    assert status.returncode == 1 and "failed" in status.stdout and "last error:" in status.stdout, status.stdout
    again = _cli("study", str(study), "--out", str(out))
    assert "0 of 1 runs to start" in again.stdout and "--retry-failed" in again.stdout


def test_interrupting_the_submission_then_cancel_leaves_no_job(slurm, data, tmp_path):
    models = ["tsn_resnet18", "tsm_resnet18", "tam_resnet18", "i3d_resnet18"]
    study = _study(tmp_path / "long.yaml", data, models, {"cpus_per_task": 1}, ["optim.epochs=200"])
    out = tmp_path / "out"
    command = subprocess.Popen([sys.executable, "-m", "actionbench", "study", str(study), "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert "submitted as job" in command.stdout.readline() + command.stdout.readline()
    command.send_signal(signal.SIGINT)  # Ctrl-C in the middle of the submissions
    command.wait(timeout=60)
    resumed = _cli("study", str(study), "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    tokens = [json.loads((Path(r["dir"]) / "job.json").read_text())["job_id"] for r in status_rows(out)]
    assert len(set(tokens)) == 4 and len(_squeue()) == 4, (tokens, _squeue())  # every run once, none twice
    _until(lambda: any(r["state"] == "running" for r in status_rows(out)), 120, "a run running")
    cancelled = _cli("study", str(study), "--out", str(out), "--cancel")
    assert cancelled.returncode == 0 and "cancelled 4 job(s)" in cancelled.stdout, cancelled.stdout
    _until(lambda: not _squeue(), 60, "the queue empty")
    time.sleep(2)  # a cancelled job must not requeue itself
    assert not _squeue() and {r["state"] for r in status_rows(out)} == {"cancelled"}


def test_a_two_process_run_trains_with_gloo_under_srun(slurm, data, tmp_path):
    study = _study(tmp_path / "ddp.yaml", data, ["tsm_resnet18"], {"tasks_per_node": 2, "cpus_per_task": 1},
                   ["optim.epochs=1"])
    out = tmp_path / "out"
    assert _cli("study", str(study), "--out", str(out), "--wait", "--skip-analysis").returncode == 0
    (row,) = status_rows(out)
    assert row["state"] == "finished"
    record = json.loads((Path(row["dir"]) / "job.json").read_text())
    assert record["world"] == 2 and (Path(row["dir"]) / "results.json").is_file(), record


def test_the_commands_of_docs_cluster_md_work_as_printed(slurm, tmp_path):
    """From a copy of the repository's configs: the synth, submit, status and report commands exactly as the
    "From a study file to a report" block prints them."""
    text = (ROOT / "docs" / "cluster.md").read_text()
    block = text.split("## From a study file to a report", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split() for line in block.strip().splitlines()]
    assert [c[:3] for c in commands] == [["actionbench", "synth", "runs/syn"],
                                         ["actionbench", "study", "configs/studies/cpu_micro.yaml"],
                                         ["actionbench", "study", "status"],
                                         ["actionbench", "study", "configs/studies/cpu_micro.yaml"]]
    shutil.copytree(ROOT / "configs", tmp_path / "configs")

    def run(words: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", *words], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)

    for words in commands[:2]:
        done = run(words)
        assert done.returncode == 0, done.stderr
    assert "2 of 2 runs to start" in done.stdout and done.stdout.count("submitted as job") == 2
    _until(lambda: "2 runs: 2 finished" in run(commands[2]).stdout, 240, "both runs finished", poll=1)
    report = run(commands[3])
    assert report.returncode == 0 and (tmp_path / "runs" / "micro" / "report.html").is_file(), report.stderr
