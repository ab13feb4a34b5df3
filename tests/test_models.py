"""Model zoo: shapes of every model, the paper's cost figures, temporal modules against direct loops."""

import pytest
import torch

from actionbench import build_model, list_models
from actionbench.models import native
from actionbench.models.layers import compiled_layout
from actionbench.models.temporal import NonLocalBlock, ShiftConv2d, TemporalAggregation, TemporalShift, tam
from actionbench.models.temporal.tsm import _ShiftConvFunction
from actionbench.profiling.flops import count_flops
from actionbench.profiling.params import count_params


def _small_model(name: str, temporal_pooling: bool):
    options = {"base_channels": 8} if "resnet" in name and not name.startswith("slowfast") else {}
    return build_model(name, num_classes=5, num_frames=8, temporal_pooling=temporal_pooling, **options)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("temporal_pooling", [False, True])
def test_every_model_maps_clips_to_logits(name, temporal_pooling):
    if name.startswith("slowfast") and temporal_pooling:
        with pytest.raises(ValueError, match="temporal pooling"):
            _small_model(name, temporal_pooling)
        return
    torch.manual_seed(0)
    model = _small_model(name, temporal_pooling)
    size = 64 if "inception" in name else 32
    frames = 32 if name.startswith("slowfast") else 8
    logits = model(torch.randn(2, 3, frames, size, size))
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()
    assert len(model.mean) == len(model.std) == 3
    assert model.fc.out_features == 5


def test_normalisation_per_family():
    assert build_model("tsn_inception_v1", 3, 8).mean == (0.5, 0.5, 0.5)
    assert build_model("tsn_resnet18", 3, 8).mean == (0.485, 0.456, 0.406)


# (model, frames, size, temporal pooling) -> (conv multiply-adds, params), 87 classes: the paper's Table 3, the
# supplementary's Table 1 and the counts read from the paper's code (shared/reference/paper-code-facts.md).
PAPER_COUNTS = {
    ("tsn_inception_v1", 8, 224, False): (11_978_817_536, 5_689_079),
    ("i3d_inception_v1", 8, 224, False): (33_573_614_592, 12_376_439),
    ("tconv_inception_v1", 8, 224, False): (32_177_266_688, 17_206_775),
    ("tam_inception_v1", 8, 224, False): (12_047_006_720, 5_706_503),
    ("tsn_resnet50", 8, 224, False): (32_697_090_048, 23_686_295),
    ("i3d_resnet50", 8, 224, False): (64_180_322_304, 46_339_607),
    ("tconv_resnet50", 8, 224, False): (106_992_893_952, 71_474_327),
    ("tam_resnet50", 8, 224, False): (32_831_963_136, 23_725_655),
    ("tsm_resnet50", 8, 224, False): (32_697_090_048, 23_686_295),
    ("nln_resnet50", 8, 224, False): (None, 31_044_759),
    ("tsn_resnet50", 8, 224, True): (14_135_984_128, None),
    ("tam_resnet50", 8, 224, True): (14_213_054_464, None),
    ("i3d_resnet50", 8, 224, True): (29_460_135_936, None),
    ("s3d_resnet50", 8, 224, True): (19_672_203_264, None),
    ("tsn_inception_v1", 8, 224, True): (6_521_725_952, None),
    ("i3d_inception_v1", 8, 224, True): (21_411_353_600, None),
    ("s3d_inception_v1", 8, 224, True): (12_264_670_208, None),
}


@pytest.mark.parametrize("key", list(PAPER_COUNTS), ids=lambda k: f"{k[0]}-f{k[1]}-{k[2]}-tp{int(k[3])}")
def test_costs_match_the_paper(key):
    name, frames, size, pooling = key
    macs, params = PAPER_COUNTS[key]
    model = build_model(name, 87, frames, temporal_pooling=pooling)
    if params is not None:
        assert count_params(model) == params
    if macs is not None:
        assert count_flops(model, (1, 3, frames, size, size)).paper_macs == macs


