"""What a training checkpoint carries besides weights (read and written by models/weights.py): the random
generator states of every rank, and the fp16 loss scale.

Everything stored is a tensor or a plain container of numbers and strings, so loading never runs pickled code.
"""

from __future__ import annotations

import logging
import random

import numpy as np
import torch

__all__ = ["load_scaler_state", "restore_rng", "rng_state", "set_rng_state"]

log = logging.getLogger(__name__)


def rng_state() -> dict:
    """This process's Python, NumPy and torch generator states, as tensors and lists; on CUDA the generator of the
    process's own device only (a rank uses one GPU; saving every visible device's made a resume on fewer GPUs fail
    and restored on other ranks states rank 0 never advanced)."""
    version, py_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [version, list(py_state), gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    name, keys, pos, has_gauss, gauss_np = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss_np))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if isinstance(cuda, list):  # checkpoints before per-rank states: every device's; ours is the current one
        device = torch.cuda.current_device() if torch.cuda.is_available() else len(cuda)
        cuda = cuda[device] if device < len(cuda) else None
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda)


def restore_rng(saved: dict | list, rank: int, world_size: int) -> None:
    """Restore this rank's generators from a checkpoint's per-rank list (or a single state, older checkpoints).

    With another number of processes than the run that wrote it, rank r takes the state of rank r % saved (the
    run continues, but not bit for bit: say so)."""
    states = saved if isinstance(saved, list) else [saved]
    if len(states) != world_size:
        log.warning("resuming with %d process(es) a checkpoint written by %d: random streams are not the ones an "
                    "uninterrupted run would have used", world_size, len(states))
    set_rng_state(states[rank % len(states)])


def load_scaler_state(scaler: torch.amp.GradScaler, saved: dict | None) -> None:
    """Resume the fp16 loss scale; a checkpoint written without it (CPU, bf16) restarts the scale instead of failing."""
    if not scaler.is_enabled():
        return
    if saved:
        scaler.load_state_dict(saved)
    else:
        log.warning("the checkpoint was written without fp16 loss scaling; the loss scale starts afresh")
