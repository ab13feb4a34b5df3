"""`actionbench export`: a checkpoint as an ONNX file or a torch.export program, with what it needs to be used.

The exported graph is the model itself: input `clips` `(B, 3, T, H, W)` float32, normalised with the model's own
mean/std and channel order; output `logits` `(B, classes)`. The batch size is dynamic, T, H and W are the
checkpoint's test protocol (`data.frames`, `test.size`). What a user needs to feed it and read it (classes,
mean/std, channel order, frames, size, sampling, views, the whole config) travels in the file's metadata under
`actionbench.*` keys (ONNX `metadata_props`; the program's `extra_files`), so that `actionbench predict --onnx FILE`
and a user's own pipeline need nothing else. The file is written only when its logits equal the eager model's on
a seeded batch (a parity check, printed); otherwise nothing is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from actionbench import __version__
from actionbench.config import ConfigError, from_dict
from actionbench.errors import ActionbenchError, CheckpointError
from actionbench.models.weights import file_sha256

FORMATS = ("onnx", "exported-program")
EXTENSIONS = {"onnx": ".onnx", "exported-program": ".pt2"}
PARITY_TOLERANCE = 1e-4  # relative to the largest logit: float32 kernels of two runtimes, not a different function
_META_PREFIX = "actionbench."


class ExportError(ActionbenchError):
    exit_code = 4


def _needs_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ExportError(f"ONNX needs {exc.name}: pip install 'actionbench[export]' (onnx, onnxruntime, "
                          "onnxscript)") from None


def export_metadata(state: dict, model, checkpoint: Path) -> dict[str, str]:
    """What a user of the exported file needs, from the checkpoint's model and config: every value a string
    (ONNX's kind)."""
    cfg = from_dict(state["config"])
    size = cfg.test.size or cfg.data.size
    fields = {
        "version": __version__, "model": cfg.model.name, "classes": list(state["classes"]),
        "mean": list(model.mean), "std": list(model.std), "channel_order": model.channel_order,
        "input": "clips (B, 3, T, H, W) float32 in [0, 1] then (x - mean) / std per channel, channel_order "
                 "giving the input's channel order; B dynamic",
        "frames": cfg.data.frames, "size": size, "scale_size": cfg.test.scale_size or cfg.data.scale_size or size,
        "sampling": cfg.data.sampling, "stride": cfg.data.stride, "num_clips": cfg.test.num_clips,
        "num_crops": cfg.test.num_crops, "aggregate": cfg.test.aggregate,
        "checkpoint": str(checkpoint), "checkpoint_sha256": file_sha256(checkpoint), "config": state["config"],
    }
    return {_META_PREFIX + k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}


def read_metadata(fields: dict[str, str]) -> dict:
    """The `actionbench.*` metadata of an exported file, decoded (the inverse of `export_metadata`)."""
    out = {}
    for key, value in fields.items():
        if key.startswith(_META_PREFIX):
            name = key[len(_META_PREFIX):]
            out[name] = value if name in ("version", "model", "channel_order", "input", "sampling", "aggregate",
                                          "checkpoint", "checkpoint_sha256") else json.loads(value)
    return out


def _example(meta: dict, batch: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    size = json.loads(meta[_META_PREFIX + "size"])
    frames = json.loads(meta[_META_PREFIX + "frames"])
    return torch.randn(batch, 3, frames, size, size, generator=generator)


def _write_onnx(model: torch.nn.Module, example: torch.Tensor, meta: dict[str, str], path: Path) -> None:
    import logging
    import warnings

    import onnx

    # the exporter's own chatter (torchvision ops it skips, a pytree deprecation) says nothing about this model
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=["clips"], output_names=["logits"],
                                    dynamic_shapes=({0: "batch"},), verbose=False)
    program.save(str(path))
    proto = onnx.load(str(path))
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _write_program(model: torch.nn.Module, example: torch.Tensor, meta: dict[str, str], path: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path), extra_files={"actionbench.json": json.dumps(meta)})


@dataclass
class ExportedModel:
    """An exported file as a model `predict` can use: `model(clips) -> logits` (a torch tensor, CPU), with the
    preprocessing attributes a VideoModel has (`mean`, `std`, `channel_order`, `classes`) and the checkpoint's
    `config`."""

    path: Path
    metadata: dict
    runner: object

    @property
    def mean(self) -> tuple:
        return tuple(self.metadata["mean"])

    @property
    def std(self) -> tuple:
        return tuple(self.metadata["std"])

    @property
    def channel_order(self) -> str:
        return self.metadata["channel_order"]

    @property
    def classes(self) -> list[str]:
        return self.metadata["classes"]

    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        return self.runner(clips.float().contiguous())

    def eval(self) -> ExportedModel:
        return self

    def to(self, device) -> ExportedModel:
        return self