def test_table3_rounded_and_nln_total():
    def gflops(name):
        return round(count_flops(build_model(name, 87, 8), (1, 3, 8, 224, 224)).paper_gflops, 1)

    assert [gflops(n) for n in ("tsn_inception_v1", "i3d_inception_v1", "tconv_inception_v1", "tam_inception_v1")] \
        == [12.0, 33.6, 32.2, 12.0]
    nln = count_flops(build_model("nln_resnet50", 87, 8), (1, 3, 8, 224, 224))
    assert 2 * nln.gmacs == pytest.approx(196, rel=0.02)  # every multiply-add, matmuls included, as 2 FLOPs


def test_table1_costs_at_32_frames_256():
    def gflops(name, frames=32, pooling=False):
        return count_flops(build_model(name, 400, frames, temporal_pooling=pooling), (1, 3, frames, 256, 256))

    assert round(gflops("tsn_resnet50", pooling=True).paper_gflops, 1) == 73.9
    assert round(gflops("tam_resnet50").paper_gflops, 1) == 171.5
    assert round(gflops("i3d_resnet50").paper_gflops, 1) == 335.3
    assert gflops("slowfast_resnet50").paper_gflops == pytest.approx(65.7, rel=0.03)


def _shift_loop(x, fold_div=8):
    n, t, c = x.shape[:3]
    fold = c // fold_div
    out = torch.zeros_like(x)
    for b in range(n):
        for i in range(t):
            for ch in range(c):
                if ch < fold:  # the TSM authors' direction: the first fold comes from the next frame
                    out[b, i, ch] = x[b, i + 1, ch] if i < t - 1 else 0
                elif ch < 2 * fold:
                    out[b, i, ch] = x[b, i - 1, ch] if i > 0 else 0
                else:
                    out[b, i, ch] = x[b, i, ch]
    return out


def test_tsm_shift_matches_a_direct_loop():
    x = torch.randn(2, 5, 16, 3, 3)
    torch.testing.assert_close(TemporalShift()(x), _shift_loop(x))


def _aggregate_loop(x, weights):
    """weights[k](frame) for k = prev, cur, next; zero outside the clip; ReLU."""
    n, t = x.shape[:2]
    out = torch.zeros_like(x)
    for b in range(n):
        for i in range(t):
            acc = weights[1](x[b, i])
            if i > 0:
                acc = acc + weights[0](x[b, i - 1])
            if i < t - 1:
                acc = acc + weights[2](x[b, i + 1])
            out[b, i] = acc.clamp(min=0)
    return out


def test_tam_aggregation_matches_a_direct_loop():
    torch.manual_seed(0)
    tam = TemporalAggregation(6)
    with torch.no_grad():
        tam.weight.normal_()
    x = torch.randn(2, 4, 6, 3, 3)
    per_channel = [lambda f, k=k: f * tam.weight[:, k].view(-1, 1, 1) for k in range(3)]
    torch.testing.assert_close(tam(x), _aggregate_loop(x, per_channel))


def test_conv_aggregation_matches_a_direct_loop():
    torch.manual_seed(0)
    tconv = TemporalAggregation(6, full=True)
    with torch.no_grad():
        tconv.conv.weight.normal_()
    x = torch.randn(2, 4, 6, 3, 3)
    w = tconv.conv.weight[:, :, 0, 0].view(3, 6, 6)  # [prev, cur, next] x (out, in)
    full = [lambda f, k=k: torch.einsum("oi,ihw->ohw", w[k], f) for k in range(3)]
    torch.testing.assert_close(tconv(x), _aggregate_loop(x, full), rtol=1e-4, atol=1e-5)


def test_tam_counts_as_depthwise_convolutions():
    macs = count_flops(TemporalAggregation(4), (1, 8, 4, 5, 5)).paper_macs
    assert macs == 3 * 8 * 4 * 5 * 5


