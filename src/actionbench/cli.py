"""The `actionbench` command line.

Each sub-command lives in the module that owns its work; that module provides `add_arguments(parser, name)` and
`run(args) -> int`. Only the chosen command's module is imported, so `actionbench --help` stays fast.

One parsing rule for every command: options and positionals may come in any order (`parse_intermixed_args`), and
a positional that looks like `section.key=value` (or a top-level key: `seed=1`) is a config override wherever it
stands (`study s.yaml --out o optim.epochs=2`, `predict a.mp4 --checkpoint C b.mp4 test.num_clips=1`).
A user's mistake is one line `actionbench COMMAND: error: ...` on stderr with the exit status of its kind
(actionbench.errors); a traceback means a bug (or `--debug`).
"""

from __future__ import annotations

import argparse
import difflib
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
    "export": ("actionbench.engine.export", "a checkpoint as an ONNX file or torch.export program, parity-checked"),
    "analyze": ("actionbench.study.analysis", "temporal reliance of trained runs: accuracy with frames reversed, "
                                              "shuffled, static"),
    "study": ("actionbench.study.runner", "run or print a grid of runs and write the comparison report"),
    "synth": ("actionbench.data.synthetic", "write a synthetic video dataset (real encoded MP4 files)"),
    "mini": ("actionbench.data.mini", "make a Mini-dataset: a seeded random fraction of the classes"),
    "data": ("actionbench.data.check", "dataset tools: `data check` scans every video and reports bad ones"),
    "extract": ("actionbench.data.extract", "extract JPEG frames (shorter side 256), parallel and resumable"),
    "transcode": ("actionbench.data.extract", "re-encode videos for fast seeking (short side 256, GOP <= 30)"),
}
# commands whose module has sub-commands of its own (argparse cannot intermix those)
_NESTED = ("data",)


def _top_parser() -> argparse.ArgumentParser:
    from actionbench import __version__

    parser = argparse.ArgumentParser(
        prog="actionbench", description="Train, evaluate and fairly compare video action-recognition models.",
        epilog="`actionbench COMMAND --help` describes a command. --debug (anywhere) shows tracebacks.")
    parser.add_argument("--version", action="version", version=f"actionbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text)
    return parser


def build_parser(command: str) -> argparse.ArgumentParser:
    """The parser of one command (its module imported), as `actionbench COMMAND` shows it."""
    module_name, help_text = COMMANDS[command]
    parser = argparse.ArgumentParser(prog=f"actionbench {command}", description=help_text)
    module = importlib.import_module(module_name)
    module.add_arguments(parser, command)
    parser.set_defaults(_run=module.run, command=command)
    return parser


def _one_line(message: str) -> str:
    """An error raised in a data-loader worker arrives with the worker's traceback in its message: its last line is
    what the worker said."""
    if "Original Traceback" in message:
        return message.strip().splitlines()[-1].split(": ", 1)[-1]
    return message


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0].startswith("-"):
        top = _top_parser()
        top.parse_args(argv)  # --help / --version exit here; anything else is an unknown option
        top.print_help()
        return 0 if not argv else 2
    command = argv[0]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f"; did you mean `actionbench {close[0]}`?" if close else "; `actionbench --help` lists them"
        print(f"actionbench: error: unknown command {command!r}{hint}", file=sys.stderr)
        return 2
    parser = build_parser(command)
    args = parser.parse_args(argv[1:]) if command in _NESTED else parser.parse_intermixed_args(argv[1:])
    from actionbench.errors import ActionbenchError
    from actionbench.runtime import retain_freed_memory

    retain_freed_memory()  # every command that runs models allocates the same large tensors again and again
    try:
        return int(args._run(args) or 0)
    except ActionbenchError as exc:
        if debug:
            raise
        print(f"actionbench {command}: error: {_one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as exc:
        if debug:
            raise
        print(f"actionbench {command}: error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"actionbench {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
