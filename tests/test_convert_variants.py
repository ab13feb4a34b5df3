"""Converted checkpoints are right or refused (issue 20): each case that converted silently wrong, each flag that
contradicts the file, and each file torch.load cannot read, as `actionbench convert` meets them."""

import json
import zipfile

import numpy as np
import pytest
import torch

from actionbench.cli import main
from tests.reference_golden import draw_state, golden_files, load_golden, wrap

GOLDEN = {p.name.removesuffix(".json.gz"): p for p in golden_files()}


def _reference(name: str, folder, *, file_name: str | None = None, meta: dict | None = None, prefix: str = "",
               legacy: bool = False, extra: dict | None = None):
    """A golden reference model's checkpoint, saved the way its codebase saves it (optionally changed)."""
    golden = load_golden(GOLDEN[name])
    wrapper = json.loads(json.dumps(golden["wrapper"]))
    if meta is not None:
        wrapper["extra"]["meta"] = meta
    wrapper["prefix"] = prefix + wrapper.get("prefix", "")
    saved = {**wrap(draw_state(golden["keys"], golden["seed"], golden.get("scale")), wrapper), **(extra or {})}
    path = folder / (file_name or golden["file_name"])
    torch.save(saved, path, _use_new_zipfile_serialization=not legacy)
    return path


def _refused(capsys, args: list[str], *fragments: str) -> str:
    code = main(["convert", *args])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "Traceback" not in err and len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_a_non_local_mode_the_file_does_not_say_is_asked_for(tmp_path, capsys):
    source = _reference("mmaction2__tsm_resnet50-nl", tmp_path, meta={"epoch": 50})  # no cfg, a neutral name
    _refused(capsys, [str(source), "--out", str(tmp_path / "a.pt")], "does not say nonlocal_mode",
             "--option nonlocal_mode=")
    assert main(["convert", str(source), "--out", str(tmp_path / "b.pt"), "--option", "nonlocal_mode=dot_product"]) == 0
    dot = _reference("mmaction2__tsm_resnet50-nl", tmp_path, file_name="tsm_nl_dot-product_r50.pth",
                     meta={"epoch": 50, "cfg": "non_local_cfg=dict(sub_sample=True, mode='embedded_gaussian')"})
    _refused(capsys, [str(dot), "--out", str(tmp_path / "c.pt")], "dot_product by its file name",
             "embedded_gaussian by its meta['cfg']")


def test_flags_that_contradict_the_file_are_refused_unless_forced(tmp_path, capsys):
    tsm = _reference("tsm__tsm_resnet50", tmp_path)
    _refused(capsys, [str(tsm), "--out", str(tmp_path / "a.pt"), "--model", "tsn_resnet50"],
             "--model: the file says 'tsm_resnet50', you asked 'tsn_resnet50'", "--force")
    assert main(["convert", str(tsm), "--out", str(tmp_path / "b.pt"), "--model", "tsn_resnet50", "--force"]) == 0
    tam = _reference("official__tam_resnet18-tp", tmp_path)
    assert main(["convert", str(tam), "--out", str(tmp_path / "c.pt"), "--temporal-pooling"]) == 0  # it says so
    tsn = _reference("official__tsn_resnet18", tmp_path)  # its arch has no -ts: no temporal pooling
    _refused(capsys, [str(tsn), "--out", str(tmp_path / "d.pt"), "--temporal-pooling"],
             "--temporal-pooling: the file says False, you asked True")


@pytest.mark.parametrize("file_name, fragment", [
    ("TSM_kinetics_RGB_resnet50_shift8_block_avg_segment8_e50.pth", "shift_place=block"),
    ("TSM_kinetics_RGB_resnet50_shift4_blockres_avg_segment8_e50.pth", "shift_div=4"),
])
def test_tsm_variants_we_cannot_express_are_refused_by_name(file_name, fragment, tmp_path, capsys):
    source = _reference("tsm__tsm_resnet50", tmp_path, file_name=file_name)
    _refused(capsys, [str(source), "--out", str(tmp_path / "a.pt")], fragment, "not convertible")


def test_wrong_from_says_what_the_file_looks_like(tmp_path, capsys):
    source = _reference("pyslowfast__I3D_8x8_R50", tmp_path)
    _refused(capsys, [str(source), "--out", str(tmp_path / "a.pt"), "--from", "pytorchvideo"],
             "not a pytorchvideo checkpoint", "looks like a pyslowfast checkpoint")


