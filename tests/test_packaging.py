"""Packaging promises: installing mailfleet changes nothing in a host application's test run."""

from __future__ import annotations

import importlib.metadata
import subprocess
import textwrap
from pathlib import Path

from fresh_env import clean_environ, fresh_env

HOST_TEST = textwrap.dedent("""
    import mailfleet

    def test_host_application_still_adds_up():
        assert mailfleet.__version__
        assert 1 + 1 == 2
""")


def _pytest(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=cwd, env=clean_environ(), capture_output=True, text=True,
                          timeout=120)


def test_core_distribution_registers_nothing_with_pytest() -> None:
    groups = {ep.group for ep in importlib.metadata.distribution("mailfleet").entry_points}
    assert "pytest11" not in groups
    owners = {ep.dist.name for ep in importlib.metadata.entry_points(group="pytest11")
              if ep.value.startswith("mailfleet")}
    assert owners == {"mailfleet-testing"}


def test_fresh_venv_with_only_mailfleet_and_pytest_runs_a_hosts_trivial_test(
        tmp_path: Path) -> None:
    python = fresh_env(tmp_path / "venv", ["mailfleet", "pytest"])
    host = tmp_path / "host"
    host.mkdir()
    (host / "test_host.py").write_text(HOST_TEST)
    run = _pytest(python, host)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout
    assert "trustme" not in run.stdout + run.stderr
    # The fixtures arrive only with the test kit's own distribution.
    fixtures = _pytest(python, host, "--fixtures")
    assert "smtp_server" not in fixtures.stdout


def test_installing_mailfleet_testing_adds_the_fixtures(tmp_path: Path) -> None:
    python = fresh_env(tmp_path / "venv", ["mailfleet-testing"])
    host = tmp_path / "host"
    host.mkdir()
    (host / "test_host.py").write_text(HOST_TEST)
    fixtures = _pytest(python, host, "--fixtures")
    assert fixtures.returncode == 0, fixtures.stdout + fixtures.stderr
    assert "smtp_server" in fixtures.stdout
