"""The core's layout shows its architecture: sub-packages that say what they own, few loose
modules, and no sub-package importing the command line."""

from __future__ import annotations

import ast
from pathlib import Path

import mailfleet

ROOT = Path(mailfleet.__file__).parent
# Cross-cutting modules every part uses, plus the two public entry modules and the hooks.
TOP_LEVEL = {"__init__", "addresses", "aio", "app", "clock", "config", "errors", "events",
             "hookspecs", "plugin", "secrets"}


def test_every_sub_package_states_what_it_owns_in_a_paragraph() -> None:
    packages = sorted(p for p in ROOT.iterdir() if (p / "__init__.py").is_file())
    assert {p.name for p in packages} >= {"sending", "mailings", "bounces", "store", "plugins",
                                          "cli", "smtp", "mailbox"}
    for package in packages:
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc and len(doc.split()) >= 8, f"{package.name} has no docstring saying what it owns"


def test_only_cross_cutting_modules_stay_at_the_top_level() -> None:
    loose = {p.stem for p in ROOT.glob("*.py")}
    assert loose == TOP_LEVEL


def test_nothing_outside_the_cli_imports_the_cli() -> None:
    offenders = []
    for path in ROOT.rglob("*.py"):
        if path.is_relative_to(ROOT / "cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            if any(n == "mailfleet.cli" or n.startswith("mailfleet.cli.") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
