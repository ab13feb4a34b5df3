#!/usr/bin/env python3
"""Ours against the reference codebases' own model code: same weights, same clips, float64.

    python scripts/check_reference_equivalence.py --reference ../shared/reference/peer-code [--only official]
        [--size 64] [--write-golden]

For every pair of the table in docs/models.md it builds the reference model from its own code in --reference
(the paper's IBM/action-recognition-pytorch, the TSM repo, MMAction2 + mmcv, PyTorchVideo, PySlowFast; their
framework imports are stubbed at load time: mmcv's ConvModule is conv + BN + activation named `conv`, `bn`;
MMAction2's base ResNet and TSM head, which are not among those files, are written here after theirs), fills it
with seeded random weights, saves it the way that codebase saves checkpoints, converts the file with
`actionbench.models.convert`, builds our model from the result and compares, in float64:
eval-mode logits, train-mode logits (batch statistics; dropout 0 on both sides) and the input gradient of a
random linear function of the train-mode logits, as max |ours - theirs| / max |theirs|. A pair passes at
<= 1e-6. Negative controls must fail (> 1e-4 or refused): our model on the time-reversed clip (what the old TSM
direction or swapped TAM weights would compute), the option that marks a deviation set back (e.g. the paper's
last I3D pool, stride slow frames, another non-local variant), one weight perturbed by 0.1 %.
--write-golden records the eval logits of the pairs the tests replay without the reference code
(tests/golden/, see tests/reference_golden.py). Exit status 1 if any pair or control does not behave.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import io
import json
import logging
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.model_zoo
import yaml
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from actionbench.config import from_dict  # noqa: E402
from actionbench.engine.assembly import build_run_model  # noqa: E402
from actionbench.models.convert import ConversionError, convert_checkpoint  # noqa: E402
from tests.reference_golden import draw_input, draw_state, state_shapes, wrap, write_golden  # noqa: E402

TOLERANCE, CONTROL_MIN = 1e-6, 1e-4
NUM_CLASSES = 5


# ----------------------------------------------------------------------------------------------------------------
# Loading the references' own code with their framework imports stubbed
# ----------------------------------------------------------------------------------------------------------------

def _module(name: str, path: Path | None = None, **attrs) -> types.ModuleType:
    """A module (a package when `path` is given, its submodules then load from that folder) in sys.modules."""
    if name in sys.modules and path is None and not attrs:
        return sys.modules[name]
    module = sys.modules.get(name) or types.ModuleType(name)
    if path is not None:
        module.__path__ = [str(path)]
    module.__dict__.update(attrs)
    sys.modules[name] = module
    parent, _, leaf = name.rpartition(".")
    if parent:
        setattr(_module(parent), leaf, module)
    return module


class _Registry:
    def register_module(self, *args, **kwargs):
        return lambda obj: obj

    def register(self, *args, **kwargs):
        return lambda obj: obj


class _CfgNode(dict):
    """fvcore's CfgNode as far as PySlowFast's defaults.py uses it: attribute access and clone()."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        self[key] = value

    def clone(self):
        return copy.deepcopy(self)


def _plain(node):
    return {k: _plain(v) for k, v in node.items()} if isinstance(node, dict) else node


_RELU, _BN = {"type": "ReLU"}, {"type": "BN"}


