"""Checkpoints read with `torch.load(weights_only=True)` (written atomically by models.weights.save_checkpoint),
and the random generator states they carry.

Everything stored is a tensor or a plain container of numbers and strings, so loading never runs pickled code.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch

from actionbench.errors import CheckpointError

__all__ = ["CheckpointError", "load_checkpoint", "load_scaler_state", "resolve_checkpoint", "restore_rng", "rng_state",
           "set_rng_state"]

log = logging.getLogger(__name__)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file; a run directory stands for its best.pt (else last.pt)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} is a directory without best.pt or last.pt: not a finished or started run")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def load_checkpoint(path: str | Path) -> dict:
    """An actionbench checkpoint (ours, or converted with `actionbench convert`), read with weights_only=True."""
    path = resolve_checkpoint(path)
    if path.suffix in (".yaml", ".yml", ".json", ".txt", ".csv"):
        raise CheckpointError(f"{path} is a {path.suffix[1:].upper()} file, not a checkpoint: pass a .pt file "
                              "written by actionbench train or actionbench convert (or a run directory)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).split(". ")[0].splitlines()[0][:160]
        raise CheckpointError(
            f"cannot read {path}: damaged or not a checkpoint ({reason}). Point to another checkpoint (best.pt, "
            "last.pt, an older copy); a checkpoint of another codebase needs `actionbench convert` first.") from exc
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path} is not an actionbench checkpoint (no model and config entries); a checkpoint "
                              "of another codebase needs `actionbench convert` first")
    return state


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