def test_pyslowfast_keys_with_a_ddp_prefix_convert(tmp_path):
    plain, ddp = (_reference("pyslowfast__I3D_8x8_R50", tmp_path / d, prefix=p) for d, p in
                  (("plain", ""), ("ddp", "module.")) if (tmp_path / d).mkdir() is None)
    for source, out in ((plain, tmp_path / "plain.pt"), (ddp, tmp_path / "ddp.pt")):
        assert main(["convert", str(source), "--out", str(out)]) == 0
    a, b = (torch.load(p, weights_only=True)["model"] for p in (tmp_path / "plain.pt", tmp_path / "ddp.pt"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_legacy_file_with_numpy_values_converts(tmp_path):
    source = _reference("tsm__tsm_resnet50", tmp_path, legacy=True,
                        extra={"best_prec1": np.float64(71.2), "epoch": np.int64(50)})
    assert not zipfile.is_zipfile(source)
    assert main(["convert", str(source), "--out", str(tmp_path / "a.pt")]) == 0


def test_files_that_are_not_checkpoints_are_one_line(tmp_path, capsys):
    good = _reference("tsm__tsm_resnet50", tmp_path)
    legacy = _reference("tsm__tsm_resnet50", tmp_path, file_name="legacy.pth", legacy=True)
    cases = {
        "page.pth": (b"<!DOCTYPE html><html><body>Access denied</body></html>", "HTML"),
        "array.npy": (None, "NumPy"),
        "cut.pth": (good.read_bytes()[: len(good.read_bytes()) // 2], "truncated"),
        "cut_legacy.pth": (legacy.read_bytes()[: len(legacy.read_bytes()) // 2], "truncated"),
        "empty.pth": (b"", "empty"),
        "text.pth": (b"hello, world\n", "not a PyTorch file"),
    }
    for name, (content, fragment) in cases.items():
        path = tmp_path / name
        if content is None:
            np.save(path, np.zeros(3))
        else:
            path.write_bytes(content)
        _refused(capsys, [str(path), "--out", str(tmp_path / f"{name}.pt")], fragment)
    scripted = tmp_path / "scripted.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(scripted))
    _refused(capsys, [str(scripted), "--out", str(tmp_path / "s.pt")], "TorchScript", "torch.jit.load")
    _refused(capsys, [str(tmp_path), "--out", str(tmp_path / "d.pt")], "is a folder")


_MMACTION2_TSM_CFG = """model = dict(type='Recognizer2D', backbone=dict(type='ResNetTSM', depth=50))
test_pipeline = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=16, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='TenCrop', crop_size=224),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs'),
]
"""
_MMACTION2_I3D_CFG = """test_pipeline = [
    dict(type='SampleFrames', clip_len=32, frame_interval=2, num_clips=10, test_mode=True),
    dict(type='Resize', scale=(-1, 256)), dict(type='ThreeCrop', crop_size=256),
]"""


def _protocol(capsys, args) -> dict:
    assert main(["convert", *args]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "its protocol" in x)
    return dict(p.split("=", 1) for p in line.split(": ", 1)[1].split(", "))


def test_the_authors_test_protocol_comes_from_the_file(tmp_path, capsys):
    # MMAction2: the test_pipeline of meta['cfg'] (16 segments, short side 256, TenCrop at 224)
    tsm = _reference("mmaction2__tsn_resnet18", tmp_path, file_name="m.pth", meta={"cfg": _MMACTION2_TSM_CFG})
    said = _protocol(capsys, [str(tsm), "--out", str(tmp_path / "a.pt")])
    assert said["data.frames"] == "16" and said["test.num_crops"] == "10" and said["test.size"] == "224"
    assert said["test.scale_size"] == "256" and said["data.sampling"] == "uniform"
    state = torch.load(tmp_path / "a.pt", weights_only=True)
    assert state["config"]["data"]["frames"] == 16 and state["config"]["test"]["num_crops"] == 10
    i3d = _reference("mmaction2__i3d_resnet50-32f", tmp_path, file_name="i.pth", meta={"cfg": _MMACTION2_I3D_CFG})
    said = _protocol(capsys, [str(i3d), "--out", str(tmp_path / "b.pt")])
    assert (said["data.frames"], said["data.stride"], said["test.num_clips"], said["test.size"]) == (
        "32", "2", "10", "256")
    # a pipeline step we cannot reproduce is refused by name
    squash = _reference("mmaction2__tsn_resnet18", tmp_path, file_name="s.pth",
                        meta={"cfg": "test_pipeline = [dict(type='Resize', scale=(224, 224), keep_ratio=False)]"})
    _refused(capsys, [str(squash), "--out", str(tmp_path / "c.pt")], "resizes to (224, 224)", "test.scale_size")
    # the TSM repo: dense files are tested with 10 clips x 3 full-resolution crops
    dense = _reference("tsm__tsm_resnet50", tmp_path, file_name="TSM_kinetics_RGB_resnet50_shift8_blockres_avg_"
                                                                "segment8_e100_dense.pth")
    said = _protocol(capsys, [str(dense), "--out", str(tmp_path / "d.pt")])
    assert (said["data.sampling"], said["test.num_clips"], said["test.num_crops"], said["test.size"]) == (
        "dense", "10", "3", "256")
