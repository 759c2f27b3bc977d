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


def _cli_imports(path: Path) -> set[str]:
    """The ``mailfleet.cli`` modules one module imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "mailfleet.cli":
                found |= {f"mailfleet.cli.{a.name}" for a in node.names}
            elif node.module.startswith("mailfleet.cli."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mailfleet.cli.")}
    return found


def test_the_cli_modules_import_each_other_without_a_circle() -> None:
    graph = {f"mailfleet.cli.{p.stem}": _cli_imports(p) for p in (ROOT / "cli").glob("*.py")
             if p.stem != "__init__"}
    assert graph["mailfleet.cli.main"] >= {"mailfleet.cli.commands", "mailfleet.cli.bounces"}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import circle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for imported in graph.get(module, ()):
            visit(imported, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_the_cli_reaches_the_library_only_through_the_application_layer() -> None:
    allowed = {"mailfleet", "mailfleet.app", "mailfleet.errors"}  # mailfleet_testing: the demo
    offenders = []
    for path in (ROOT / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("mailfleet.")
                          and n not in allowed and not n.startswith("mailfleet.cli")]
    assert offenders == []
