"""A run directory is one run: its config, checkpoints, metrics and results, and nothing of another run's.

- `output_dir` empty (the default) makes a fresh directory per run: `runs/<model>_<dataset>_<YYYYmmdd-HHMMSS>`
  (with `-2`, `-3`, ... when two start in the same second), created exclusively, so two runs never share one.
- A directory that already holds a run is reused only to resume it (`--resume`) or, explicitly, to replace it
  (`--overwrite`, which deletes that run's files first).
- A resume continues the same run: every key that changes what is computed must equal the saved config.yaml's;
  only the keys in `RESUME_MAY_CHANGE` may differ. Extending `optim.epochs` is refused too: the learning-rate
  schedule of the epochs already trained depended on it (start a new run from the checkpoint with
  `model.init_from`).
- Paths in the saved config.yaml are absolute (resolved against the working directory at the start), so that the
  run directory can be moved or copied: commands given a run directory always read and write in that directory,
  whatever its saved `output_dir` says.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import yaml

from actionbench.config import RESUME_MAY_CHANGE, Config, flat, to_dict
from actionbench.data.splits import dataset_name
from actionbench.errors import RunDirError

# What a run directory holds; --overwrite deletes exactly these.
RUN_FILES = ("config.yaml", "last.pt", "best.pt", "metrics.jsonl", "results.json", "predictions.csv",
             "confusion.csv", "bad_videos.tsv", "tensorboard")
# What `actionbench test` adds to it (trainer.run_outputs), deleted by --overwrite too.
EVALUATION_FILES = ("test_*.json", "predictions_*.csv", "confusion_*.csv")
# A directory is a run once it has one of these: one holding only a config.yaml (or a log) of a start that failed
# before its first checkpoint is not, and the next start in it begins afresh (its leftovers deleted).
RUN_EVIDENCE = ("last.pt", "best.pt", "results.json")


def default_run_dir(cfg: Config, runs: Path = Path("runs")) -> Path:
    """A new, empty directory for this run; never one another run has."""
    dataset = cfg.dataset or (dataset_name(cfg.data.train_list) if cfg.data.train_list else "data")
    stem = f"{cfg.model.name}_{dataset}_{time.strftime('%Y%m%d-%H%M%S')}"
    runs.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        path = runs / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunDirError(f"could not make a new run directory under {runs}")


def holds_a_run(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in RUN_EVIDENCE)


def _foreign_config(run_dir: Path) -> bool:
    """A config.yaml there that a run did not write (a failed start's has every section): never deleted silently."""
    file = run_dir / "config.yaml"
    if not file.is_file():
        return False
    try:
        saved = yaml.safe_load(file.read_text())
    except yaml.YAMLError:
        return True
    return not (isinstance(saved, dict) and set(to_dict(Config())) <= set(saved))


def _delete_run_files(run_dir: Path) -> None:
    for name in RUN_FILES:
        target = run_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    for pattern in EVALUATION_FILES:
        for stale in run_dir.glob(pattern):
            stale.unlink()


def changed_keys(saved: dict, cfg: Config) -> list[str]:
    """Keys whose values differ between a saved config.yaml and `cfg`, except the harmless ones."""
    old, new = flat(saved), flat(to_dict(cfg))
    return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new))
            if key not in RESUME_MAY_CHANGE and old.get(key) != new.get(key)]


def prepare(cfg: Config, *, resume: bool | str, overwrite: bool) -> tuple[Path, bool]:
    """The run directory for `cfg` (made when new) and whether the run resumes; refuses every way of mixing two
    runs. `cfg` is read, not changed.

    `resume`: True (the user's --resume: there must be a last.pt), "auto" (a study: resume when there is one),
    False (a new run: the directory must not hold one).
    """
    if not cfg.output_dir:
        if resume is True:
            raise RunDirError("--resume needs the run to continue: give its directory (actionbench train RUN_DIR "
                              "--resume, or output_dir=RUN_DIR)")
        return default_run_dir(cfg).resolve(), False
    run_dir = Path(cfg.output_dir).resolve()
    last = run_dir / "last.pt"
    if resume and last.is_file():
        saved_file = run_dir / "config.yaml"
        if saved_file.is_file():
            saved = yaml.safe_load(saved_file.read_text()) or {}
            changed = changed_keys(saved, cfg)
            if changed:
                raise RunDirError(
                    f"cannot resume {run_dir} with another config ({'; '.join(changed[:4])}"
                    f"{f'; ... {len(changed)} keys in all' if len(changed) > 4 else ''}): a resumed run must compute "
                    "what it started computing. Start a new run (another output_dir; model.init_from=... to start "
                    "from its weights).")
        return run_dir, True
    if resume is True:
        raise RunDirError(f"nothing to resume in {run_dir}: no last.pt there. A typo in the directory? Without "
                          "--resume a new run starts.")
    if (holds_a_run(run_dir) or _foreign_config(run_dir)) and not overwrite:
        raise RunDirError(f"{run_dir} already holds a run: add --resume to continue it, --overwrite to delete it "
                          "and start again, or choose another output_dir (the default makes a new one)")
    if run_dir.is_dir():  # a run replaced (--overwrite), or the leftovers of a start that failed
        _delete_run_files(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, False
