"""``mailfleet plugin new``: the generated project installs, is listed, and passes its tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fresh_env import clean_environ, fresh_env, install_target

from mailfleet.cli.main import cli


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=cwd, env=clean_environ(), capture_output=True,
                          text=True, timeout=300)


def test_generated_plugin_installs_is_listed_and_passes_its_tests_in_a_fresh_venv(
        tmp_path: Path) -> None:
    made = CliRunner().invoke(cli, ["plugin", "new", "acmeisp", "--dir", str(tmp_path)])
    assert made.exit_code == 0, made.output
    project = tmp_path / "mailfleet-acmeisp"
    assert {p.name for p in project.iterdir()} >= {"pyproject.toml", "src", "tests",
                                                    "README.md"}
    # A fresh venv with what `pip install mailfleet-testing` brings, then the project itself,
    # built by its own build backend (offline: no build isolation, no index).
    python = fresh_env(tmp_path / "venv", ["mailfleet-testing"])
    built = run(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                "--no-build-isolation", "--target", str(install_target(python)), str(project),
                cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    listed = run(str(python), "-c", "import sys; from mailfleet.cli.main import main; "
                 "sys.argv = ['mailfleet', 'plugins', '--json']; main()", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    [record] = [r for r in json.loads(listed.stdout) if r["id"] == "acmeisp"]
    assert record["distribution"] == "mailfleet-acmeisp"
    assert record["domains"] == ["acmeisp.example"]
    tests = run(str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    passed = int(tests.stdout.strip().splitlines()[-1].split(" passed")[0].split()[-1])
    assert passed >= 10 and "failed" not in tests.stdout  # the whole conformance suite ran
    # The same suite catches a release whose Russian next step is not Russian.
    module = install_target(python) / "mailfleet_acmeisp" / "__init__.py"
    source = module.read_text(encoding="utf-8")
    broken = source.replace("проверьте логин и пароль (password_env или password_file)",
                            "check the login")
    assert broken != source
    module.write_text(broken, encoding="utf-8")
    caught = run(str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project)
    assert caught.returncode == 1
    assert "russian[wrong_password]" in caught.stdout and "1 failed" in caught.stdout


@pytest.mark.parametrize("name", ["Acme", "1acme", "acme-isp", "a"])
def test_plugin_new_refuses_a_name_that_cannot_be_a_provider_id(
        tmp_path: Path, name: str) -> None:
    made = CliRunner().invoke(cli, ["plugin", "new", name, "--dir", str(tmp_path)])
    assert made.exit_code != 0
    assert "lower-case letters" in str(made.exception) + made.output
    assert list(tmp_path.iterdir()) == []


def test_plugin_new_never_overwrites_a_project(tmp_path: Path) -> None:
    (tmp_path / "mailfleet-acmeisp").mkdir()
    made = CliRunner().invoke(cli, ["plugin", "new", "acmeisp", "--dir", str(tmp_path)])
    assert made.exit_code != 0 and "already exists" in str(made.exception) + made.output
