"""Dependency rules: recipes are leaves, `common` imports no recipe, model files stay pure.

Walks each package's AST for import statements (no import is executed).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("ncf", "dlrm", "sim")
MODEL_FILES = ("model.py", "layers.py", "embeddings.py", "interactions.py", "mlp.py")
FORBIDDEN_IN_MODELS = (
    "torch.distributed",
    "torch.nn.parallel",
    "torch.amp",
    "torch.cuda.amp",
    "common",
    "logging",
    "tqdm",
)
# Pure compute that model files may use: same function as torch, on any device.
ALLOWED_IN_MODELS = ("common.linear", "common.kernels")
# Commands (modules with a main()) import no other command; what two of them share lives in a library
# module (e.g. sim/steps.py, ncf/ranking.py, dlrm/scoring.py). The exceptions, and why:
COMMAND_IMPORTS_ALLOWED = {
    ("ncf/demo.py", "ncf.prepare_data"): "the demo runs the prepare and train commands end to end",
    ("ncf/demo.py", "ncf.train"): "the demo runs the prepare and train commands end to end",
    ("sim/baselines.py", "sim.train"): "the no-history baseline runs the train command on blanked histories",
}


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def top(name: str) -> str:
    return name.split(".")[0]


def files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def commands(recipe: str) -> set[str]:
    """The recipe's command modules: top-level files with a top-level main()."""
    return {p.stem for p in (ROOT / recipe).glob("*.py") if re.search(r"^def main\(", p.read_text(), re.M)}


def command_imports(recipe: str, path: Path, names: set[str]) -> set[str]:
    """The other commands of `recipe` that the module at `path` imports."""
    out = set()
    for name in imports(path):
        parts = name.split(".")
        if len(parts) > 1 and parts[0] == recipe and parts[1] in names and parts[1] != path.stem:
            out.add(f"{recipe}.{parts[1]}")
    return out


def is_model_file(path: Path) -> bool:
    return path.name in MODEL_FILES or path.name.endswith("_model.py") or path.parent.name == "models"


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipes_never_import_each_other(recipe: str) -> None:
    others = set(RECIPES) - {recipe}
    bad = {(p.relative_to(ROOT).as_posix(), n) for p in files(recipe) for n in imports(p) if top(n) in others}
    assert not bad, f"cross-recipe imports: {sorted(bad)}"


def test_common_imports_no_recipe() -> None:
    bad = {
        (p.relative_to(ROOT).as_posix(), n) for p in files("common") for n in imports(p) if top(n) in RECIPES
    }
    assert not bad, f"common imports a recipe: {sorted(bad)}"


def test_model_files_know_nothing_of_devices_ranks_amp_or_logging() -> None:
    model_files = [p for r in RECIPES for p in files(r) if is_model_file(p)]
    bad = {
        (p.relative_to(ROOT).as_posix(), n)
        for p in model_files
        for n in imports(p)
        if any(n == f or n.startswith(f + ".") for f in FORBIDDEN_IN_MODELS)
        and not any(n == a or n.startswith(a + ".") for a in ALLOWED_IN_MODELS)
    }
    assert not bad, f"model files import runtime code: {sorted(bad)}"
    for p in model_files:
        text = p.read_text()
        for needle in (".cuda(", 'device="cuda"', ".half()"):
            assert needle not in text, f"{p.relative_to(ROOT)} contains {needle!r}"


@pytest.mark.parametrize("recipe", RECIPES)
def test_commands_import_no_other_command(recipe: str) -> None:
    """No import cycles between entry points (sim.train <-> sim.benchmark was one), no command that
    drags in another's flags and side effects: shared steps live in library modules."""
    names = commands(recipe)
    assert {"train", "evaluate"} <= names
    found = {
        (p.relative_to(ROOT).as_posix(), n)
        for p in sorted((ROOT / recipe).glob("*.py"))
        if p.stem in names
        for n in command_imports(recipe, p, names)
    }
    assert not found - set(COMMAND_IMPORTS_ALLOWED), f"commands importing commands: {sorted(found)}"


def test_rule_catches_a_violation(tmp_path: Path) -> None:
    """The checker itself must be able to fail."""
    bad = tmp_path / "model.py"
    bad.write_text("import torch.distributed as dist\nfrom common.amp import setup\nfrom ncf import data\n")
    assert {"torch.distributed", "common.amp", "ncf"} <= imports(bad)
    (tmp_path / "train.py").write_text("from sim.benchmark import StepTimer\nfrom sim import steps\n")
    assert command_imports("sim", tmp_path / "train.py", {"train", "benchmark"}) == {"sim.benchmark"}
