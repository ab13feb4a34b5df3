"""torchrun / DDP helpers: process group set-up, rank info, the global-batch sampler, gathering results."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    restart: int = 0  # torchrun's TORCHELASTIC_RESTART_COUNT: > 0 after the job lost a rank and restarted

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


_STORE = None  # the job's key-value store across attempts (torchrun's agent store, or rank 0's)


def init_distributed(device_type: str, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group torchrun describes in the environment (NCCL on CUDA, gloo on CPU); no-op otherwise.

    - On CUDA each process first takes the GPU of its local rank: NCCL and `all_gather_object` use the current
      device, and with every rank on cuda:0 NCCL fails ("Duplicate GPU detected") or the first GPU runs out of
      memory.
    - Elastic restarts (`torchrun --max-restarts`): the group is formed through the job's store under a prefix of
      the attempt (`actionbench/attempt_<TORCHELASTIC_RESTART_COUNT>`). With plain `env://` init a restarted
      attempt found the previous attempt's peer addresses under the same keys (gloo: connection refused, then a
      hang); NCCL exchanges its unique id through the same store, so the prefix serves it too.
    - Every collective, the first included, gives up after `timeout_s`: a rank that died or hangs turns into an
      error (and, under torchrun, a restart) instead of a job waiting forever.
    """
    global _STORE
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=timeout_s)
        agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # torchrun's agent serves it
        _STORE = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                               is_master=rank == 0 and not agent_store, timeout=timeout)
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo", timeout=timeout,
                                store=dist.PrefixStore(f"actionbench/attempt_{restart}", _STORE),
                                rank=rank, world_size=world)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, restart)


def job_value(key: str, value: str | None = None) -> str | None:
    """A value shared by every attempt of a distributed job (set with `value`, read without): what a restarted
    attempt needs to find of the first one, e.g. the run directory it chose."""
    if _STORE is None:
        return value
    key = f"actionbench/job/{key}"
    if value is not None:
        _STORE.set(key, value)
        return value
    return _STORE.get(key).decode() if _STORE.check([key]) else None


def cleanup_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class GlobalBatchSampler(Sampler[int]):
    """Indices of one epoch for one rank: a seeded permutation cut into global batches, each split across ranks.

    Rank r of W gets the r-th slice of every global batch, so a W-process run sees the same batches as a single
    process with the same global batch size. `start_batch` skips the batches a resumed run has already seen.
    The last partial global batch is dropped when training (every rank needs the same number of steps).
    Indices are `epoch * size + i`: a dataset in persistent worker processes learns the epoch from the index
    (`VideoClipDataset` draws its augmentation from (seed, epoch, i)). `set_epoch` moves it to the next epoch.
    """

    def __init__(self, size: int, global_batch: int, *, seed: int, epoch: int = 0, rank: int = 0,
                 world_size: int = 1, shuffle: bool = True, start_batch: int = 0) -> None:
        if global_batch % world_size:
            raise ValueError(f"data.batch_size={global_batch} must divide evenly across {world_size} processes")
        self.size, self.global_batch, self.seed, self.epoch = size, global_batch, seed, epoch
        self.rank, self.world_size, self.shuffle, self.start_batch = rank, world_size, shuffle, start_batch
        self.local_batch = global_batch // world_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    @property
    def batches_per_epoch(self) -> int:
        return self.size // self.global_batch

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100003 + self.epoch))
        else:
            order = torch.arange(self.size)
        order = order + self.epoch * self.size
        for b in range(self.start_batch, self.batches_per_epoch):
            start = b * self.global_batch + self.rank * self.local_batch
            yield from order[start : start + self.local_batch].tolist()

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.local_batch


def shard_indices(size: int, rank: int, world_size: int) -> list[int]:
    """Evaluation: every index exactly once across ranks (no padding, so nothing is counted twice)."""
    return list(range(rank, size, world_size))


def all_reduce_mean(value: float, info: DistInfo, device: torch.device) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def gather_objects(obj, info: DistInfo) -> list:
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, info: DistInfo):
    """Rank 0's `obj` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
