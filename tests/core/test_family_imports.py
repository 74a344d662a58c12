"""No model family imports another: each of nrflv/, cordsnet/, snn_dales/, dsn/, rsa/ may use
core/ (and the libraries) but never a sibling family. Read from every module's syntax tree, so
imports inside functions and ``if TYPE_CHECKING`` blocks count too."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = ("nrflv", "cordsnet", "snn_dales", "dsn", "rsa")


def imported_packages(source: str, package: str) -> set[str]:
    """Top-level package names imported by a module of ``package`` (relative imports resolve
    to ``package`` itself; ``from .. import x`` at the package root cannot leave it)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(package if node.level else (node.module or "").split(".")[0])
    return names


def test_imported_packages_sees_every_form():
    src = ("import rsa.gratings\nimport numpy as np, dsn\nfrom cordsnet import stimuli\n"
           "from .model import X\ndef f():\n    from snn_dales.network import Y\n")
    assert imported_packages(src, "nrflv") == {"rsa", "numpy", "dsn", "cordsnet", "nrflv", "snn_dales"}


@pytest.mark.parametrize("family", FAMILIES)
def test_no_family_imports_another(family):
    files = sorted((ROOT / family).rglob("*.py"))
    assert files, f"no modules found under {family}/"
    others = set(FAMILIES) - {family}
    found = {}
    for path in files:
        bad = imported_packages(path.read_text(encoding="utf-8"), family) & others
        if bad:
            found[str(path.relative_to(ROOT))] = sorted(bad)
    assert not found, f"{family} imports another family (move the shared part to core/): {found}"
