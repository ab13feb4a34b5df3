"""Every command the README and docs print in a code block parses exactly as printed, with the parser users run."""

import re
import shlex
from pathlib import Path

import pytest

from actionbench.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]
def shell_blocks(text: str) -> list[str]:
    """The fenced code blocks of a Markdown text whose language is a shell (or none)."""
    blocks, current, language = [], None, ""
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current, language = [], line[3:].strip()
            else:
                if language in ("", "bash", "sh", "console"):
                    blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def documented_commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in shell_blocks(doc.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                for part in line.split("&&"):
                    try:
                        words = shlex.split(part.split(" # ")[0])
                    except ValueError:  # prose in an unlabelled block (a file tree), not a command
                        continue
                    ends = [i for i, w in enumerate(words) if w == "actionbench" or w.endswith("/actionbench")]
                    if ends and (words[ends[0]] != "actionbench" or ends[0] == 0 or words[ends[0] - 1] == "-m"):
                        found.append((f"{doc.name}: {part.strip()}", words[ends[0] + 1:]))
        for span in re.findall(r"`(actionbench [^`]+)`", doc.read_text()):
            words = shlex.split(span)[1:]
            named = 2 if words[:1] == ["data"] else 1  # `actionbench data check` names a command: no example
            if len(words) > named and not any(mark in span for mark in ("[", "|", "...", "COMMAND")):
                found.append((f"{doc.name}: {span}", words))  # an example, not a synopsis with placeholders
    return found


COMMAND_LINES = documented_commands()


def test_the_docs_print_commands_at_all():
    assert len(COMMAND_LINES) >= 20 and any(args[:1] == ["demo"] for _, args in COMMAND_LINES)


@pytest.mark.parametrize(("where", "args"), COMMAND_LINES, ids=[w[:90] for w, _ in COMMAND_LINES])
def test_documented_command_parses_as_printed(where, args):
    command = args[0]
    assert command in COMMANDS, where
    parser = build_parser(command)
    parse = parser.parse_args if command == "data" else parser.parse_intermixed_args
    parse(args[1:])  # an argparse error exits: the test fails with its message