class _ConvModule(nn.Module):
    """mmcv's ConvModule: conv -> norm (`bn`) -> activation; the conv has a bias only without a norm."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias="auto", conv_cfg=None, norm_cfg=None, act_cfg=_RELU, **kwargs):
        super().__init__()
        three_d = "3d" in (conv_cfg or {}).get("type", "Conv2d").lower()
        bias = norm_cfg is None if bias == "auto" else bias
        self.conv = (nn.Conv3d if three_d else nn.Conv2d)(in_channels, out_channels, kernel_size, stride, padding,
                                                          dilation, groups, bias=bias)
        self.norm_cfg = norm_cfg
        if norm_cfg is not None:
            self.bn = (nn.BatchNorm3d if "3d" in norm_cfg["type"].lower() else nn.BatchNorm2d)(out_channels)
        self.activate = nn.ReLU(inplace=True) if act_cfg is not None else None

    @property
    def norm(self):
        return self.bn

    def forward(self, x):
        x = self.conv(x)
        if self.norm_cfg is not None:
            x = self.bn(x)
        return self.activate(x) if self.activate is not None else x


class _MMBottleneck(nn.Module):
    """MMAction2's ResNet Bottleneck ('pytorch' style: stride in the 3x3), ConvModule names."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = _ConvModule(inplanes, planes, 1, bias=False, norm_cfg=_BN, act_cfg=_RELU)
        self.conv2 = _ConvModule(planes, planes, 3, stride, 1, bias=False, norm_cfg=_BN, act_cfg=_RELU)
        self.conv3 = _ConvModule(planes, planes * 4, 1, bias=False, norm_cfg=_BN, act_cfg=None)
        self.downsample, self.relu = downsample, nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.conv3(self.conv2(self.conv1(x)))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class _MMBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = _ConvModule(inplanes, planes, 3, stride, 1, bias=False, norm_cfg=_BN, act_cfg=_RELU)
        self.conv2 = _ConvModule(planes, planes, 3, 1, 1, bias=False, norm_cfg=_BN, act_cfg=None)
        self.downsample, self.relu = downsample, nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class _MMResNet(nn.Module):
    """MMAction2's 2D ResNet backbone (mmaction/models/backbones/resnet.py) as far as ResNetTSM builds on it."""

    def __init__(self, depth, pretrained=None, num_stages=4, **kwargs):
        super().__init__()
        block, layers = {18: (_MMBasicBlock, (2, 2, 2, 2)), 50: (_MMBottleneck, (3, 4, 6, 3)),
                         101: (_MMBottleneck, (3, 4, 23, 3))}[depth]
        self.depth, self.pretrained, self.num_stages = depth, pretrained, num_stages
        self.conv1 = _ConvModule(3, 64, 7, 2, 3, bias=False, norm_cfg=_BN, act_cfg=_RELU)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, count in enumerate(layers):
            planes, stride = 64 * 2**i, 1 if i == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes * block.expansion:
                downsample = _ConvModule(inplanes, planes * block.expansion, 1, stride, bias=False, norm_cfg=_BN,
                                         act_cfg=None)
            blocks = [block(inplanes, planes, stride, downsample)]
            inplanes = planes * block.expansion
            blocks += [block(inplanes, planes) for _ in range(count - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x


class _MMRecognizer(nn.Module):
    """Recognizer2D + TSMHead/TSNHead: per-frame backbone, average pool, fc_cls, average over segments."""

    def __init__(self, backbone, in_channels, segments):
        super().__init__()
        self.backbone = backbone
        self.cls_head = nn.Module()
        self.cls_head.dropout = nn.Dropout(0.5)
        self.cls_head.fc_cls = nn.Linear(in_channels, NUM_CLASSES)
        self.segments = segments

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.backbone(x), 1).flatten(1)
        x = self.cls_head.fc_cls(self.cls_head.dropout(x))
        return x.view(-1, self.segments, x.shape[-1]).mean(1)


class _MM3DRecognizer(nn.Module):
    """Recognizer3D + I3DHead: the backbone on (N, 3, T, H, W), average pool over time and space, fc_cls."""

    def __init__(self, backbone, in_channels):
        super().__init__()
        self.backbone = backbone
        self.cls_head = nn.Module()
        self.cls_head.dropout = nn.Dropout(0.5)
        self.cls_head.fc_cls = nn.Linear(in_channels, NUM_CLASSES)

    def forward(self, x):
        return self.cls_head.fc_cls(self.cls_head.dropout(F.adaptive_avg_pool3d(self.backbone(x), 1).flatten(1)))


def load_references(ref: Path) -> dict[str, types.ModuleType]:
    torch.utils.model_zoo.load_url = lambda *a, **k: {}  # the builders fetch ImageNet weights: none here
    constant_init = lambda m, val, bias=0: (nn.init.constant_(m.weight, val),  # noqa: E731
                                            m.bias is not None and nn.init.constant_(m.bias, bias))
    normal_init = lambda m, mean=0, std=1, bias=0: (nn.init.normal_(m.weight, mean, std),  # noqa: E731
                                                    m.bias is not None and nn.init.constant_(m.bias, bias))
    msra = lambda m: nn.init.kaiming_normal_(m.weight)  # noqa: E731
    # torchvision of the TSM era (its resnet.py is among the references), and what PyTorchVideo imports of it
    _module("torchvision")
    tv_models = _module("torchvision.models", ref / "torchvision" / "models")
    _module("torchvision.models.utils", load_state_dict_from_url=lambda *a, **k: {})
    _module("torchvision.ops", RoIAlign=nn.Module)
    resnet = importlib.import_module("torchvision.models.resnet")
    for name in ("ResNet", "resnet18", "resnet34", "resnet50", "resnet101"):
        setattr(tv_models, name, getattr(resnet, name))
    # the TSM repo
    _module("ops", ref / "temporal-shift-module" / "ops")
    _module("ops.transforms", torchvision=sys.modules["torchvision"], np=np, torch=torch)
    _module("archs")
    # mmcv / mmengine / MMAction2
    class _BaseModule(nn.Module):  # mmengine's: an nn.Module taking init_cfg
        def __init__(self, init_cfg=None, **kwargs):
            super().__init__()

    class _Sequential(nn.Sequential):
        def __init__(self, *args, init_cfg=None):
            super().__init__(*args)

    kaiming = lambda m, **k: nn.init.kaiming_normal_(m.weight)  # noqa: E731
    _module("mmengine.model", constant_init=constant_init, normal_init=normal_init, BaseModule=_BaseModule,
            Sequential=_Sequential)
    _module("mmengine.model.weight_init", constant_init=constant_init, kaiming_init=kaiming)
    _module("mmengine.utils.dl_utils.parrots_wrapper", _BatchNorm=nn.modules.batchnorm._BatchNorm)
    _module("mmengine.registry", MODELS=_Registry())
    _module("mmengine.logging", MMLogger=logging.Logger)
    _module("mmengine.runner.checkpoint", _load_checkpoint=lambda *a, **k: {}, load_checkpoint=lambda *a, **k: {})
    _module("mmcv.cnn.bricks", ref / "mmcv" / "mmcv" / "cnn" / "bricks")
    _module("mmcv.cnn.bricks.conv_module", ConvModule=_ConvModule)
    non_local = importlib.import_module("mmcv.cnn.bricks.non_local")
    _module("mmcv.cnn", ConvModule=_ConvModule, NonLocal3d=non_local.NonLocal3d,
            build_activation_layer=lambda cfg: nn.ReLU(inplace=True))
    _module("mmaction.registry", MODELS=_Registry())
    _module("mmaction.models.backbones", ref / "mmaction2" / "mmaction" / "models" / "backbones")
    _module("mmaction.models.backbones.resnet", ResNet=_MMResNet)
    # PyTorchVideo (also imported by PySlowFast)
    _module("fvcore.nn.weight_init", c2_msra_fill=msra, c2_xavier_fill=msra)
    _module("pytorchvideo", ref / "pytorchvideo" / "pytorchvideo")
    _module("pytorchvideo.layers", ref / "pytorchvideo" / "pytorchvideo" / "layers",
            SpatioTemporalClsPositionalEncoding=nn.Module)
    _module("pytorchvideo.layers.batch_norm", NaiveSyncBatchNorm1d=nn.BatchNorm1d, NaiveSyncBatchNorm3d=nn.BatchNorm3d)
    _module("pytorchvideo.models", ref / "pytorchvideo" / "pytorchvideo" / "models")
    # PySlowFast
    _module("fvcore.common.config", CfgNode=_CfgNode)
    _module("detectron2.layers", ROIAlign=nn.Module)
    _module("slowfast", ref / "SlowFast" / "slowfast")
    _module("slowfast.config", ref / "SlowFast" / "slowfast" / "config")
    _module("slowfast.config.custom_config", add_custom_config=lambda cfg: None)
    _module("slowfast.utils.logging", get_logger=logging.getLogger)
    _module("slowfast.utils.weight_init_helper", init_weights=lambda *a, **k: None)
    _module("slowfast.models", ref / "SlowFast" / "slowfast" / "models")
    _module("slowfast.models.attention", MultiScaleBlock=nn.Module)
    _module("slowfast.models.reversible_mvit", ReversibleMViT=nn.Module)
    _module("slowfast.models.build", MODEL_REGISTRY=_Registry())
    sys.path.insert(0, str(ref / "ibm-action-recognition-pytorch"))
    with contextlib.redirect_stdout(io.StringIO()):
        return {
            "official": importlib.import_module("models"),
            "tsm": importlib.import_module("ops.models"),
            "mmaction2": importlib.import_module("mmaction.models.backbones.resnet_tsm"),
            "mmaction2_3d": importlib.import_module("mmaction.models.backbones.resnet3d"),
            "pytorchvideo": types.SimpleNamespace(slowfast=importlib.import_module("pytorchvideo.models.slowfast"),
                                                  resnet=importlib.import_module("pytorchvideo.models.resnet")),
            "pyslowfast": types.SimpleNamespace(defaults=importlib.import_module("slowfast.config.defaults"),
                                                builder=importlib.import_module(
                                                    "slowfast.models.video_model_builder")),
        }


# ----------------------------------------------------------------------------------------------------------------
# The pairs
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Pair:
    name: str  # "<source>/<what>"
    build: Callable[[], nn.Module]  # the reference model
    forward: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # theirs on our (N, 3, T, H, W) clip
    wrapper: dict  # how their code saves: container key, key prefix, extra entries
    file_name: str
    frames: int
    convert: dict = field(default_factory=dict)  # what the file does not say
    controls: list[tuple[str, dict]] = field(default_factory=list)  # (label, model options) that must fail
    golden: bool = False
    clip_golden: bool = False  # also a JPEG clip and their logits on it as `actionbench predict` prepares it
    arch: Callable[[nn.Module], str] | None = None  # the paper's code names the model in its checkpoints
    scale: dict[str, float] = field(default_factory=dict)  # draw_state's factors for keys that would overflow


def frames_first(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, T, H, W) -> (N*T, 3, H, W): the per-frame batch 2D codebases feed their backbones."""
    return x.transpose(1, 2).flatten(0, 1)


def frames_as_channels(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, T, H, W) -> (N, T*3, H, W): the TSN-style input of the paper's and the TSM repo's 2D models."""
    n, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(n, t * c, h, w)


def official_pairs(refs, size) -> list[Pair]:
    m = refs["official"]
    pairs = []

    def ibm(name, build, two_d, frames, pooled, golden=False, clip_golden=False, controls=()):
        def make():
            with contextlib.redirect_stdout(io.StringIO()):
                return build()

        extra = {"epoch": 50, "best_top1": 71.25}  # + "arch": the model's network_name, once built
        pairs.append(Pair(f"official/{name}{'-tp' if pooled else ''}", make,
                          (lambda r, x: r(frames_as_channels(x))) if two_d else (lambda r, x: r(x)),
                          {"container": "state_dict", "prefix": "module.", "extra": extra},
                          f"{name}.pth.tar", frames, golden=golden, clip_golden=clip_golden, controls=list(controls),
                          arch=lambda net: f"kinetics400-rgb-{net.network_name}-f{frames}-cosine-bs8-e50"))

    reverse = [("time-reversed clip", {"__reverse__": True})]
    for depth in (18, 50):
        for pooled in (False, True):
            kw = dict(depth=depth, num_classes=NUM_CLASSES, without_t_stride=not pooled, groups=8, dw_conv=True,
                      blending_frames=3, blending_method="sum", dropout=0.5, pooling_method="max",
                      imagenet_pretrained=False)
            ibm(f"tsn_resnet{depth}", lambda kw=kw: m.resnet(temporal_module_name=None, **kw), True, 8, pooled,
                golden=depth == 18 and not pooled)
            ibm(f"tam_resnet{depth}", lambda kw=kw: m.resnet(temporal_module_name="TAM", **kw), True, 8, pooled,
                golden=depth == 18 and pooled, clip_golden=depth == 18 and pooled, controls=reverse)
            ibm(f"i3d_resnet{depth}", lambda d=depth, p=pooled: m.i3d_resnet(d, NUM_CLASSES, 0.5, not p), False, 8,
                pooled, golden=depth == 18 and not pooled, controls=reverse)
            ibm(f"s3d_resnet{depth}", lambda d=depth, p=pooled: m.s3d_resnet(d, NUM_CLASSES, 0.5, not p, False),
                False, 8, pooled, controls=reverse)
    kw = dict(depth=50, num_classes=NUM_CLASSES, without_t_stride=True, groups=8, dw_conv=False,
              blending_frames=3, blending_method="sum", dropout=0.5, pooling_method="max",
              imagenet_pretrained=False)
    ibm("tconv_resnet50", lambda kw=kw: m.resnet(temporal_module_name="TAM", **kw), True, 8, False, controls=reverse)
    for pooled in (False, True):
        kw = dict(num_classes=NUM_CLASSES, without_t_stride=not pooled, groups=8, dropout=0.5, blending_frames=3,
                  blending_method="sum", pooling_method="max", imagenet_pretrained=False)
        ibm("tsn_inception_v1", lambda kw=kw: m.inception_v1(temporal_module_name=None, dw_conv=True, **kw), True,
            8, pooled)
        ibm("tam_inception_v1", lambda kw=kw: m.inception_v1(temporal_module_name="TAM", dw_conv=True, **kw), True,
            8, pooled, golden=not pooled, controls=reverse)
        ibm("tconv_inception_v1", lambda kw=kw: m.inception_v1(temporal_module_name="TAM", dw_conv=False, **kw),
            True, 8, pooled, controls=reverse)
        ibm("i3d_inception_v1", lambda p=pooled: m.i3d(NUM_CLASSES, 0.5, not p, "max"), False, 8, pooled,
            golden=not pooled, controls=[("the paper's last temporal pool (kernel 2)", {"last_time_pool": 2})]
            if not pooled else reverse)
        ibm("s3d_inception_v1", lambda p=pooled: m.s3d(NUM_CLASSES, 0.5, not p, "max", False), False, 8, pooled,
            golden=not pooled, controls=reverse)
    return pairs


def tsm_pairs(refs, size) -> list[Pair]:
    tsn_class = refs["tsm"].TSN
    pairs = []

    def tsm(name, base, shift, pooled=False, non_local=False, golden=False, controls=(), clip_golden=False):
        def make():
            with contextlib.redirect_stdout(io.StringIO()):
                net = tsn_class(NUM_CLASSES, 8, "RGB", base_model=base, dropout=0.8, partial_bn=False,
                                print_spec=False, pretrain="none", is_shift=shift, shift_div=8,
                                shift_place="blockres", temporal_pool=pooled, non_local=non_local)
                if pooled:  # as their main.py and test_models.py do after building the model
                    importlib.import_module("ops.temporal_shift").make_temporal_pool(net.base_model, 8)
            return net

        file_name = (f"TSM_kinetics_RGB_{base}_shift8_blockres_avg_segment8_e50{'_tpool' if pooled else ''}"
                     f"{'_nl' if non_local else ''}.pth")
        pairs.append(Pair(f"tsm/{name}", make, lambda r, x: r(frames_as_channels(x)),
                          {"container": "state_dict", "prefix": "module.",
                           "extra": {"epoch": 50, "arch": base, "best_prec1": 70.5}},
                          file_name, 8, golden=golden, controls=list(controls), clip_golden=clip_golden))

    reverse = [("time-reversed clip (the old shift direction)", {"__reverse__": True})]
    tsm("tsm_resnet50", "resnet50", True, golden=True, controls=reverse, clip_golden=True)
    tsm("tsm_resnet50-tpool", "resnet50", True, pooled=True,
        controls=[("the paper's pooling after layer1-3", {"pool_style": "paper"})])
    tsm("tsn_resnet50", "resnet50", False)
    tsm("tsm_resnet101", "resnet101", True,
        controls=reverse)
    tsm("tsm_resnet50-nl", "resnet50", True, non_local=True, golden=True,
        controls=[("non-local sub-sampled before the convs", {"nonlocal_subsample": "before"}),
                  ("the paper's non-local placement", {"nonlocal_at": "odd"})])
    return pairs


def mmaction2_pairs(refs, size) -> list[Pair]:
    resnet_tsm = refs["mmaction2"].ResNetTSM
    pairs = []

    def mm(name, depth, shift, pooled=False, nl=False, golden=False, controls=(), clip_golden=False,
           mode="embedded_gaussian", scale=None):
        def make():
            backbone = resnet_tsm(depth, num_segments=8, is_shift=shift, temporal_pool=pooled,
                                  non_local=((0, 0, 0, 0), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 0, 0)) if nl
                                  else (0, 0, 0, 0),
                                  non_local_cfg=dict(sub_sample=True, use_scale=False,
                                                     norm_cfg=dict(type="BN3d", requires_grad=True),
                                                     mode=mode) if nl else dict(),
                                  pretrained2d=False)
            return _MMRecognizer(backbone, 2048 if depth >= 50 else 512, 4 if pooled else 8)

        meta = {"epoch": 50, "iter": 1000, "mmengine_version": "0.10.4"}
        if nl:  # mmengine keeps the run's config in the checkpoint: the only place that says the non-local mode
            meta["cfg"] = ("model = dict(type='Recognizer2D', backbone=dict(type='ResNetTSM', depth=50, "
                           "non_local=((0, 0, 0, 0), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 0, 0)), "
                           "non_local_cfg=dict(sub_sample=True, use_scale=False, "
                           f"norm_cfg=dict(type='BN3d', requires_grad=True), mode='{mode}')))")
        pairs.append(Pair(f"mmaction2/{name}", make, lambda r, x: r(frames_first(x)),
                          {"container": "state_dict", "prefix": "", "extra": {"meta": meta}}, f"{name}.pth", 8,
                          convert={"temporal_pooling": True, "options": {"pool_style": "tsm"}} if pooled else {},
                          golden=golden, controls=list(controls), clip_golden=clip_golden, scale=scale or {}))

    reverse = [("time-reversed clip (the old shift direction)", {"__reverse__": True})]
    mm("tsm_resnet50", 50, True, controls=reverse)
    mm("tsm_resnet50-tpool", 50, True, pooled=True)
    mm("tsm_resnet50-nl", 50, True, nl=True, golden=True,
       controls=[("non-local with PySlowFast's scaling", {"nonlocal_scale": True})])
    mm("tsm_resnet50-nl-dot", 50, True, nl=True, golden=True, mode="dot_product",
       scale={r"non_local_block\.conv_out\.bn\.weight$": 1e-3},  # un-normalised affinities overflow in eval
       controls=[("embedded-Gaussian non-local (same keys)", {"nonlocal_mode": "embedded_gaussian"})])
    mm("tsn_resnet18", 18, False, golden=True, clip_golden=True)

    def i3d():  # i3d_imagenet-pretrained-r50_8xb8-32x2x1: their I3D-R50 as configured, at its 32 frames
        return _MM3DRecognizer(refs["mmaction2_3d"].ResNet3d(
            50, pretrained2d=False, conv1_kernel=(5, 7, 7), conv1_stride_t=2, pool1_stride_t=2,
            inflate=((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0)), zero_init_residual=False), 2048)

    pairs.append(Pair("mmaction2/i3d_resnet50-32f", i3d, lambda r, x: r(x),
                      {"container": "state_dict", "prefix": "", "extra": {"meta": {"epoch": 100}}},
                      "i3d_imagenet-pretrained-r50_8xb8-32x2x1.pth", 32,
                      controls=[("its pool2 as the TSM repo's (kernel 3, padded)", {"pool_style": "tsm"})],
                      golden=True))
    return pairs


