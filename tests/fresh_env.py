"""Fresh virtual environments holding only chosen distributions, built without the network.

``fresh_env(path, ["mailfleet", "pytest"])`` creates a venv (no pip) and links into its
site-packages exactly the files of those distributions and of their dependency closure, as
installed in the running environment (editable members included through their ``.pth``). So a
test sees what a user who ran ``pip install mailfleet pytest`` gets, and nothing else of the
development environment (in particular no other distribution's entry points).
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def closure(names: Iterable[str]) -> set[str]:
    """The distributions ``names`` need, themselves included (extras are not followed)."""
    todo = [canonicalize_name(n) for n in names]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.distribution(name).requires or ():
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def fresh_env(path: Path, names: Iterable[str]) -> Path:
    """Create the venv at ``path`` with the closure of ``names``; return its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   capture_output=True)
    python = path / "bin" / "python"
    site = install_target(python)
    for name in sorted(closure(names)):
        dist = importlib.metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith("..")}
        for top in tops:
            source = Path(str(dist.locate_file(top)))
            target = site / top
            if source.exists() and not target.exists():
                target.symlink_to(source)
    return python


def clean_environ() -> dict[str, str]:
    """The environment for a child run that must not see this test run's settings."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTEST_", "PYTHON", "MAILFLEET_", "COV_"))}


def install_target(python: Path) -> Path:
    """The site-packages directory of the venv whose interpreter is ``python``."""
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                          "['purelib'])"], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())

