"""Loading torchvision-format ImageNet files, inflation, our checkpoints, and named-key errors."""

import urllib.error

import pytest
import torch

from actionbench import build_model
from actionbench.errors import CheckpointError
from actionbench.models import weights
from actionbench.models.weights import WeightsMismatchError, load_weights

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_resnet_keys(layers=(3, 4, 6, 3), convs_per_block=3) -> set[str]:
    """torchvision's ResNet state-dict keys, written from its architecture (not from our model)."""
    keys = {"conv1.weight", "fc.weight", "fc.bias"} | {f"bn1.{p}" for p in _BN}
    for layer, blocks in enumerate(layers, start=1):
        for block in range(blocks):
            prefix = f"layer{layer}.{block}"
            for i in range(1, convs_per_block + 1):
                keys |= {f"{prefix}.conv{i}.weight"} | {f"{prefix}.bn{i}.{p}" for p in _BN}
            if block == 0 and (layer > 1 or convs_per_block == 3):
                keys |= {f"{prefix}.downsample.0.weight"} | {f"{prefix}.downsample.1.{p}" for p in _BN}
    return keys


def torchvision_googlenet_keys() -> set[str]:
    def basic(prefix):
        return {f"{prefix}.conv.weight"} | {f"{prefix}.bn.{p}" for p in _BN}

    keys = basic("conv1") | basic("conv2") | basic("conv3") | {"fc.weight", "fc.bias"}
    for name in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
        p = f"inception{name}"
        for branch in ("branch1", "branch2.0", "branch2.1", "branch3.0", "branch3.1", "branch4.1"):
            keys |= basic(f"{p}.{branch}")
    return keys


def random_imagenet_file(tmp_path, model_2d, extra_keys=()) -> tuple[str, dict]:
    """A randomly initialised 1000-class 2D state dict with torchvision's keys, saved as torchvision does."""
    torch.manual_seed(1)
    state = {}
    for key, value in model_2d.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(100)
        elif key.endswith("running_var"):
            state[key] = torch.rand_like(value) + 0.5
        else:
            state[key] = torch.randn_like(value) * 0.05
    for key, shape in extra_keys:
        state[key] = torch.randn(shape)
    path = tmp_path / "imagenet.pth"
    torch.save(state, path)
    return str(path), state


def test_our_2d_models_have_torchvision_keys():
    assert set(build_model("tsn_resnet50", 1000, 8).state_dict()) == torchvision_resnet_keys()
    assert set(build_model("tsn_resnet18", 1000, 8).state_dict()) == torchvision_resnet_keys((2, 2, 2, 2), 2)
    assert set(build_model("tsn_inception_v1", 1000, 8).state_dict()) == torchvision_googlenet_keys()


@pytest.mark.parametrize("design", ["tsn", "tsm", "tam", "tconv", "nln", "i3d", "s3d"])
def test_resnet50_imagenet_file_loads_into_every_design(tmp_path, design):
    path, state = random_imagenet_file(tmp_path, build_model("tsn_resnet50", 1000, 8))
    model = build_model(f"{design}_resnet50", 87, 8, pretrained=path)
    loaded = model.state_dict()
    w2d = state["layer1.0.conv1.weight"]
    if design in ("i3d", "s3d"):
        conv1 = loaded["conv1.weight"]
        assert conv1.shape == (64, 3, 3, 7, 7)
        for t in range(3):
            torch.testing.assert_close(conv1[:, :, t], state["conv1.weight"])  # copied, not divided (paper)
        w2d = w2d.unsqueeze(2)
    torch.testing.assert_close(loaded["layer1.0.conv1.weight"], w2d)
    torch.testing.assert_close(loaded["layer4.2.bn3.running_var"], state["layer4.2.bn3.running_var"])
    assert not torch.equal(loaded["fc.weight"][:5], state["fc.weight"][:5, : loaded["fc.weight"].shape[1]])


