"""`actionbench profile` and the profiling API: JSON contract, throughput, max batch search."""

import json

import pytest
import torch
from torch import nn

from actionbench.cli import main
from actionbench.profiling import max_batch as max_batch_module
from actionbench.profiling import profile_model
from actionbench.profiling.max_batch import find_max_batch
from actionbench.profiling.throughput import measure_throughput


def test_profile_json_has_the_contract_keys(capsys):
    assert main(["profile", "tam_resnet50", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"model", "frames", "size", "num_classes", "params", "paper_gflops", "gmacs"} <= set(result)
    assert (result["frames"], result["size"], result["num_classes"]) == (8, 224, 87)
    assert round(result["paper_gflops"], 1) == 32.8 and result["params"] == 23_725_655


def test_profile_table_and_options(capsys):
    assert main(["profile", "i3d_resnet50", "--temporal-pooling", "--frames", "8"]) == 0
    out = capsys.readouterr().out
    assert "i3d_resnet50" in out and "29.5" in out and "yes" in out
    with pytest.raises(SystemExit):
        main(["profile"])


def test_cuda_request_on_a_cpu_machine_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        profile_model("tsn_resnet18", device="cuda")


def test_throughput_and_max_batch_on_a_tiny_model():
    result = profile_model("tsm_resnet18", frames=4, size=32, throughput=True, batch_size=2, base_channels=8)
    assert result["throughput_inference"] > 0 and result["throughput_train"] > 0
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 8 * 8, 4))
    model.num_classes = 4
    assert measure_throughput(model, 4, 2, 8, mode="train", warmup=1, iters=2) > 0


class _MemoryHungry(nn.Module):
    """Fails like an out-of-memory allocation above 37 clips per batch."""

    num_classes = 2

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 2)

    def forward(self, x):
        if x.shape[0] > 37:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.fc(x.mean(dim=(1, 2, 3, 4)).unsqueeze(1))


def test_max_batch_doubles_then_bisects():
    assert find_max_batch(_MemoryHungry(), frames=1, size=2, cpu_memory_gb=4) == 37


def test_max_batch_recovers_from_a_real_cpu_allocation_failure():
    model = nn.Sequential(nn.Conv3d(3, 4, 1), nn.Flatten(), nn.LazyLinear(2))
    model.num_classes = 2
    model(torch.zeros(1, 3, 2, 64, 64))
    # ~200 KB of input per clip against a 256 MiB budget: the search must stop well below its upper bound.
    found = find_max_batch(model, frames=2, size=64, cpu_memory_gb=0.25, upper_bound=1 << 16)
    assert 16 <= found < 1 << 16
    assert max_batch_module._is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried..."))
