"""plugins/_template starts a new domain in one step: the plugin it writes installs, loads,
honours the protocols and passes its own tests."""

import os
import subprocess
import sys

import pytest
from helpers import ROOT

CREATE = ROOT / "plugins" / "_template" / "create.py"


def test_create_writes_a_plugin_that_installs_and_passes_its_tests(tmp_path):
    made = subprocess.run([sys.executable, str(CREATE), "toyworld", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    plugin = tmp_path / "toyworld"
    assert (plugin / "src" / "difforge_toyworld" / "plugin.py").exists()
    assert not any("__domain__" in p.read_text() for p in plugin.rglob("*") if p.is_file())
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(plugin)], check=True, capture_output=True, text=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "difforge_testkit.pytest_plugin",
                            "-p", "no:cacheprovider", "--rootdir", str(plugin), str(plugin / "tests")],
                           capture_output=True, text=True, timeout=600, env=env, cwd=plugin)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
    assert "3 passed" in tests.stdout


def test_create_refuses_a_bad_name_or_an_existing_folder(tmp_path):
    bad = subprocess.run([sys.executable, str(CREATE), "Bad-Name", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "must be lower-case" in bad.stderr
    (tmp_path / "taken").mkdir()
    taken = subprocess.run([sys.executable, str(CREATE), "taken", "--out", str(tmp_path)],
                           capture_output=True, text=True, timeout=60)
    assert taken.returncode != 0 and "already exists" in taken.stderr
    assert list((tmp_path / "taken").iterdir()) == []


@pytest.mark.parametrize("path", ["pyproject.toml", "README.md", "recipes/waves.yaml"])
def test_the_skeleton_holds_the_plugin_layout(path):
    assert (ROOT / "plugins" / "_template" / "skeleton" / path).exists()
