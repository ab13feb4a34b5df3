"""Run logging: metrics.jsonl always, TensorBoard scalars when available, rich progress bars on the main rank, and
the training loss looked at once per log interval (`LossTracker`, which also stops a run whose loss diverged)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.distributed as dist
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from actionbench.engine.distributed import DistInfo
from actionbench.errors import TrainingDiverged


class MetricsLogger:
    """`resume_step`: a resumed run first drops what the interrupted one logged after its checkpoint, so that the
    file holds every step once."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True,
                 resume_step: int | None = None) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self.writer = None
        if enabled and resume_step is not None and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            self.path.write_text("".join(f"{line}\n" for line in kept))
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError:  # tensorboard not installed: the JSONL file still has everything
                self.writer = None

    def log(self, step: int, **values) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, "time": time.time(), **values}) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, int | float):
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def make_progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        disable=not enabled, transient=False,
    )


class LossTracker:
    """The training loss summed on the device and looked at only every log interval: one host sync (and, under
    DDP, one all-reduce) per interval instead of several per iteration. A non-finite loss on any rank stops every
    rank at the same point, with the same message, instead of one raising while the others wait in an all-reduce."""

    def __init__(self, device: torch.device, info: DistInfo) -> None:
        self.device, self.info = device, info
        self.totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, non-finite count, iterations

    def add(self, loss: torch.Tensor) -> None:
        value = loss.detach().double()
        finite = torch.isfinite(value)
        self.totals += torch.stack([torch.where(finite, value, 0.0), (~finite).double(), torch.ones_like(value)])

    def flush(self, where: str, last_good: Path) -> float:
        """Mean loss since the last flush (across ranks); raises TrainingDiverged if any rank saw a NaN/inf."""
        totals = self.totals.clone()
        if self.info.enabled:
            dist.all_reduce(totals)
        self.totals.zero_()
        loss_sum, bad, count = totals.tolist()
        if bad:
            raise TrainingDiverged(
                f"the loss became NaN or infinite at {where}; stopped. The last good checkpoint is "
                f"{last_good if last_good.exists() else 'not written yet'}; lower optim.lr or set optim.clip_grad.")
        return loss_sum / count if count else float("nan")
