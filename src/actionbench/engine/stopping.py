"""Stopping a run cleanly: SIGINT (Ctrl-C), SIGTERM (what SLURM and Kubernetes send before preemption) and SIGUSR1
(what a SLURM job of `actionbench study --launcher slurm` asks for before its time limit or a preemption).

The first signal only sets a flag; the trainer looks at it at every iteration boundary, and once any rank has seen
one all ranks write `last.pt` together and stop with "resume with ...". Under DDP the ranks agree through an
asynchronous all-reduce of the flag on a gloo group, launched at one boundary and read at the next, so that asking
costs no wait and no GPU synchronisation (the stop comes one iteration later). A second Ctrl-C stops at once.
"""

from __future__ import annotations

import signal
import threading

import torch
import torch.distributed as dist

from actionbench.engine.distributed import DistInfo

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class StopSignals:
    def __init__(self, info: DistInfo) -> None:
        self.info, self.received = info, None
        self._previous = {}
        self._work = self._flag = None
        self._group = None
        if info.enabled:  # every rank creates the group (a collective), CUDA runs included
            self._group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for sig in _SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self._work is not None:
            self._work.wait()  # leave no collective in flight

    def _handle(self, signum: int, frame) -> None:
        if self.received and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.received = signal.Signals(signum).name

    def agreed(self) -> bool:
        """True once a signal reached this process (one process) or any rank (DDP, one boundary later)."""
        if not self.info.enabled:
            return self.received is not None
        stop = False
        if self._work is not None:
            self._work.wait()
            stop = bool(self._flag.item())
        self._flag = torch.tensor([1 if self.received else 0], dtype=torch.int32)
        self._work = dist.all_reduce(self._flag, op=dist.ReduceOp.MAX, group=self._group, async_op=True)
        return stop

    def received_any(self) -> bool:
        """Whether a signal reached this process (no collective: for one process, or a local decision)."""
        return self.received is not None

    def name(self) -> str:
        return self.received or "a signal on another rank"
