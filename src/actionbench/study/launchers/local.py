"""This machine: `parallel` runs at once, each a process of its own (`python -m actionbench.study.jobs`, under
torchrun when a run has several processes) on its own devices (CUDA_VISIBLE_DEVICES split by GPUs per run); the
same records, states and resume as on SLURM. The command stays in the foreground until every run has ended;
Ctrl-C stops the runs (each writes last.pt) and the next command resumes them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from actionbench.config import ConfigError
from actionbench.study.jobs import EXIT_RETRY, JOB_CONFIG, pid_alive, read_record, write_record
from actionbench.study.launchers import LauncherConfig, Submission


def _visible_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # a CPU build, or a broken driver: no GPUs to split
        return 0


def slot_devices(slot: int, per_run: int) -> str:
    return ",".join(str(slot * per_run + i) for i in range(per_run))


class LocalLauncher:
    name = "local"

    def __init__(self, cfg: LauncherConfig) -> None:
        self.cfg = cfg
        gpus, wanted = _visible_gpus(), cfg.parallel * max(1, cfg.gpus_per_node)
        if cfg.gpus_per_node and gpus < wanted:
            raise ConfigError(f"--parallel {cfg.parallel} x {cfg.gpus_per_node} GPU(s) per run needs {wanted} GPUs; "
                              f"this machine shows {gpus}")

    def alive(self) -> dict[str, str]:
        return {}  # filled per record: a local job is alive while its process is (see `state_of`)

    def recover(self, run_dir: Path) -> str | None:
        return None

    def _command(self, run_dir: Path) -> list[str]:
        entry = ["-m", "actionbench.study.jobs", str(run_dir), "local"]
        if self.cfg.processes_per_node > 1:
            return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={self.cfg.processes_per_node}", *entry]
        return [sys.executable, *entry]

    def _start(self, item: Submission, slot: int) -> tuple[subprocess.Popen, Submission, object]:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": slot_devices(slot, max(1, self.cfg.gpus_per_node))}
        # the cores split between the runs at once (unless the user chose): N runs x all cores oversubscribe
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.cfg.parallel)))
        log = open(item.run_dir / "job.log", "a")  # noqa: SIM115 (closed when the process has ended)
        process = subprocess.Popen(self._command(item.run_dir), env=env, stdout=log, stderr=log)
        write_record(item.run_dir, job_id=f"local:{process.pid}", pid=process.pid)
        print(f"{item.name}: started (pid {process.pid}, devices {env['CUDA_VISIBLE_DEVICES']})", flush=True)
        return process, item, log

    def submit(self, items: list[Submission], max_retries: int) -> None:
        """Run every item to its end, `parallel` at a time, children after their parents."""
        waiting, running = list(items), {}  # slot -> (process, item, log)
        free = list(range(self.cfg.parallel))
        for item in items:
            write_record(item.run_dir, state="submitted", launcher="local", max_retries=max_retries,
                         job_config=JOB_CONFIG, job_id=None, pool=os.getpid())
        try:
            while waiting or running:
                pending = {i.run_dir for i in waiting} | {r[1].run_dir for r in running.values()}
                for item in list(waiting):
                    parent_done = not item.parent_dir or (item.parent_dir / "results.json").is_file()
                    if free and (parent_done or item.parent_dir not in pending):
                        waiting.remove(item)
                        if parent_done:
                            slot = free.pop(0)
                            running[slot] = self._start(item, slot)
                        else:
                            write_record(item.run_dir, state="failed", last_error=["the run it starts from failed"])
                            print(f"{item.name}: not started, the run it starts from failed", flush=True)
                for slot, (process, item, log) in list(running.items()):
                    if process.poll() is None:
                        continue
                    log.close()
                    del running[slot]
                    free.append(slot)
                    state = (read_record(item.run_dir) or {}).get("state")
                    if process.returncode == EXIT_RETRY and state == "queued":
                        waiting.insert(0, item)
                        print(f"{item.name}: failed, trying again (see {item.run_dir / 'job.log'})", flush=True)
                    else:
                        print(f"{item.name}: {state}", flush=True)
                time.sleep(0.2)
        except KeyboardInterrupt:
            for process, _, _ in running.values():  # by PID: each run writes last.pt and stops
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
            for process, _, log in running.values():
                process.wait()
                log.close()
            raise

    def cancel(self, run_dirs: list[Path]) -> list[str]:
        stopped = []
        for run_dir in run_dirs:
            record = read_record(run_dir) or {}
            pid = record.get("pid")
            if record.get("launcher") == "local" and pid and pid_alive(pid) and record.get("state") == "running":
                write_record(run_dir, state="cancelled")
                os.kill(pid, signal.SIGTERM)
                stopped.append(f"local:{pid}")
        return stopped