def test_googlenet_file_with_aux_heads_loads(tmp_path):
    aux = [("aux1.conv.conv.weight", (128, 512, 1, 1)), ("aux2.fc2.weight", (1000, 1024))]
    path, state = random_imagenet_file(tmp_path, build_model("tsn_inception_v1", 1000, 8), aux)
    for name in ("tsn_inception_v1", "tam_inception_v1", "i3d_inception_v1", "s3d_inception_v1"):
        model = build_model(name, 10, 8, pretrained=path)
        got = model.state_dict()["inception4c.branch2.1.conv.weight"]
        want = state["inception4c.branch2.1.conv.weight"]
        torch.testing.assert_close(got if got.dim() == 4 else got[:, :, got.shape[2] // 2], want)


def test_same_class_count_keeps_the_imagenet_classifier(tmp_path):
    path, state = random_imagenet_file(tmp_path, build_model("tsn_resnet18", 1000, 8))
    model = build_model("tsn_resnet18", 1000, 8, pretrained=path)
    torch.testing.assert_close(model.fc.weight, state["fc.weight"])


def test_boring_video_gives_the_2d_logits(tmp_path):
    """I3D inflated with division and replicate temporal padding sees a static clip as its 2D parent sees the image."""
    path, _ = random_imagenet_file(tmp_path, build_model("tsn_resnet18", 1000, 8))
    model_2d = build_model("tsn_resnet18", 1000, 4, pretrained=path).eval()
    model_3d = build_model("i3d_resnet18", 1000, 4, pretrained=path, inflate_divide=True,
                           temporal_padding="replicate").eval()
    image = torch.randn(2, 3, 1, 64, 64)
    clip = image.expand(2, 3, 4, 64, 64).contiguous()
    with torch.no_grad():
        torch.testing.assert_close(model_3d(clip), model_2d(image), rtol=1e-4, atol=1e-4)


def test_checkpoint_from_ddp_and_other_frame_count(tmp_path):
    source = build_model("tam_resnet18", 7, 8, base_channels=8)
    ddp_state = {f"module.{k}": v for k, v in source.state_dict().items()}
    path = tmp_path / "last.pt"
    torch.save({"model": ddp_state, "epoch": 3}, path)
    target = build_model("tam_resnet18", 7, 16, base_channels=8)  # progressive f8 -> f16
    load_weights(target, path)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value)


def test_key_mismatches_are_named(tmp_path):
    state = build_model("tsn_resnet18", 7, 8, base_channels=8).state_dict()
    state["layer9.extra.weight"] = torch.zeros(1)
    del state["layer1.0.bn1.running_mean"]
    with pytest.raises(WeightsMismatchError) as info:
        load_weights(build_model("tsn_resnet18", 7, 8, base_channels=8), state)
    assert "layer9.extra.weight" in str(info.value) and "layer1.0.bn1.running_mean" in str(info.value)

    wrong = build_model("tsn_resnet18", 7, 8, base_channels=16).state_dict()
    with pytest.raises(WeightsMismatchError, match="shape mismatches: conv1.weight"):
        load_weights(build_model("tsn_resnet18", 7, 8, base_channels=8), wrong)

    path, _ = random_imagenet_file(tmp_path, build_model("tsn_resnet18", 1000, 8))
    expected = r"missing keys: layer1.0.conv3.weight.*shape mismatches: layer1.0.conv1.weight"
    with pytest.raises(WeightsMismatchError, match=expected):
        build_model("tsn_resnet50", 10, 8, pretrained=path)  # a ResNet-18 file for a ResNet-50


def test_corrupt_file_and_offline_imagenet_errors(tmp_path, monkeypatch):
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(b"\x80\x02not a checkpoint")
    with pytest.raises(CheckpointError, match="truncated.pth"):
        build_model("tsn_resnet18", 10, 8, pretrained=str(bad))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(weights.torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(CheckpointError, match="pass its path: pretrained=/path/to/resnet50-0676ba61.pth"):
        build_model("tam_resnet50", 10, 8, pretrained="imagenet")
    with pytest.raises(ValueError, match="no 2D ImageNet parent"):
        build_model("slowfast_resnet50", 10, 32, pretrained="imagenet")
