"""Every third-party module the package imports is declared in pyproject.toml."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _imported_top_level_modules() -> set[str]:
    found = set()
    for path in [REPO / "app.py", *(REPO / "reporting").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"reporting"}


def _declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = set()
    for requirement in project["dependencies"]:
        name = requirement.split(";")[0].split("[")[0]
        for sign in "<>=!~ ":
            name = name.split(sign)[0]
        names.add(name.strip().lower().replace("_", "-"))
    return names


def test_every_imported_package_is_a_declared_dependency():
    distributions = packages_distributions()
    undeclared = {}
    for module in sorted(_imported_top_level_modules()):
        providers = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not providers & _declared():
            undeclared[module] = sorted(providers)
    assert undeclared == {}