def pytorchvideo_pairs(refs, size) -> list[Pair]:
    pv = refs["pytorchvideo"]
    side = size // 32

    def slowfast():
        return pv.slowfast.create_slowfast(model_num_class=NUM_CLASSES, dropout_rate=0.5,
                                           head_pool_kernel_sizes=((8, side, side), (32, side, side)))

    def i3d():
        return pv.resnet.create_resnet(
            model_num_class=NUM_CLASSES, dropout_rate=0.5, stem_conv_kernel_size=(5, 7, 7), stage1_pool=nn.MaxPool3d,
            stage_conv_a_kernel_size=((3, 1, 1), [(3, 1, 1), (1, 1, 1)], [(3, 1, 1), (1, 1, 1)],
                                      [(1, 1, 1), (3, 1, 1)]),
            head_pool_kernel_size=(4, side, side))

    def two_pathways(r, x):
        return r([x[:, :, torch.linspace(0, x.shape[2] - 1, x.shape[2] // 4).long()], x])

    return [
        Pair("pytorchvideo/slowfast_r50", slowfast, two_pathways, {"container": None}, "SLOWFAST_8x8_R50.pyth", 32,
             golden=True, controls=[("every 4th frame to the slow pathway", {"slow_frames": "stride"})]),
        Pair("pytorchvideo/i3d_r50", i3d, lambda r, x: r(x), {"container": "model_state"}, "I3D_8x8_R50.pyth", 8,
             golden=True, controls=[("the paper's temporal pooling", {"pool_style": "paper"})], clip_golden=True),
    ]


def pyslowfast_pairs(refs, size) -> list[Pair]:
    sf = refs["pyslowfast"]

    def configure(arch: str, frames: int, location, instantiation="softmax"):
        cfg = sf.defaults.get_cfg()
        two = arch == "slowfast"
        cfg.MODEL.ARCH, cfg.MODEL.MODEL_NAME = arch, "SlowFast" if two else "ResNet"
        cfg.MODEL.NUM_CLASSES, cfg.MODEL.DROPOUT_RATE, cfg.MODEL.HEAD_ACT = NUM_CLASSES, 0.5, "none"
        cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE = frames, 2 if two else 8
        cfg.DATA.TRAIN_CROP_SIZE = cfg.DATA.TEST_CROP_SIZE = size
        cfg.DATA.INPUT_CHANNEL_NUM = [3, 3] if two else [3]
        cfg.RESNET.DEPTH, cfg.RESNET.ZERO_INIT_FINAL_BN = 50, True
        cfg.RESNET.NUM_BLOCK_TEMP_KERNEL = [[3, 3], [4, 4], [6, 6], [3, 3]] if two else [[3], [4], [6], [3]]
        cfg.RESNET.SPATIAL_STRIDES = [[1, 1], [2, 2], [2, 2], [2, 2]] if two else [[1], [2], [2], [2]]
        cfg.RESNET.SPATIAL_DILATIONS = [[1, 1]] * 4 if two else [[1]] * 4
        cfg.NONLOCAL.LOCATION, cfg.NONLOCAL.INSTANTIATION = location, instantiation
        cfg.NONLOCAL.GROUP = [[1, 1]] * 4 if two else [[1]] * 4
        if two:
            cfg.SLOWFAST.ALPHA, cfg.SLOWFAST.BETA_INV = 4, 8
            cfg.SLOWFAST.FUSION_CONV_CHANNEL_RATIO, cfg.SLOWFAST.FUSION_KERNEL_SZ = 2, 7
        return cfg

    def pair(name, arch, frames, location, controls, golden=False, instantiation="softmax", clip_golden=False):
        cfg = configure(arch, frames, location, instantiation)
        builder = sf.builder.SlowFast if arch == "slowfast" else sf.builder.ResNet
        saved = {k: _plain(cfg[k]) for k in ("MODEL", "DATA", "TEST", "SLOWFAST", "NONLOCAL", "RESNET")}
        saved["MODEL"]["HEAD_ACT"] = "softmax"  # what a real run saves; the model here returns logits
        forward = ((lambda r, x: r([x[:, :, torch.linspace(0, x.shape[2] - 1, x.shape[2] // 4).long()], x]))
                   if arch == "slowfast" else (lambda r, x: r([x])))
        return Pair(f"pyslowfast/{name}", lambda: builder(cfg), forward,
                    {"container": "model_state", "extra": {"epoch": 196, "cfg": yaml.safe_dump(saved)}},
                    f"{name}.pyth", frames, golden=golden, controls=controls, clip_golden=clip_golden)

    return [
        pair("SLOWFAST_8x8_R50", "slowfast", 32, [[[], []]] * 4,
             [("every 4th frame to the slow pathway", {"slow_frames": "stride"})], golden=True,
             instantiation="dot_product"),
        pair("I3D_8x8_R50", "i3d", 8, [[[]]] * 4, [("TSM-style temporal pooling", {"pool_style": "tsm"})],
             golden=True, clip_golden=True),
        pair("C2D_NLN_8x8_R50", "c2d", 8, [[[]], [[1, 3]], [[1, 3, 5]], [[]]],
             [("non-local without scaling", {"nonlocal_scale": False}),
              ("non-local sub-sampled after the convs", {"nonlocal_subsample": "after"})], golden=True),
    ]


PAIR_SETS = {"official": official_pairs, "tsm": tsm_pairs, "mmaction2": mmaction2_pairs,
             "pytorchvideo": pytorchvideo_pairs, "pyslowfast": pyslowfast_pairs}


# ----------------------------------------------------------------------------------------------------------------
# Comparing
# ----------------------------------------------------------------------------------------------------------------

def relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-300))


def no_dropout(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model


def our_model(checkpoint: dict, options: dict | None = None) -> nn.Module:
    config = copy.deepcopy(checkpoint["config"])
    config["model"]["options"] = {**config["model"]["options"], **(options or {})}
    model = build_run_model(from_dict(config), len(checkpoint["classes"]))
    model.load_state_dict(checkpoint["model"])
    return model.double()


def train_outputs(model, forward, x, weights):
    x = x.clone().requires_grad_(True)
    no_dropout(model).train()  # (the TSM repo's TSN.train returns None: no chaining)
    out = forward(model, x)
    (out * weights).sum().backward()
    return out.detach(), x.grad


def compare(pair: Pair, size: int, workdir: Path, seed: int, golden: bool) -> dict:
    torch.manual_seed(seed)
    ref = pair.build().double()
    if pair.arch:
        pair.wrapper["extra"]["arch"] = pair.arch(ref)
    state = draw_state(state_shapes({k: v for k, v in ref.state_dict().items()}), seed, pair.scale)
    ref.load_state_dict(state)
    path = workdir / pair.file_name
    saved = wrap(state, pair.wrapper)
    if pair.wrapper.get("container") == "state_dict" and pair.name.startswith("official/"):
        saved["best_top1"] = torch.tensor(saved["best_top1"])  # a tensor, as their train.py saves it
        saved["optimizer"] = {"state": {}, "param_groups": [{"lr": 0.01, "momentum": 0.9, "params": [0, 1]}]}
        saved["scheduler"] = torch.optim.lr_scheduler.MultiStepLR(
            torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1), [10, 20]).state_dict()  # holds a Counter
    torch.save(saved, path)
    checkpoint = convert_checkpoint(path, **pair.convert)
    ours = our_model(checkpoint)
    frames = pair.frames
    x = draw_input([2, 3, frames, size, size], seed + 1)
    ref.eval()
    ours.eval()
    with torch.no_grad():
        theirs_eval = pair.forward(ref, x)
        ours_eval = ours(x)
    weights = draw_input(list(theirs_eval.shape), seed + 2)
    theirs_train, theirs_grad = train_outputs(copy.deepcopy(ref), pair.forward, x, weights)
    ours_train, ours_grad = train_outputs(copy.deepcopy(ours), lambda m, v: m(v), x, weights)
    row = {"pair": pair.name, "ours": checkpoint["config"]["model"]["name"],
           "options": checkpoint["config"]["model"]["options"],
           "temporal_pooling": checkpoint["config"]["model"]["temporal_pooling"],
           "eval": relative(ours_eval, theirs_eval), "train": relative(ours_train, theirs_train),
           "grad": relative(ours_grad, theirs_grad), "controls": []}
    for label, options in pair.controls:
        row["controls"].append((label, control(checkpoint, options, x, theirs_eval)))
    perturbed = copy.deepcopy(checkpoint)
    first = next(k for k, v in perturbed["model"].items() if v.dim() >= 4)
    perturbed["model"][first] = perturbed["model"][first] * 1.001
    row["controls"].append((f"{first} x 1.001", control(perturbed, {}, x, theirs_eval)))
    if golden and pair.golden:
        record = {"pair": pair.name, "file_name": pair.file_name, "wrapper": pair.wrapper, "convert": pair.convert,
                  "seed": seed, "keys": state_shapes(state), "input": {"shape": list(x.shape), "seed": seed + 1},
                  "logits": theirs_eval.tolist(), "model": row["ours"], "options": row["options"],
                  **({"scale": pair.scale} if pair.scale else {})}
        if pair.clip_golden:
            record["clip"] = clip_golden(pair, ref, path, workdir, size, seed + 3)
        write_golden(pair.name.replace("/", "__"), record)
    return row


def clip_golden(pair: Pair, ref: nn.Module, path: Path, workdir: Path, size: int, seed: int) -> dict:
    """JPEG frames and their logits on the clip our test pipeline makes of them under the converted protocol
    (one centre clip of `size`): what `actionbench predict` must reproduce."""
    import base64

    import simplejpeg

    from actionbench.data.dataset import VideoClipDataset
    from actionbench.data.records import VideoRecord
    from actionbench.data.transforms import normalize_clips

    rng = np.random.default_rng(seed)
    base = torch.from_numpy(rng.uniform(0, 255, (pair.frames, 3, 8, 8)))
    frames = F.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    frames = (frames + torch.from_numpy(rng.normal(0, 12, frames.shape))).clamp(0, 255).round().to(torch.uint8)
    folder = workdir / "clip"
    folder.mkdir(exist_ok=True)
    encoded = []
    for i, frame in enumerate(frames.permute(0, 2, 3, 1).contiguous().numpy()):
        data = simplejpeg.encode_jpeg(frame, quality=92, colorspace="RGB")
        (folder / f"{i + 1:05d}.jpg").write_bytes(data)
        encoded.append(base64.b64encode(data).decode())
    protocol = {"data.size": size, "data.scale_size": size, "data.sampling": "uniform", "test.num_clips": 1,
                "test.num_crops": 1}
    model = our_model(convert_checkpoint(path, **pair.convert, preprocessing=protocol))
    dataset = VideoClipDataset([VideoRecord(str(folder), 0, "clip")], num_frames=pair.frames, mode="test", size=size,
                               scale_size=size, normalize=False)
    clip = normalize_clips(dataset[0][0].unsqueeze(0), model.mean, model.std, channel_order=model.channel_order)
    ref.eval()
    with torch.no_grad():
        logits = pair.forward(ref, clip.double())
    return {"frames": encoded, "protocol": protocol, "logits": logits.tolist()}


def control(checkpoint: dict, options: dict, x: torch.Tensor, theirs: torch.Tensor) -> float | str:
    """How far a deliberately wrong variant lands from theirs (it must be far), or why it could not run."""
    options = dict(options)
    reverse = options.pop("__reverse__", False)
    try:
        model = our_model(checkpoint, options).eval()
        with torch.no_grad():
            return relative(model(x.flip(2) if reverse else x), theirs)
    except (RuntimeError, ValueError) as exc:
        return f"refused ({type(exc).__name__})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, type=Path, help="the peer-code folder")
    parser.add_argument("--only", nargs="+", choices=list(PAIR_SETS), help="these sources only")
    parser.add_argument("--match", help="pairs whose name contains this")
    parser.add_argument("--size", type=int, default=64, help="clip height and width (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-golden", action="store_true", help="record tests/golden/ files")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    refs = load_references(args.reference.resolve())
    pairs = [p for source in (args.only or PAIR_SETS) for p in PAIR_SETS[source](refs, args.size)
             if not args.match or args.match in p.name]
    print(f"reference: {args.reference}; float64, batch 2, {args.size}x{args.size}; pass: <= {TOLERANCE:g} "
          f"relative (eval logits, train logits, input gradient); controls must exceed {CONTROL_MIN:g} or be refused\n")
    print("| reference | ours (options) | eval | train | grad | controls (relative difference) | |")
    print("|---|---|---|---|---|---|---|")
    failures, rows = 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for pair in pairs:
            start = time.time()
            try:
                row = compare(pair, args.size, Path(tmp), args.seed, args.write_golden)
            except (ConversionError, RuntimeError, ValueError) as exc:
                failures += 1
                print(f"| {pair.name} | - | - | - | - | - | FAILED: {exc} |", flush=True)
                continue
            ok = max(row["eval"], row["train"], row["grad"]) <= TOLERANCE
            controls_ok = all(isinstance(v, str) or v > CONTROL_MIN for _, v in row["controls"])
            failures += (not ok) + (not controls_ok)
            options = ", ".join(f"{k}={v}" for k, v in row["options"].items())
            model = f"{row['ours']}{' tp' if row['temporal_pooling'] else ''}{f' ({options})' if options else ''}"
            controls = "; ".join(f"{label}: {v if isinstance(v, str) else f'{v:.1e}'}" for label, v in row["controls"])
            verdict = ("ok" if ok else "DIFFERS") + ("" if controls_ok else ", CONTROL NOT DETECTED")
            print(f"| {pair.name} | {model} | {row['eval']:.1e} | {row['train']:.1e} | {row['grad']:.1e} | "
                  f"{controls} | {verdict} ({time.time() - start:.0f} s) |", flush=True)
            rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(f"\n{len(rows)} pairs compared, {failures} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