def open_exported(path: str | Path) -> ExportedModel:
    """An ONNX file (run by onnxruntime) or a torch.export program written by `actionbench export`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such exported model: {path}" + (" (a directory)" if path.is_dir() else ""))
    if path.suffix == ".onnx":
        _needs_onnx()
        import onnx
        import onnxruntime

        try:
            proto = onnx.load(str(path), load_external_data=False)
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnx's and onnxruntime's errors have no common base
            raise CheckpointError(f"cannot read {path} as an ONNX model ({str(exc).splitlines()[0][:160]})") from None
        meta = read_metadata({p.key: p.value for p in proto.metadata_props})
        name = session.get_inputs()[0].name

        def runner(clips: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {name: clips.numpy()})[0])
    else:
        extra = {"actionbench.json": ""}
        try:
            program = torch.export.load(str(path), extra_files=extra)
        except Exception as exc:
            raise CheckpointError(f"cannot read {path} as a torch.export program ({str(exc).splitlines()[0][:160]}); "
                                  "`actionbench export` writes .onnx and .pt2 files") from None
        meta = read_metadata(json.loads(extra["actionbench.json"] or "{}"))
        module = program.module()

        def runner(clips: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return module(clips)
    if "config" not in meta or "classes" not in meta:
        raise CheckpointError(f"{path} has no actionbench metadata (config, classes): export it with "
                              "`actionbench export`, or run it with your own preprocessing")
    return ExportedModel(path, meta, runner)


def parity(model: torch.nn.Module, exported: ExportedModel, example: torch.Tensor) -> float:
    """The exported file's largest logit difference from the eager model's on `example`, relative to the largest
    eager logit."""
    with torch.no_grad():
        expected = model(example).float()
    got = exported(example)
    return float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-12))


def export_checkpoint(checkpoint: str | Path, out: str | Path, fmt: str = "onnx", *, overwrite: bool = False,
                      batch: int = 2) -> dict:
    """Write `checkpoint`'s model as `out` (`fmt`: onnx | exported-program) after a parity check; returns
    `{"path", "format", "parity", "metadata"}`."""
    from actionbench.models.factory import model_from_checkpoint
    from actionbench.models.weights import load_checkpoint, resolve_checkpoint

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.suffix != EXTENSIONS[fmt]:
        raise ConfigError(f"--out {out}: a {fmt} file is named *{EXTENSIONS[fmt]} (predict tells them apart by it)")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory: name the file to write")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists: choose another --out, or --overwrite to replace it")
    if fmt == "onnx":
        _needs_onnx()
    path = resolve_checkpoint(checkpoint)
    state = load_checkpoint(path)
    model = model_from_checkpoint(state).eval()
    meta = export_metadata(state, model, path)
    example = _example(meta, batch)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial{os.getpid()}{out.suffix}")
    try:
        try:
            (_write_onnx if fmt == "onnx" else _write_program)(model, example, meta, partial)
        except ActionbenchError:
            raise
        except Exception as exc:  # the exporters raise many kinds; each is a limit of the exporter, in one line
            raise ExportError(f"{state['config']['model']['name']} did not export to {fmt}: "
                              f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}") from exc
        # another batch size than the traced one: the dynamic batch dimension is checked too
        difference = parity(model, open_exported(partial), _example(meta, batch + 1, seed=1))
        if not difference <= PARITY_TOLERANCE:
            raise ExportError(f"the exported {fmt} model's logits differ from the checkpoint's by {difference:.2e} "
                              f"(relative; allowed {PARITY_TOLERANCE:g}): not written")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return {"path": out, "format": fmt, "parity": difference, "metadata": read_metadata(meta)}


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("checkpoint", help="a run directory (its best.pt, else last.pt) or a checkpoint of actionbench")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (run by onnxruntime; needs "
                        "`pip install 'actionbench[export]'`) or exported-program (torch.export, .pt2)")
    parser.add_argument("--out", required=True, help="the file to write (.onnx or .pt2)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> int:
    result = export_checkpoint(args.checkpoint, args.out, args.format, overwrite=args.overwrite)
    meta = result["metadata"]
    print(f"wrote {result['path']} ({args.format}, {Path(result['path']).stat().st_size / 1e6:.1f} MB): "
          f"{meta['model']}, {len(meta['classes'])} classes, input (B, 3, {meta['frames']}, {meta['size']}, "
          f"{meta['size']}) normalised with mean {np.round(meta['mean'], 3).tolist()} std "
          f"{np.round(meta['std'], 3).tolist()} ({meta['channel_order']}); test protocol {meta['num_clips']} clips x "
          f"{meta['num_crops']} crops")
    print(f"parity with the checkpoint's eager logits: max difference {result['parity']:.2e} relative "
          f"(allowed {PARITY_TOLERANCE:g})")
    return 0
