"""Documentation invariants: every hookspec is tested and documented; every public
function and class of difforge has a docstring."""

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import difforge
from difforge import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("difforge_"))


def test_hookspecs_are_few_and_marked():
    registration = [h for h in HOOKS if h.startswith("difforge_register_")]
    for name in registration:
        assert getattr(hookspecs, name).difforge_spec["historic"] is True, name
        assert not getattr(hookspecs, name).difforge_spec["firstresult"], name
    others = [h for h in HOOKS if h not in registration]
    assert others == ["difforge_resolve_model"]
    assert hookspecs.difforge_resolve_model.difforge_spec["firstresult"] is True


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hookspec_has_a_test_and_a_docs_entry(hook):
    tests = [p for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_docs.py"]
    assert any(hook in p.read_text() for p in tests), f"no test mentions {hook}"
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert f"### `{hook}`" in docs, f"docs/plugins.md has no section for {hook}"
    assert inspect.getdoc(getattr(hookspecs, hook)), f"{hook} has no docstring"


def _first_party_packages():
    yield difforge
    for name in ("difforge_zoo", "difforge_audio", "difforge_align", "difforge_distill", "difforge_guard",
                 "difforge_steer", "difforge_solvers", "difforge_canvas", "difforge_clip"):
        try:
            yield importlib.import_module(name)
        except ImportError:
            continue


def _public_objects():
    for package in _first_party_packages():
        yield from _public_objects_of(package)


def _public_objects_of(package):
    for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                yield f"{module.__name__}.{name}", obj
                if inspect.isclass(obj):
                    for attr, member in vars(obj).items():
                        if not attr.startswith("_") and inspect.isfunction(member):
                            yield f"{module.__name__}.{name}.{attr}", member


def test_every_public_function_and_class_has_a_docstring():
    # hook implementations are documented by their hookspec
    missing = [name for name, obj in _public_objects()
               if not inspect.getdoc(obj) and not hasattr(obj, "difforge_impl")]
    assert not missing, f"missing docstrings: {missing}"
