"""The architecture's rules, checked on the source: no import cycle in the core, plugins and
packages use only the public plugin API, and start-up imports nothing heavy."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import difforge

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core" / "src"
#: where distributions that extend difforge live: each may import only the public API
EXTENSIONS = [ROOT / "plugins", ROOT / "packages", ROOT / "examples" / "third_party_plugin"]
PUBLIC_MODULES = {"difforge", "difforge.plugin_api"}


def _imports(tree: ast.AST, package: list[str]) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every import statement, module level or not, made absolute."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name, []) for a in node.names)
    return found


def core_import_graph() -> dict[str, set[str]]:
    """``module -> modules it imports`` over every module of the ``difforge`` package."""
    modules = {}
    for file in (CORE / "difforge").rglob("*.py"):
        parts = list(file.relative_to(CORE).with_suffix("").parts)
        package = parts[:-1]
        if parts[-1] == "__init__":
            parts = package = parts[:-1]
        modules[".".join(parts)] = (file, package)
    graph = {}
    for name, (file, package) in modules.items():
        edges = set()
        for _, module, names in _imports(ast.parse(file.read_text()), package):
            for candidate in [module, *(f"{module}.{n}" for n in names)]:
                if candidate in modules and candidate != name:
                    edges.add(candidate)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_core_has_no_import_cycle():
    """Counting imports inside functions too: a lazy import is still a dependency."""
    graph = core_import_graph()
    assert len(graph) > 50 and "difforge.plugins" in graph
    assert cycles(graph) == []


def _extension_files() -> list[Path]:
    files = []
    for root in EXTENSIONS:
        files += [f for f in root.rglob("*.py") if not {".venv", "build"} & set(f.parts)]
    return sorted(files)


def _private_uses(file: Path, root: Path = ROOT) -> list[str]:
    """Imports of difforge modules other than the public ones, and ``difforge.<x>`` attribute
    paths that are not part of ``difforge.__all__``."""
    tree = ast.parse(file.read_text())
    where = file.relative_to(root)
    bad = []
    for line, module, _ in _imports(tree, []):
        if (module == "difforge" or module.startswith("difforge.")) and module not in PUBLIC_MODULES:
            bad.append(f"{where}:{line}: imports {module}")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "difforge"
                and node.attr not in difforge.__all__ and node.attr != "plugin_api"):
            bad.append(f"{where}:{node.lineno}: uses difforge.{node.attr}")
    return bad


def test_private_use_finder_finds_both_kinds(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import difforge\nfrom difforge.training import Objective\nx = difforge.sampling.grid\n"
                     "from difforge.plugin_api import Reward\ny = difforge.train\n")
    found = _private_uses(probe, tmp_path)
    assert found == ["probe.py:2: imports difforge.training", "probe.py:3: uses difforge.sampling"]


def test_extensions_use_only_the_public_plugin_api():
    files = _extension_files()
    assert any("difforge_audio" in str(f) for f in files) and any("difforge_zoo" in str(f) for f in files)
    bad = [line for f in files for line in _private_uses(f)]
    assert bad == [], "\n".join(bad)


def test_public_plugin_api_resolves():
    from difforge import plugin_api

    for name in plugin_api.__all__:
        assert getattr(plugin_api, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'Trainer'"):
        plugin_api.Trainer  # noqa: B018


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["plugins"]])
def test_start_up_imports_nothing_heavy(argv):
    """``difforge --help``, ``--version`` and ``plugins`` register every plugin lazily: neither
    torch, diffusers, transformers nor even NumPy is imported (their wall time: benchmarks/startup.py)."""
    code = ("import sys\nfrom difforge.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'peft', 'numpy', 'librosa')\n"
            "               if m in sys.modules)\n"
            "print('HEAVY', heavy)")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY []", proc.stdout[-2000:]


def test_the_core_alone_trains_the_quickstart_lora(toy_images, tmp_path):
    """With every plugin and package disabled, the core trains the quickstart config (DreamBooth +
    LoRA, shortened) on the zoo model's files given by path, and imports none of them."""
    from difforge_zoo.models import model_path

    config = ROOT / "packages/zoo/src/difforge_zoo/configs/quickstart.yaml"
    code = (
        "import sys, difforge\n"
        f"result = difforge.train({str(config)!r}, overrides=['model.pretrained={model_path('shapes-sd-tiny')}',\n"
        f"    'data.options.path={toy_images}', 'output.dir={tmp_path / 'run'}', 'train.steps=3',\n"
        "    'objective.options.num_class_images=2', 'objective.options.class_sampling_steps=2',\n"
        "    'output.tensorboard=false', 'output.progress=false', 'output.checkpoint_every=0'])\n"
        "print('ADAPTER', result.adapter_path)\n"
        "print('EXTENSIONS', sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "    ('difforge_align', 'difforge_guard', 'difforge_zoo', 'difforge_audio')))\n")
    env = {**os.environ, "DIFFORGE_DISABLE_PLUGINS": "all"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "EXTENSIONS []"
    assert (Path(lines[-2].split(" ", 1)[1]) / "pytorch_lora_weights.safetensors").exists()
