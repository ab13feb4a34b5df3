"""Models every PyTorch tool accepts (issue 24): torch's own SyncBatchNorm converter (tests/test_gpu_paths.py, every
zoo model), torch.export and torch.compile(fullgraph=True) with the same outputs (and gradients), channels_last."""

import pytest
import torch

from actionbench import build_model, list_models

DESIGNS = ["tsn_resnet18", "tsm_resnet18", "tam_resnet18", "tconv_resnet18", "nln_resnet18", "i3d_resnet18",
           "s3d_resnet18", "i3d3x1_resnet50", "tam_inception_v1", "i3d_inception_v1", "slowfast_resnet50"]


def _small(name: str):
    torch.manual_seed(0)
    options = {"base_channels": 4} if "resnet" in name and not name.startswith("slowfast") else {}
    frames = 8 if name.startswith("slowfast") else 4
    model = build_model(name, 5, frames, dropout=0.0, **options)
    size = 64 if "inception" in name or name.startswith("slowfast") else 32
    return model, torch.randn(2, 3, frames, size, size)


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_exports_with_the_same_outputs(name):
    model, x = _small(name)
    model.eval()
    with torch.no_grad():
        expected = model(x)
        exported = torch.export.export(model, (x,))
        torch.testing.assert_close(exported.module()(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", DESIGNS)
def test_one_model_per_design_compiles_whole_forward_and_backward(name):
    model, x = _small(name)
    # float64: in float32 a max pool's tie can go the other way after a last-bit difference, moving a gradient
    model, x = model.double().train(), x.double()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")  # fullgraph: a graph break is an error
    inputs = x.clone().requires_grad_(True)
    compiled(inputs).square().sum().backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    input_grad = inputs.grad.clone()
    model.zero_grad()
    torch.manual_seed(0)
    fresh, _ = _small(name)  # the same weights, BN statistics untouched by the compiled step
    fresh = fresh.double().train()
    reference = x.clone().requires_grad_(True)
    fresh(reference).square().sum().backward()
    for key, ours, theirs in [("input", input_grad, reference.grad),
                              *((k, grads[k], p.grad) for k, p in fresh.named_parameters())]:
        assert float((ours - theirs).abs().max()) <= 1e-10 * float(theirs.abs().max()) + 1e-14, key


@pytest.mark.parametrize("name", ["tsm_resnet18", "tam_resnet18", "i3d_resnet18"])
def test_channels_last_computes_the_same_function(name):
    model, x = _small(name)
    model.eval()
    with torch.no_grad():
        expected = model(x)
        fmt = torch.channels_last_3d if name.startswith("i3d") else torch.channels_last
        torch.testing.assert_close(model.to(memory_format=fmt)(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["tsm_resnet18", "tam_resnet18", "i3d_resnet18", "slowfast_resnet50"])
def test_onnx_export_run_by_onnxruntime_gives_the_same_logits(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model, x = _small(name)
    model.eval()
    program = torch.onnx.export(model, (x,), dynamo=True, input_names=["clips"], dynamic_shapes=({0: "batch"},))
    program.save(str(tmp_path / "m.onnx"))
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    other = torch.randn(3, *x.shape[1:])  # another batch size than the traced one
    with torch.no_grad():
        expected = model(other)
    got = torch.from_numpy(session.run(None, {"clips": other.numpy()})[0])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_the_compiled_kernels_are_custom_ops_torch_can_check():
    """TSM's shifted convolution and TAM's aggregation are torch.library ops under torch.compile (so inductor keeps
    the fast kernels): torch's own opcheck (schema, fake kernel, autograd registration, AOT dispatch) and gradcheck
    pass, and they equal the eager autograd functions, in the default layout and in the channels_last frames that
    compiled CPU models hand them (`layers.compiled_layout`)."""
    from actionbench.models.layers import compiled_layout
    from actionbench.models.temporal import tam, tsm

    torch.manual_seed(0)
    contiguous = torch.randn(2, 3, 8, 5, 5, dtype=torch.float64, requires_grad=True)
    channels_last = compiled_layout(contiguous.detach()).requires_grad_()
    assert channels_last.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    weight = torch.randn(4, 8, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    tam_weight = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    for x in (contiguous, channels_last):
        for conf in ([1, 1], [1, 1], [1, 1], 1, 2), ([2, 2], [1, 1], [1, 1], 1, 2):
            for b in (bias, None):
                args = (x, weight, b, *conf)
                torch.library.opcheck(torch.ops.actionbench.shift_conv2d.default, args)
                assert torch.equal(torch.ops.actionbench.shift_conv2d(*args), tsm._ShiftConvFunction.apply(*args))
            assert torch.autograd.gradcheck(lambda x, w, b, c=conf: torch.ops.actionbench.shift_conv2d(x, w, b, *c),
                                            (x, weight, bias))
        torch.library.opcheck(torch.ops.actionbench.tam_aggregate.default, (x, tam_weight))
        assert torch.autograd.gradcheck(torch.ops.actionbench.tam_aggregate, (x, tam_weight))
        eager = tam._DepthwiseAggregation.apply(x, tam_weight)
        assert torch.equal(torch.ops.actionbench.tam_aggregate(x, tam_weight), eager)
        assert torch.allclose(eager, tam._DepthwiseAggregation.apply(contiguous, tam_weight))
        # the backward ops return the strides their fake kernels promise (inductor asserts them)
        grad = torch.randn_like(eager)
        grads = torch.ops.actionbench.tam_aggregate_backward(grad, x, tam_weight, eager, [True, True])
        assert [g.stride() for g in grads] == [x.stride(), tam_weight.stride()]
        y = torch.ops.actionbench.shift_conv2d(x, weight, bias, [1, 1], [1, 1], [1, 1], 1, 2)
        grads = torch.ops.actionbench.shift_conv2d_backward(torch.randn_like(y), x, weight, True, [1, 1], [1, 1],
                                                            [1, 1], 1, 2, [True, True, True])
        assert [g.stride() for g in grads] == [x.stride(), weight.stride(), bias.stride()]
