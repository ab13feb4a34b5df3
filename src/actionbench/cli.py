"""The `actionbench` command line.

Each sub-command lives in the module that owns its work; that module provides
`add_arguments(parser)` and `run(args) -> int`. Only the chosen command's module
is imported, so `actionbench --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("actionbench.study.demo", "run the embedded default study on synthetic videos (CPU, minutes)"),
    "profile": ("actionbench.profiling.cli", "params, FLOPs, throughput and max batch size of zoo models"),
    "convert": ("actionbench.models.convert.cli", "a released checkpoint of another codebase as an actionbench one"),
    "train": ("actionbench.engine.commands", "train a model from a YAML config with key=value overrides"),
    "test": ("actionbench.engine.commands", "evaluate a checkpoint: clip- and video-level accuracy"),
    "predict": ("actionbench.engine.commands", "top-k labels for video files from a checkpoint"),
    "study": ("actionbench.study.runner", "run or print a grid of runs and write the comparison report"),
    "synth": ("actionbench.data.synthetic", "write a synthetic video dataset (real encoded MP4 files)"),
    "mini": ("actionbench.data.annotations", "make a Mini-dataset: a seeded random fraction of the classes"),
    "data": ("actionbench.data.check", "dataset tools: `data check` scans every video and reports bad ones"),
    "extract": ("actionbench.data.extract", "extract JPEG frames (shorter side 256), parallel and resumable"),
    "transcode": ("actionbench.data.extract", "re-encode videos for fast seeking (short side 256, GOP <= 30)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only `command`'s module is imported to describe its arguments."""
    parser = argparse.ArgumentParser(
        prog="actionbench",
        description="Train, evaluate and fairly compare video action-recognition models.",
    )
    from actionbench import __version__

    parser.add_argument("--version", action="version", version=f"actionbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(p, name)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if args.command is None else 2
    from actionbench.runtime import retain_freed_memory

    retain_freed_memory()  # every command that runs models allocates the same large tensors again and again
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
