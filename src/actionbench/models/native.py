"""Small C kernels for CPUs, built on first use with the machine's C compiler and called through ctypes.

Used where torch has no fused op and memory passes dominate (TAM's aggregation and its backward). Each build is
cached under `$XDG_CACHE_HOME/actionbench/kernels` (~/.cache/... by default), keyed by the source, the compiler and
its flags; without a compiler (or with `ACTIONBENCH_NATIVE=0`) callers fall back to torch ops, with one warning.
No `-march=native`: one cache folder can serve a cluster's mixed nodes.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shlex
import subprocess
import tempfile
from functools import cache
from pathlib import Path

from actionbench.runtime import user_cache_dir

log = logging.getLogger(__name__)

FLAGS = ("-O3", "-std=c99", "-fPIC", "-shared", "-fopenmp", "-fno-math-errno")


def kernel_cache_dir() -> Path:
    """Where built kernels are kept; a per-user temporary folder for a user without a home folder."""
    return user_cache_dir("kernels") or Path(tempfile.gettempdir()) / f"actionbench-{os.getuid()}" / "kernels"


def _build(source: Path) -> Path:
    """The shared library built from `source`, from the cache when there."""
    compiler = shlex.split(os.environ.get("CC", "cc"))
    key = hashlib.sha256(b"\0".join([source.read_bytes(), " ".join(compiler + list(FLAGS)).encode(),
                                     platform.machine().encode()])).hexdigest()[:16]
    target = kernel_cache_dir() / f"{source.stem}-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([*compiler, *FLAGS, str(source), "-o", partial], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(compiler)} failed on {source.name}: {done.stderr.strip()[-500:]}")
        os.replace(partial, target)  # atomic: processes building at once each install a whole file
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


@cache
def load(source: str) -> ctypes.CDLL | None:
    """The kernels of `source` (a C file beside this package's modules, e.g. "temporal/tam_kernels.c"), or None."""
    if os.environ.get("ACTIONBENCH_NATIVE", "1") == "0":
        return None
    try:
        return ctypes.CDLL(str(_build(Path(__file__).parent / source)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        log.warning("C kernels %s unavailable (%s); using torch ops, which are slower. Install a C compiler (cc) "
                    "or set CC to one; ACTIONBENCH_NATIVE=0 uses torch ops without this warning.", source, exc)
        return None
