"""docs/hooks.md against hookspecs.py: every spec listed, exact signature, kind, a real test."""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailfleet import hookspecs

ROOT = Path(__file__).parents[1]
REFERENCE = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")
SPECS = {name: f for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
         if name.startswith("mailfleet_")}


def section(name: str) -> str:
    """The part of the reference under the hook's heading."""
    match = re.search(rf"^## {name}\(.*?(?=^## |\Z)", REFERENCE, re.S | re.M)
    assert match, f"docs/hooks.md has no section for {name}"
    return match.group(0)


def signature(spec: Callable[..., Any]) -> str:
    sig = inspect.signature(spec)
    params = ", ".join(f"{n}: {p.annotation}" for n, p in sig.parameters.items())
    return f"def {spec.__name__}({params}) -> {sig.return_annotation}"


def kind(spec: Callable[..., Any]) -> str:
    if spec.__name__ in hookspecs.AWAITED:
        return "first awaited answer"
    opts = spec.mailfleet_spec  # type: ignore[attr-defined]
    return "firstresult" if opts["firstresult"] else "collected"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_reference_lists_the_hook_with_its_exact_arguments(name: str) -> None:
    params = ", ".join(inspect.signature(SPECS[name]).parameters)
    assert f"## {name}({params})" in REFERENCE


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_reference_shows_the_exact_signature_and_kind(name: str) -> None:
    text = section(name)
    assert f"```python\n{signature(SPECS[name])}\n```" in text
    assert f"**{kind(SPECS[name])}**" in text
    assert "`None`" in text, "the section must say what None means"
    assert text.count("```python") >= 2, "the section needs an example"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_reference_names_an_existing_test_for_the_hook(name: str) -> None:
    match = re.search(r"Tested by: `(tests/[\w/]+\.py)::(test_\w+)`", section(name))
    assert match, f"{name}: no 'Tested by' line"
    path, test = ROOT / match.group(1), match.group(2)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert test in {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_spec_documents_its_arguments_and_what_none_means(name: str) -> None:
    spec = SPECS[name]
    doc = inspect.getdoc(spec) or ""
    assert len(doc) > 80
    assert "None" in doc
    for param in inspect.signature(spec).parameters:
        assert f":param {param}:" in doc, param


def test_no_section_documents_a_hook_that_does_not_exist() -> None:
    documented = set(re.findall(r"^## (mailfleet_\w+)\(", REFERENCE, re.M))
    assert documented == set(SPECS)


def test_plugin_guide_draws_every_hook_on_the_path_of_a_letter() -> None:
    guide = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    drawing = guide.split("## 5. The path of one letter through the hooks", 1)[1]
    drawing = drawing.split("## 6.", 1)[0]
    assert [name for name in SPECS if name not in drawing] == []