def test_nonlocal_block_matches_softmax_attention_loop():
    torch.manual_seed(0)
    block = NonLocalBlock(4).eval()
    with torch.no_grad():
        block.bn.weight.fill_(1.0)
    x = torch.randn(1, 2, 4, 2, 3)
    positions = [(t, h, w) for t in range(2) for h in range(2) for w in range(3)]

    def embed(conv, t, h, w):
        return conv.weight[:, :, 0, 0] @ x[0, t, :, h, w] + conv.bias

    expected = torch.empty_like(x)
    for t, h, w in positions:
        q = embed(block.theta, t, h, w)
        scores = torch.stack([q @ embed(block.phi, *p) for p in positions]).softmax(0)
        y = sum(s * embed(block.g, *p) for s, p in zip(scores, positions, strict=True))
        z = block.w.weight[:, :, 0, 0] @ y + block.w.bias
        expected[0, t, :, h, w] = x[0, t, :, h, w] + block.bn(z.view(1, 1, -1, 1, 1)).view(-1)
    torch.testing.assert_close(block(x), expected, rtol=1e-4, atol=1e-5)


def test_nln_keeps_torchvision_block_indices():
    nln_keys = set(build_model("nln_resnet50", 10, 8).state_dict())
    tsn_keys = set(build_model("tsn_resnet50", 10, 8).state_dict())
    assert {k for k in nln_keys if "nonlocal_block" not in k} == tsn_keys
    assert {k.split(".nonlocal_block")[0] for k in nln_keys - tsn_keys} == {
        "layer2.1", "layer2.3", "layer3.1", "layer3.3", "layer3.5"}


def test_unknown_model_names_a_close_one():
    with pytest.raises(ValueError, match="tam_resnet50"):
        build_model("tam_resnet05", 10, 8)


def test_tsm_and_tam_gradients_are_exact():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 16, 2, 2, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(TemporalShift(), (x,))
    weight = torch.randn(16, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: TemporalAggregation.function(x, w), (x, weight))
    # channels_last activations take their own weight-gradient path (per frame, no batched matmul over channels)
    x_last = x.detach().flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (2, 4))
    assert x_last.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(lambda x, w: TemporalAggregation.function(x, w), (x_last.requires_grad_(), weight))
    grads = []
    for v in (x, x_last):
        weight.grad = None
        (TemporalAggregation.function(v, weight) * torch.arange(v.numel()).reshape(v.shape).cos()).sum().backward()
        grads.append(weight.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-12, atol=1e-12)


