"""Test-session settings, and the check that the suite leaves no process behind."""

import contextlib
import os
import sys
import time
from pathlib import Path

import pytest

_BEFORE: set[int] = set()


def _processes() -> dict[int, str]:
    """Every live (not zombie) process of this machine: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError):
            continue
        if state != "Z" and command:
            found[int(entry.name)] = command
    return found


def pytest_sessionstart(session):
    _BEFORE.update(_processes())


def pytest_sessionfinish(session, exitstatus):
    """Stop what this process itself started for data loading (loaders' workers, the forkserver, the resource
    tracker), then fail the session if any process the tests started is still alive: it is killed, by its id."""
    from multiprocessing import forkserver, resource_tracker

    from actionbench.engine.evaluation import _stop_workers_at_exit

    _stop_workers_at_exit()
    for helper in (forkserver._forkserver, resource_tracker._resource_tracker):
        helper._stop()
    deadline = time.time() + 15  # a process a test has just ended may still be on its way out
    while True:
        left = {pid: cmd for pid, cmd in _processes().items() if pid not in _BEFORE and pid != os.getpid()
                and (sys.prefix in cmd or "actionbench" in cmd)}
        if not left or time.time() > deadline:
            break
        time.sleep(0.5)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_line(f"FAILED: the tests left {len(left)} process(es) running (now killed):", red=True)
        for pid, command in sorted(left.items()):
            reporter.write_line(f"  {pid} {command[:160]}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True, scope="session")
def _private_cache_folder(tmp_path_factory):
    """Caches the code keeps in the user's cache folder (video indexes) go to a temporary one during the tests."""
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    yield
    patch.undo()
