"""The one-way flow of docs/architecture.md, checked on the source: no module imports a layer above its own, lazy
imports inside functions included (an import graph at import time does not show those)."""

import ast
from pathlib import Path

import actionbench

PACKAGE = Path(actionbench.__file__).parent
# A module may import its own layer's modules and those of lower layers; models and data are independent.
LAYERS = {"errors": 0, "runtime": 0, "statistics": 0, "config": 0, "models": 1, "data": 1, "profiling": 2,
          "engine": 3, "study": 4, "cli": 5, "__main__": 5, "__init__": 5}


def _layer_of(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "actionbench":  # from actionbench import statistics
            found += [(node.lineno, f"actionbench.{a.name}") for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("actionbench."):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("actionbench")]
    return found


def test_no_module_imports_a_higher_layer():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("actionbench", *path.relative_to(PACKAGE).with_suffix("").parts))
        own = _layer_of(module)
        for line, target in _imports(path):
            theirs = _layer_of(target)
            if theirs == own or theirs not in LAYERS:
                continue
            if LAYERS[theirs] > LAYERS[own] or (LAYERS[theirs] == LAYERS[own] == 1):
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} ({own}) imports {target} ({theirs})")
    assert not wrong, "\n".join(wrong)


def test_every_package_is_placed_in_a_layer():
    names = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert names <= set(LAYERS), names - set(LAYERS)


def test_the_config_schema_names_every_annotation_reader():
    from actionbench.config import FORMAT_NAMES
    from actionbench.data.formats import READERS

    assert tuple(READERS) == FORMAT_NAMES


def test_trainer_holds_the_loop_only():
    source = (PACKAGE / "engine" / "trainer.py").read_text()
    assert len(source.splitlines()) < 281  # under half its 562 lines before the run assembly moved out
    for name in ("def load_split", "def make_dataset", "def build_run_model", "def evaluate_run", "nonlocal"):
        assert name not in source


def test_a_resolved_config_is_frozen():
    import dataclasses

    import pytest

    from actionbench.config import Config, freeze, thaw

    frozen = freeze(Config())
    for section, key in ((frozen, "seed"), (frozen.model, "name"), (frozen.data, "frames")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(section, key, 1)
    copy = thaw(frozen)
    copy.data.frames = 16
    assert copy.data.frames == 16 and frozen.data.frames == 8