def _tam_torch_ops(x, weight, grad):
    """TAM's forward and gradients from the tiled torch ops (the path without a C compiler)."""
    out = tam._aggregate(x, weight, relu=True)
    g = torch.ops.aten.threshold_backward(grad, out, 0)
    return out, tam._aggregate(g, weight.flip(1), relu=False), tam._weight_grad(g, x).to(weight.dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tam_c_kernels_compute_what_the_torch_ops_compute(dtype):
    """The fused C kernels (built here with the machine's compiler: CI has one) in both frame layouts, at the
    clip's ends (T=1, 2), for every gradient mask, and with the same weight gradient on any number of threads."""
    assert tam._c_kernel("tam_forward", dtype) is not None, "the C kernels did not build (see the log)"
    torch.manual_seed(0)
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    for shape in [(2, 4, 16, 6, 6), (3, 1, 5, 2, 3), (2, 2, 64, 7, 7), (1, 3, 3, 1, 1)]:
        for channels_last in (False, True):
            x = torch.randn(*shape, dtype=dtype)
            x = compiled_layout(x) if channels_last else x
            weight, grad = torch.randn(shape[2], 3, dtype=dtype), torch.randn(shape, dtype=dtype)
            out, grad_x, grad_w = _tam_torch_ops(x, weight, grad)
            fused_out = tam._aggregate_relu(x, weight)
            assert fused_out.stride() == x.stride()
            torch.testing.assert_close(fused_out, out, **tol)
            fused_x, fused_w = tam._fused_backward(grad, x, weight, fused_out, (True, True))
            torch.testing.assert_close(fused_x, grad_x, **tol)
            torch.testing.assert_close(fused_w, grad_w, **tol)
            assert tam._fused_backward(grad, x, weight, fused_out, (True, False))[1] is None
            assert torch.equal(tam._fused_backward(grad, x, weight, fused_out, (False, True))[1], fused_w)
            threads = torch.get_num_threads()
            try:
                torch.set_num_threads(1)
                assert torch.equal(tam._fused_backward(grad, x, weight, fused_out, (True, True))[1], fused_w)
            finally:
                torch.set_num_threads(threads)


@pytest.fixture
def fresh_kernel_build(tmp_path, monkeypatch):
    """native.load as in a new process, with its build cache in tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    native.load.cache_clear()
    yield tmp_path / "actionbench" / "kernels"
    native.load.cache_clear()


def test_the_c_kernels_are_built_once_and_cached(fresh_kernel_build):
    lib = native.load("temporal/tam_kernels.c")
    assert lib is not None
    built = list(fresh_kernel_build.glob("tam_kernels-*.so"))
    assert len(built) == 1 and [p.name for p in fresh_kernel_build.iterdir()] == [built[0].name]  # no partial file
    stamp = built[0].stat().st_mtime_ns
    native.load.cache_clear()
    assert native.load("temporal/tam_kernels.c") is not None and built[0].stat().st_mtime_ns == stamp


def test_without_a_c_compiler_tam_runs_on_torch_ops_with_one_warning(fresh_kernel_build, monkeypatch, caplog):
    monkeypatch.setenv("CC", str(fresh_kernel_build / "no-such-cc"))
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 3, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    with caplog.at_level("WARNING", logger="actionbench.models.native"):
        out = TemporalAggregation.function(x, weight)
        out.sum().backward()
        TemporalAggregation.function(x, weight)
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["C kernels temporal/tam_kernels.c unavailable"]
    assert "install a c compiler" in caplog.records[0].getMessage().lower()
    grads = x.grad.clone(), weight.grad.clone()
    monkeypatch.delenv("CC")
    native.load.cache_clear()
    x.grad = weight.grad = None
    torch.testing.assert_close(TemporalAggregation.function(x, weight), out, rtol=1e-12, atol=1e-12)
    TemporalAggregation.function(x, weight).sum().backward()
    torch.testing.assert_close((x.grad, weight.grad), grads, rtol=1e-12, atol=1e-12)
    monkeypatch.setenv("ACTIONBENCH_NATIVE", "0")
    native.load.cache_clear()
    assert tam._c_kernel("tam_forward", torch.float32) is None


def test_tsm_resnet101_shifts_every_other_block_as_the_tsm_code():
    model = build_model("tsm_resnet101", 5, 8, base_channels=8)
    shifted = [f"{name}.{i}" for name in ("layer1", "layer3") for i, block in enumerate(getattr(model, name))
               if isinstance(block.conv1, ShiftConv2d)]
    assert shifted[:2] == ["layer1.0", "layer1.2"] and len(shifted) == 2 + 12
    assert all(isinstance(b.conv1, ShiftConv2d) for b in build_model("tsm_resnet50", 5, 8).layer3)


def test_slowfast_table1_figures_and_slow_frame_rules():
    model = build_model("slowfast_resnet50", 400, 32)
    counts = count_flops(model, (1, 3, 32, 256, 256))
    assert round(counts.paper_gflops, 1) == 65.7 and round(count_params(model) / 1e6, 2) == 34.57
    assert model.laterals[0].conv.kernel_size == (7, 1, 1)
    x = torch.arange(32.0).view(1, 1, 32, 1, 1)
    assert model.slow_pathway_input(x).flatten().tolist() == list(range(0, 32, 4))
    linspace = build_model("slowfast_resnet50", 400, 32, slow_frames="linspace")
    assert linspace.slow_pathway_input(x).flatten().tolist() == [0, 4, 8, 13, 17, 22, 26, 31]


def test_nonlocal_variants_subsample_and_scale():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 4, 4, 6)
    plain = NonLocalBlock(4).eval()
    with torch.no_grad():
        plain.bn.weight.fill_(1.0)
    after = NonLocalBlock(4, subsample="after").eval()
    before = NonLocalBlock(4, subsample="before", scale=True).eval()
    after.load_state_dict(plain.state_dict())
    before.load_state_dict(plain.state_dict())
    outs = [m(x) for m in (plain, after, before)]
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[1], outs[2])
    # max pooling after a 1x1 conv is not pooling before it, and the scale changes the softmax: three functions
    with pytest.raises(ValueError, match="subsample"):
        NonLocalBlock(4, subsample="sometimes")


def test_nonlocal_placements():
    def positions(**options):
        model = build_model("nln_resnet50", 5, 8, base_channels=8, **options)
        return [f"{n}.{i}" for n in ("layer2", "layer3") for i, b in enumerate(getattr(model, n))
                if b.nonlocal_block is not None]

    assert positions() == ["layer2.1", "layer2.3", "layer3.1", "layer3.3", "layer3.5"]
    assert positions(nonlocal_at="even") == ["layer2.0", "layer2.2", "layer3.0", "layer3.2", "layer3.4"]
    assert positions() == positions(nonlocal_blocks=True)
    tsm_nl = build_model("tsm_resnet50", 5, 8, base_channels=8, nonlocal_blocks=True, nonlocal_at="even")
    assert tsm_nl.layer2[0].nonlocal_block is not None and isinstance(tsm_nl.layer2[0].conv1, ShiftConv2d)
    with pytest.raises(ValueError, match="nonlocal_"):
        build_model("tsm_resnet50", 5, 8, nonlocal_at="even")


@pytest.mark.parametrize(("style", "frames_out"), [("paper", 1), ("tsm", 4), ("c2d", 4)])
def test_temporal_pool_styles(style, frames_out):
    model = build_model("tsn_resnet18", 5, 8, temporal_pooling=True, base_channels=8, pool_style=style)
    assert model.eval().forward_features(torch.randn(1, 3, 8, 32, 32)).shape[1] == frames_out


def test_i3d3x1_is_the_non_local_papers_i3d():
    model = build_model("i3d3x1_resnet50", 400, 8, temporal_pooling=True, pool_style="c2d")
    kernels = [[block.conv1.kernel_size[0] for block in getattr(model, f"layer{i}")] for i in range(1, 5)]
    assert kernels == [[3, 3, 3], [3, 1, 3, 1], [3, 1, 3, 1, 3, 1], [1, 3, 1]]
    assert model.conv1.kernel_size == (5, 7, 7) and model.layer1[0].conv2.kernel_size == (1, 3, 3)
    assert round(count_params(model) / 1e6, 2) == 28.04  # PySlowFast / PyTorchVideo I3D-R50: 28.0 M
    mm = build_model("i3d3x1_resnet50", 400, 32, temporal_pooling=True, pool_style="tsm", stem_temporal_stride=2)
    assert mm.eval().forward_features(torch.randn(1, 3, 32, 32, 32)).shape[1] == 4


def test_3d_inception_pools_as_the_papers_code():
    i3d = build_model("i3d_inception_v1", 5, 8)
    assert (i3d.maxpool1.padding, i3d.maxpool1.ceil_mode) == ((0, 1, 1), False)
    assert i3d.eval().forward_features(torch.randn(1, 3, 8, 64, 64)).shape[1] == 7  # the paper's last pool: kernel 2
    public = build_model("i3d_inception_v1", 5, 8, last_time_pool=3)
    assert public.eval().forward_features(torch.randn(1, 3, 8, 64, 64)).shape[1] == 8
    assert round(count_flops(build_model("i3d_inception_v1", 87, 8, last_time_pool=3),
                             (1, 3, 8, 224, 224)).paper_gflops, 1) == 33.8
    with pytest.raises(ValueError, match="last_time_pool"):
        build_model("s3d_inception_v1", 5, 8, last_time_pool=3)


@pytest.mark.parametrize("kernel", [1, 3])
def test_fused_shift_conv_is_conv_of_the_shift(kernel):
    torch.manual_seed(0)
    fused = ShiftConv2d(16, 6, kernel, padding=kernel // 2, bias=True).double()
    x = torch.randn(2, 5, 16, 4, 4, dtype=torch.double, requires_grad=True)
    before = x.detach().clone()
    plain = torch.nn.Conv2d(16, 6, kernel, padding=kernel // 2).double()
    plain.load_state_dict(fused.state_dict())
    reference = plain(TemporalShift()(x).flatten(0, 1)).view(2, 5, 6, 4, 4)
    torch.testing.assert_close(fused(x), reference)
    assert torch.equal(x.detach(), before)  # the input is shifted back
    assert torch.autograd.gradcheck(lambda x, w, b: _ShiftConvFunction.apply(
        x, w, b, (1, 1), (kernel // 2, kernel // 2), (1, 1), 1, 2), (x, fused.weight, fused.bias))
