"""What CPU can check of the CUDA paths: autocast dtype rules, SyncBN conversion, RNG and scaler state, payloads.

CPU autocast applies the same dtype rules as CUDA autocast, a single process's SyncBatchNorm computes BatchNorm's
statistics, and the rest is bookkeeping that does not need a GPU to be wrong.
"""

import pickle
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from torch import nn

from actionbench import build_model, list_models
from actionbench.engine import checkpoint as ckpt
from actionbench.engine.checkpoint import load_scaler_state as _load_scaler
from actionbench.engine.distributed import DistInfo
from actionbench.engine.evaluation import collect_view_logits, shard_loader
from actionbench.models.layers import FrameBatchNorm2d

ROOT = Path(__file__).resolve().parents[1]


def _small(name: str, **kw):
    options = {"base_channels": 8} if "resnet" in name and not name.startswith("slowfast") else {}
    frames = 32 if name.startswith("slowfast") else 8
    return build_model(name, 5, frames, **options, **kw), frames, 64 if "inception" in name else 32


@pytest.mark.parametrize("name", list_models())
def test_bf16_autocast_forward_and_backward_of_every_model(name):
    torch.manual_seed(0)
    model, frames, size = _small(name)
    x = torch.randn(2, 3, frames, size, size)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        loss = nn.functional.cross_entropy(out, torch.tensor([0, 3]))
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_tam_keeps_half_precision_activations_under_autocast():
    from actionbench.models.temporal import TemporalAggregation

    tam = TemporalAggregation(8)
    x = torch.randn(2, 4, 8, 3, 3, dtype=torch.bfloat16, requires_grad=True)
    out = tam(x)
    assert out.dtype == torch.bfloat16  # not promoted to float32 by the float32 weight (twice the memory)
    out.float().sum().backward()
    assert tam.weight.grad.dtype == torch.float32 and x.grad.dtype == torch.bfloat16
    reference = TemporalAggregation(8)
    reference.load_state_dict(tam.state_dict())
    x32 = x.detach().float().requires_grad_(True)
    reference(x32).sum().backward()
    torch.testing.assert_close(tam.weight.grad, reference.weight.grad, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("name", list_models())
def test_syncbn_conversion_keeps_every_models_function(name):
    torch.manual_seed(0)
    plain, frames, size = _small(name, dropout=0.0)
    frame_norms = sum(isinstance(m, FrameBatchNorm2d) for m in plain.modules())
    synced, _, _ = _small(name, dropout=0.0)
    synced.load_state_dict(plain.state_dict())
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(synced)  # torch's own converter, as DDP's docs and Lightning
    norms = [m for m in synced.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, nn.SyncBatchNorm) for m in norms)
    assert sum(isinstance(m, FrameBatchNorm2d) and isinstance(m.bn, nn.SyncBatchNorm)
               for m in synced.modules()) == frame_norms
    assert set(synced.state_dict()) == set(plain.state_dict())
    x = torch.randn(2, 3, frames, size, size)
    torch.testing.assert_close(synced.eval()(x), plain.eval()(x))  # the same function
    torch.testing.assert_close(synced.train()(x), plain.train()(x))  # one process: SyncBN == BN (batch stats)
    torch.testing.assert_close(synced.state_dict()["fc.weight"], plain.state_dict()["fc.weight"])
    for key, value in plain.state_dict().items():  # the same running statistics after the step
        torch.testing.assert_close(synced.state_dict()[key], value)


def test_rng_state_is_per_rank_and_survives_another_device_count():
    torch.manual_seed(1)
    states = [ckpt.rng_state(), ckpt.rng_state()]  # two ranks' states (CPU here)
    expected = torch.rand(3)
    ckpt.restore_rng(states, rank=1, world_size=2)
    torch.testing.assert_close(torch.rand(3), expected)
    with mock.patch.object(ckpt.log, "warning") as warning:
        ckpt.restore_rng(states, rank=2, world_size=3)  # more processes than the run that wrote it
    assert "2" in str(warning.call_args)
    # an older checkpoint with every visible GPU's state, resumed on a machine with one GPU
    old = dict(states[0], cuda=[torch.zeros(16, dtype=torch.uint8), torch.ones(16, dtype=torch.uint8)])
    with mock.patch.object(torch.cuda, "is_available", return_value=True), \
            mock.patch.object(torch.cuda, "current_device", return_value=1), \
            mock.patch.object(torch.cuda, "set_rng_state") as set_state:
        ckpt.set_rng_state(old)
    assert torch.equal(set_state.call_args.args[0], torch.ones(16, dtype=torch.uint8))
    with mock.patch.object(torch.cuda, "is_available", return_value=True), \
            mock.patch.object(torch.cuda, "current_device", return_value=5), \
            mock.patch.object(torch.cuda, "set_rng_state") as set_state:
        ckpt.set_rng_state(old)  # no state for that device: left alone, no IndexError
    set_state.assert_not_called()


def test_grad_scaler_state_round_trips_and_an_empty_one_is_not_fatal():
    enabled = torch.amp.GradScaler("cpu", enabled=True, init_scale=1024.0)
    _load_scaler(enabled, {})  # a checkpoint of a CPU or bf16 run: scale starts afresh instead of failing
    assert enabled.get_scale() == 1024.0
    enabled._scale = torch.tensor(256.0)
    state = enabled.state_dict()
    resumed = torch.amp.GradScaler("cpu", enabled=True)
    _load_scaler(resumed, state)
    assert resumed.get_scale() == 256.0
    _load_scaler(torch.amp.GradScaler("cpu", enabled=False), state)  # fp16 off now: ignored


def test_gathered_evaluation_payload_is_the_logits_not_the_batches():
    class Logits(nn.Module):
        mean, std, channel_order = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "RGB"  # the VideoModel contract

        def forward(self, x):
            return x.mean(dim=(1, 2, 3, 4)).unsqueeze(1).expand(-1, 400).contiguous()

    class Clips(torch.utils.data.Dataset):
        def __len__(self):
            return 128

        def __getitem__(self, i):
            return torch.zeros(3, 1, 2, 2, dtype=torch.uint8), 0, i, 0

    loader = shard_loader(Clips(), batch_size=64, workers=0, device=torch.device("cpu"), info=DistInfo())
    logits, labels = collect_view_logits(Logits(), loader, device=torch.device("cpu"), info=DistInfo())
    payload = len(pickle.dumps((logits, labels)))
    assert payload < 1.5 * 128 * 400 * 4  # the logits themselves, not 64 x every row's batch


def test_gpu_smoke_script_runs_its_cpu_subset():
    models = ["tsn_resnet18", "tsm_resnet18", "tam_resnet18", "i3d_resnet18", "nln_resnet18", "tam_inception_v1",
              "i3d3x1_resnet50", "slowfast_resnet50"]
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_smoke.py"), "--device", "cpu", "--models",
                           *models, "--steps", "1"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "| tam_resnet18 bf16 channels_last |" in done.stdout and " 0 failed" in done.stdout
