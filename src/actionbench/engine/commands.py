"""`actionbench train`, `actionbench test` and `actionbench predict`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from actionbench.config import ConfigError, from_dict, load_config, update_config


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    if name == "train":
        parser.add_argument("config", nargs="?", help="YAML config (optional: defaults + overrides suffice)")
        parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=0.02 data.frames=16")
        parser.add_argument("--resume", action="store_true", help="continue from output_dir/last.pt")
    elif name == "test":
        parser.add_argument("run", help="a run directory (uses its config.yaml and best.pt) or a YAML config")
        parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. test.num_clips=2")
        parser.add_argument("--checkpoint", help="checkpoint to evaluate (default: RUN/best.pt, else last.pt)")
    else:
        parser.add_argument("videos", nargs="+", help="video files or frame folders")
        parser.add_argument("--checkpoint", required=True, help="a checkpoint written by actionbench train")
        parser.add_argument("--topk", type=int, default=5)
        parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                            help="where the model runs (default: a GPU when there is one)")
        parser.add_argument("--json", action="store_true",
                            help="print JSON instead of a table (with every class's logit, averaged over the views)")
        parser.add_argument("overrides", nargs="*", default=[], help=argparse.SUPPRESS)


def _split_config_and_overrides(config: str | None, overrides: list[str]) -> tuple[str | None, list[str]]:
    if config and "=" in config and not config.endswith((".yaml", ".yml")):
        return None, [config, *overrides]
    return config, overrides


def _checkpoint_model(state: dict):
    """The model a checkpoint holds (ours, or converted from another codebase), its weights loaded."""
    from actionbench.engine.trainer import build_run_model

    cfg = from_dict(state["config"])
    cfg.model.pretrained = cfg.model.init_from = None  # the checkpoint's own weights replace them
    model = build_run_model(cfg, len(state["classes"]))
    model.load_state_dict(state["model"])
    return model


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "test":
            return _test(args)
        return _predict(args)
    except ConfigError as exc:
        print(f"actionbench {args.command}: config error: {exc}", file=sys.stderr)
        return 2


def _train(args) -> int:
    from actionbench.engine.trainer import train

    config, overrides = _split_config_and_overrides(args.config, args.overrides)
    if args.resume:
        overrides = [*overrides, "train.resume=true"]
    results = train(load_config(config, overrides))
    print(json.dumps({k: results[k] for k in ("model", "clip_top1", "video_top1", "output_dir")}))
    return 0


def _test(args) -> int:
    from actionbench.engine.checkpoint import load_checkpoint
    from actionbench.engine.distributed import cleanup_distributed, init_distributed
    from actionbench.engine.trainer import evaluate_run, resolve_device

    run_path = Path(args.run)
    if run_path.is_dir():
        cfg = load_config(run_path / "config.yaml", args.overrides)
        default = run_path / "best.pt" if (run_path / "best.pt").is_file() else run_path / "last.pt"
    else:
        cfg = load_config(run_path, args.overrides)
        default = Path(cfg.output_dir) / "best.pt"
    state = load_checkpoint(args.checkpoint or default)
    classes = state["classes"]
    model = _checkpoint_model(state)
    protocol = state.get("preprocessing") or {}
    if protocol and cfg.test.preprocessing == "checkpoint":  # a converted checkpoint: its authors' protocol
        update_config(cfg, {k: v for k, v in protocol.items() if not k.startswith("model.")})
    device = resolve_device(cfg.device)
    info = init_distributed(device.type)
    if info.is_main:
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    try:
        results = evaluate_run(cfg, model.to(device), classes, info, device, Path(cfg.output_dir),
                               Path(cfg.output_dir) / "bad_videos.tsv")
    finally:
        cleanup_distributed()
    if info.is_main:
        out = Path(cfg.output_dir) / "test_results.json"
        out.write_text(json.dumps(results, indent=2))
        print(json.dumps(results, indent=2))
    return 0


def _predict(args) -> int:
    import torch

    from actionbench.data.annotations import VideoRecord
    from actionbench.data.dataset import VideoClipDataset
    from actionbench.engine.checkpoint import load_checkpoint
    from actionbench.engine.evaluation import to_model_input
    from actionbench.engine.trainer import resolve_device

    state = load_checkpoint(args.checkpoint)
    cfg = from_dict(state["config"])
    classes = state["classes"]
    device = resolve_device(args.device)
    model = _checkpoint_model(state).eval().to(device)
    records = [VideoRecord(str(Path(v).resolve()), -2, Path(v).stem) for v in args.videos]
    dataset = VideoClipDataset(records, num_frames=cfg.data.frames, sampling=cfg.data.sampling,
                               stride=cfg.data.stride, mode="test", num_clips=cfg.test.num_clips,
                               num_crops=cfg.test.num_crops, size=cfg.data.size,
                               scale_size=cfg.test.scale_size or cfg.data.scale_size or cfg.data.size,
                               mean=model.mean, std=model.std, normalize=False)
    per_video: dict[int, list] = {}
    bad: set[int] = set()
    with torch.no_grad():
        for i in range(len(dataset)):
            clip, label, video, _ = dataset[i]
            if label == -1:
                bad.add(video)
                continue
            clips = to_model_input(clip.unsqueeze(0), model, device)  # the model's mean, std, channel order
            per_video.setdefault(video, []).append(model(clips)[0].float().cpu())
    output = []
    for video, path in enumerate(args.videos):
        if video in bad:
            reason = dataset.bad_video_summary().get(str(Path(path).resolve()), "unreadable")
            output.append({"video": path, "error": reason})
            continue
        views = torch.stack(per_video[video])
        probs = (views.softmax(-1) if cfg.test.aggregate == "softmax" else views.mean(0).softmax(-1).unsqueeze(0))
        probs = probs.mean(0)
        top = probs.topk(min(args.topk, len(classes)))
        output.append({"video": path, "predictions": [{"label": classes[i], "score": float(s)}
                                                      for s, i in zip(top.values, top.indices, strict=True)],
                       "logits": views.mean(0).tolist()})  # every class, averaged over the views (JSON only)
    if args.json:
        print(json.dumps(output, indent=2))
    else:
        for item in output:
            if "error" in item:
                print(f"{item['video']}: cannot read ({item['error']})")
                continue
            best = ", ".join(f"{p['label']} {p['score']:.3f}" for p in item["predictions"])
            print(f"{item['video']}: {best}")
    return 1 if bad else 0
