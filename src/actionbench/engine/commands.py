"""`actionbench train`, `actionbench test` and `actionbench predict`."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

from actionbench.config import (
    ConfigError,
    absolute_paths,
    apply_overrides,
    flat,
    from_dict,
    load_config,
    split_overrides,
    to_dict,
    update_config,
)
from actionbench.errors import DataError

log = logging.getLogger(__name__)
_EVALUATION_KEYS = ("data.val_list", "data.test_list", "data.root", "data.frames", "data.sampling", "data.stride",
                    "data.size", "data.scale_size", "test.num_clips", "test.num_crops", "test.aggregate",
                    "test.scale_size", "test.size")


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    if name == "train":
        parser.add_argument("config", nargs="?",
                            help="YAML config, or a run directory (its config.yaml; the run continues in place)")
        parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=0.02 data.frames=16")
        parser.add_argument("--resume", action="store_true", help="continue the run in output_dir from its last.pt")
        parser.add_argument("--resume-if-any", action="store_true",
                            help="continue the run if output_dir has a last.pt, else start it (study commands)")
        parser.add_argument("--overwrite", action="store_true",
                            help="delete the run already in output_dir and start again")
    elif name == "test":
        parser.add_argument("run", help="a run directory (its config.yaml and best.pt), or a YAML config")
        parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. test.num_clips=2")
        parser.add_argument("--checkpoint", help="checkpoint to evaluate (default: RUN/best.pt, else last.pt); "
                                                 "ours, or one converted with actionbench convert")
    else:
        parser.add_argument("videos", nargs="+", help="video files or frame folders (and key=value overrides of "
                                                      "the checkpoint's test protocol, e.g. test.num_clips=1)")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--checkpoint", help="a checkpoint (or run directory) of actionbench")
        source.add_argument("--onnx", metavar="FILE", help="a model written by `actionbench export` (.onnx, run by "
                                                           "onnxruntime; or .pt2): its metadata gives the protocol")
        parser.add_argument("--topk", type=int, default=5, help="labels shown per video (default 5)")
        parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                            help="where the model runs (default: a GPU when there is one)")
        parser.add_argument("--json", action="store_true",
                            help="print JSON instead of a table (with every class's logit, averaged over the views)")


def run(args: argparse.Namespace) -> int:
    if args.command == "train":
        return _train(args)
    if args.command == "test":
        return _test(args)
    return _predict(args)


def _train(args) -> int:
    from actionbench.engine.trainer import train

    split_overrides(args, ("config",))
    config, overrides = args.config, args.overrides
    if config and Path(config).is_dir():  # a run directory: its config, in place
        if not (Path(config) / "config.yaml").is_file():
            raise ConfigError(f"{config} is a directory without config.yaml: give a YAML config or a run directory")
        overrides = [*overrides, f"output_dir={Path(config).resolve()}"]
        config = str(Path(config) / "config.yaml")
    if args.resume and args.resume_if_any:
        raise ConfigError("give --resume or --resume-if-any, not both")
    resume = "auto" if args.resume_if_any else (True if args.resume else None)  # None: train.resume decides
    results = train(load_config(config, overrides), resume=resume, overwrite=args.overwrite)
    summary = {k: results[k] for k in ("model", "clip_top1", "video_top1", "output_dir")}
    summary["videos_tested"] = f"{results['video_videos']} of {results['video_videos_listed']}"
    print(json.dumps(summary))
    return 0


def _test(args) -> int:
    from actionbench.engine.assembly import resolve_device, resolve_threads, run_outputs
    from actionbench.engine.distributed import cleanup_distributed, init_distributed
    from actionbench.engine.evaluation import EvaluationStopped, evaluate_run
    from actionbench.engine.stopping import StopSignals
    from actionbench.errors import Interrupted
    from actionbench.models.factory import model_from_checkpoint
    from actionbench.models.weights import file_sha256, load_checkpoint, resolve_checkpoint

    split_overrides(args, ("run",))
    run_path = Path(args.run)
    if not run_path.exists():
        raise DataError(f"{run_path} does not exist: give a run directory (or a YAML config with --checkpoint)")
    if run_path.is_dir():
        if not (run_path / "config.yaml").is_file():
            raise ConfigError(f"{run_path} is not a run directory (no config.yaml)")
        cfg = load_config(run_path / "config.yaml", args.overrides)
        out_dir = run_path.resolve()  # this directory, wherever its config says it was
        checkpoint = resolve_checkpoint(args.checkpoint or run_path)
    else:
        cfg = load_config(run_path, args.overrides)
        if not args.checkpoint:
            raise ConfigError(f"{run_path} is a config, not a run directory: add --checkpoint CKPT")
        checkpoint = resolve_checkpoint(args.checkpoint)
        out_dir = Path(cfg.output_dir or checkpoint.parent).resolve()
    absolute_paths(cfg)
    state = load_checkpoint(checkpoint)
    classes = state["classes"]
    model = model_from_checkpoint(state)
    protocol = state.get("preprocessing") or {}
    if protocol and cfg.test.preprocessing == "checkpoint":  # a converted checkpoint: its authors' protocol
        update_config(cfg, {k: v for k, v in protocol.items() if not k.startswith("model.")})
    if not cfg.data.val_list:
        raise ConfigError("data.val_list is not set: give the annotations to evaluate on (data.val_list=...)")
    test_list, chosen_on = cfg.data.test_list or cfg.data.val_list, state["config"]["data"]["val_list"]
    if checkpoint.name == "best.pt" and chosen_on and Path(test_list).resolve() == Path(chosen_on).resolve():
        log.warning("best.pt was chosen on %s, which is also the list tested here: its accuracy is optimistic (give "
                    "data.test_list a split of its own, or test last.pt)", test_list)
    # files named after what was evaluated: the checkpoint, and a hash of its bytes and the evaluation settings
    # (another best.pt, or last.pt written again by a resume, is another evaluation)
    settings = {k: v for k, v in flat(to_dict(cfg)).items() if k in _EVALUATION_KEYS}
    checkpoint_sha256 = file_sha256(checkpoint)
    digest = hashlib.sha256(json.dumps([checkpoint_sha256, settings], sort_keys=True).encode()).hexdigest()[:8]
    tag = f"{checkpoint.stem}-{digest}"
    device = resolve_device(cfg.device)
    info = init_distributed(device.type)
    try:
        resolve_threads(cfg, info)
        if info.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
        with StopSignals(info) as stop:  # workers ignore a group's SIGINT/SIGTERM; this process stops in order
            try:
                results = evaluate_run(cfg, model.to(device), classes, info, device, out_dir / "bad_videos.tsv",
                                       outputs=run_outputs(out_dir, tag), should_stop=stop.received_any)
            except EvaluationStopped:
                raise Interrupted(f"stopped by {stop.name()} during the test; no result was written") from None
    finally:
        cleanup_distributed()
    if info.is_main:
        results.update(checkpoint=str(checkpoint.resolve()), checkpoint_sha256=checkpoint_sha256, evaluation=settings,
                       model=state["config"]["model"]["name"], predictions=f"predictions_{tag}.csv",
                       confusion=f"confusion_{tag}.csv")
        out = out_dir / f"test_{tag}.json"
        out.write_text(json.dumps(results, indent=2))
        print(json.dumps(results, indent=2))
        print(f"written: {out}")
    return 0


def _predict(args) -> int:
    import torch

    from actionbench.data.dataset import VideoClipDataset
    from actionbench.data.records import VideoRecord
    from actionbench.engine.assembly import resolve_device
    from actionbench.engine.evaluation import to_model_input
    from actionbench.engine.export import open_exported
    from actionbench.models.factory import model_from_checkpoint
    from actionbench.models.weights import load_checkpoint

    split_overrides(args, ("videos",))
    if args.topk < 1:
        raise ConfigError(f"--topk {args.topk}: give 1 or more labels per video")
    if not args.videos:
        raise ConfigError("no video given: actionbench predict VIDEO... --checkpoint CKPT")
    if args.onnx:
        model = open_exported(args.onnx)  # runs on the CPU (onnxruntime's CPU provider)
        state, device = model.metadata, torch.device("cpu")
    else:
        state = load_checkpoint(args.checkpoint)
        device = resolve_device(args.device)
        model = model_from_checkpoint(state).eval().to(device)
    cfg = from_dict(state["config"])
    apply_overrides(cfg, args.overrides)
    classes = state["classes"]
    missing = [v for v in args.videos if not Path(v).exists()]
    if missing:
        raise FileNotFoundError(f"no such video or frame folder: {', '.join(missing[:3])}")
    records = [VideoRecord(str(Path(v).resolve()), -2, Path(v).stem) for v in args.videos]
    dataset = VideoClipDataset(records, num_frames=cfg.data.frames, sampling=cfg.data.sampling,
                               stride=cfg.data.stride, mode="test", num_clips=cfg.test.num_clips,
                               num_crops=cfg.test.num_crops, size=cfg.test.size or cfg.data.size,
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
    dataset.close()
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
