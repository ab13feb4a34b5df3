"""The largest batch that fits: doubling, then bisection, recovering from out-of-memory errors.

On CUDA an out-of-memory error is an exception we catch and recover from. On CPU the kernel's OOM killer would end
the process instead, so each trial runs in a forked child under an address-space limit (`cpu_memory_gb` above what
the process already uses, by default half of the machine's available memory): past it, allocations fail with an
exception, and a child that dies anyway (OOM killer) counts as "does not fit". The parent is never limited.
"""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import sys

import torch
from torch import nn

from actionbench.profiling.throughput import run_step

# oneDNN reports a failed allocation as "could not create a primitive"; std::bad_alloc surfaces as "bad_alloc";
# cuBLAS and cuDNN report theirs as status codes (a handle or workspace they could not allocate).
_OOM_MESSAGES = ("out of memory", "can't allocate memory", "not enough memory", "could not create a primitive",
                 "bad_alloc", "CUBLAS_STATUS_ALLOC_FAILED", "CUBLAS_STATUS_NOT_INITIALIZED",
                 "CUDNN_STATUS_ALLOC_FAILED", "CUDNN_STATUS_NOT_INITIALIZED")


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    cuda_oom = getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(exc, cuda_oom) or (isinstance(exc, RuntimeError) and any(m in str(exc) for m in _OOM_MESSAGES))


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux), else total physical memory."""
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _address_space_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def cpu_memory_limit(budget_bytes: int):
    """Make allocations beyond `budget_bytes` more than the current address space fail instead of the OOM killer."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space_bytes() + budget_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _fits(model: nn.Module, batch: int, frames: int, size: int, device: torch.device, mode: str,
          amp: str = "none") -> bool:
    clips = None
    try:
        clips = torch.randn(batch, 3, frames, size, size, device=device)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4) if mode == "train" else None
        run_step(model, clips, mode, optimizer, amp)
        return True
    except (RuntimeError, MemoryError) as exc:
        if not _is_oom(exc):
            raise
        return False
    finally:
        del clips
        model.zero_grad(set_to_none=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _fits_in_child(model: nn.Module, batch: int, frames: int, size: int, mode: str, budget: int,
                   amp: str = "none") -> bool:
    pid = os.fork()
    if pid == 0:  # child: limited, single-threaded (no inherited thread pool after fork), exits without cleanup
        code = 4
        try:
            torch.set_num_threads(1)
            with cpu_memory_limit(budget):
                code = 0 if _fits(model, batch, frames, size, torch.device("cpu"), mode, amp) else 3
        except BaseException as exc:
            print(f"max batch trial {batch}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 4:
        raise RuntimeError(f"max batch search: the trial with batch {batch} failed for a reason other than memory")
    return code == 0  # 3: out of memory; negative: killed by a signal (the OOM killer)


def find_max_batch(
    model: nn.Module,
    frames: int,
    size: int,
    device: str | torch.device = "cpu",
    mode: str = "train",
    upper_bound: int = 4096,
    cpu_memory_gb: float | None = None,
    amp: str = "none",
) -> int:
    """Largest batch size (<= upper_bound) for which one `mode` step runs without running out of memory; 0 if none.
    `amp` ("none", "bf16", "fp16") measures under the autocast training would use (it roughly halves activations)."""
    device = torch.device(device)
    model = model.to(device).train(mode == "train")
    if device.type == "cpu":
        budget = int(cpu_memory_gb * 2**30) if cpu_memory_gb else available_memory_bytes() // 2

        def fits(batch: int) -> bool:
            return _fits_in_child(model, batch, frames, size, mode, budget, amp)
    else:

        def fits(batch: int) -> bool:
            return _fits(model, batch, frames, size, device, mode, amp)

    good, bad = 0, None
    batch = 1
    while batch <= upper_bound:  # doubling
        if not fits(batch):
            bad = batch
            break
        good, batch = batch, batch * 2
    if bad is None:
        return good
    while bad - good > 1:  # bisection
        middle = (good + bad) // 2
        if fits(middle):
            good = middle
        else:
            bad = middle
    return good
