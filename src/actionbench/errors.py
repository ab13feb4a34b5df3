"""The errors a user can cause, each with its exit status; `actionbench` prints them as one line.

Anything else that escapes a command is a bug and keeps its traceback (as does every error with `--debug`).
docs/troubleshooting.md lists every message with its cause and fix.
"""

from __future__ import annotations


class ActionbenchError(Exception):
    """A mistake in what was asked or given; the message names the key, file, line or value at fault."""

    exit_code = 1


class UsageError(ActionbenchError, ValueError):
    """A bad command line, config key or value (exit 2)."""

    exit_code = 2


class DataError(ActionbenchError, ValueError):
    """Annotations or videos that cannot be used as given (exit 3)."""

    exit_code = 3


class CheckpointError(ActionbenchError, RuntimeError):
    """A checkpoint or weights file that cannot be read or does not fit the model (exit 4)."""

    exit_code = 4


class TrainingDiverged(ActionbenchError, RuntimeError):
    """The loss became NaN or infinite (exit 5)."""

    exit_code = 5


class RunDirError(ActionbenchError, RuntimeError):
    """A run directory that would be overwritten, mixed with another run's results, or resumed with a changed
    config; or nothing there to resume (exit 6)."""

    exit_code = 6


class Interrupted(ActionbenchError):
    """SIGINT, SIGTERM or SIGUSR1: the run wrote its checkpoint at the next safe point and stopped (exit 75, "try
    again"). `signal` names the signal this process received (None: another rank's)."""

    exit_code = 75

    def __init__(self, message: str, signal: str | None = None) -> None:
        super().__init__(message)
        self.signal = signal
