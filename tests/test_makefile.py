"""The Makefile finds distributions by glob and gives a plugin with a constraints.txt its own
environment; checked with ``make -n`` on a scratch tree (nothing is installed)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from helpers import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


@pytest.fixture
def tree(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for folder in ("core", "packages/kit", "packages/testkit", "plugins/shared", "plugins/own", "plugins/_template"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "plugins/own/constraints.txt").write_text("numpy<2\n")
    (tmp_path / "constraints").mkdir()
    (tmp_path / "constraints/cpu.txt").write_text("torch==2.13.0\n")
    return tmp_path


def dry_run(tree, *targets: str) -> list[str]:
    done = subprocess.run(["make", "-n", "--no-print-directory", *targets, "CONSTRAINTS=constraints/cpu.txt"],
                          cwd=tree, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_test_target_installs_shared_distributions_and_tests_own_environment_plugins_apart(tree):
    lines = dry_run(tree, "test")
    main_install = next(line for line in lines if line.startswith(".venv/bin/python -m pip install") and "-e" in line)
    assert '-e "core[dev,tensorboard]"' in main_install
    assert "-e packages/kit" in main_install and "-e plugins/shared" in main_install
    assert "plugins/own" not in main_install and "_template" not in main_install
    assert any(line.startswith(".venv/bin/python -m pytest") and "--ignore=plugins/own" in line for line in lines)
    # the core alone, then the plugin in its own environment, with its constraints
    assert '.venv-core/bin/python -m pip install --quiet -c constraints/cpu.txt -e "core[dev]"' in lines
    assert any(line.startswith(".venv-core/bin/python -m pytest") and line.endswith("core/tests") for line in lines)
    assert ('plugins/own/.venv/bin/python -m pip install --quiet -c plugins/own/constraints.txt -e "core[dev]" '
            "-e packages/testkit -e plugins/own") in lines
    assert any(line.startswith("plugins/own/.venv/bin/python -m pytest") and line.endswith("plugins/own/tests")
               for line in lines)


def test_without_own_environment_plugins_nothing_else_is_built(tree):
    (tree / "plugins/own/constraints.txt").unlink()
    lines = dry_run(tree, "test")
    assert not any("plugins/own/.venv" in line for line in lines)
    main_install = next(line for line in lines if line.startswith(".venv/bin/python -m pip install") and "-e" in line)
    assert "-e plugins/own" in main_install


def test_plugin_test_needs_a_plugin(tree):
    done = subprocess.run(["make", "plugin-test"], cwd=tree, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "usage: make plugin-test PLUGIN=plugins/<domain>" in done.stdout
