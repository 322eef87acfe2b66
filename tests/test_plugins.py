"""The plugin system: every hookspec, isolation of failures, disabling, strict mode, and a
real third-party plugin installed from examples/third_party_plugin."""

import pytest
import torch
from helpers import make_distribution, plugin_module, run_cli

import difforge
from difforge.errors import PluginError, RegistryError
from difforge.plugins import DifforgePluginManager, get_plugin_manager, get_registry, load_plugins, register_plugin

REGISTRATION_HOOKS = [
    "difforge_register_backbones",
    "difforge_register_denoisers",
    "difforge_register_parameterizations",
    "difforge_register_schedulers",
    "difforge_register_datasets",
    "difforge_register_objectives",
    "difforge_register_adapters",
    "difforge_register_rewards",
    "difforge_register_captioners",
    "difforge_register_samplers",
    "difforge_register_guidance",
    "difforge_register_steering",
    "difforge_register_metrics",
    "difforge_register_commands",
]


@pytest.mark.parametrize("hook", REGISTRATION_HOOKS)
def test_registration_hook_fills_its_registry_and_is_historic(hook, fresh_plugins):
    kind = hook.removeprefix("difforge_register_")
    component = object()
    get_plugin_manager()  # start-up already happened; the hook is replayed for the late plugin
    register_plugin(plugin_module("late_plugin", **{hook: lambda: {f"test-{kind}": component}}), "late-plugin")
    entry = get_registry(kind).entry(f"test-{kind}")
    assert entry.obj is component and entry.owner == "late-plugin"
    get_plugin_manager().unregister(name="late-plugin")
    assert f"test-{kind}" not in get_registry(kind)


def test_difforge_resolve_model_firstresult(fresh_plugins, tiny_sd_dir):
    from difforge.backbone import resolve_model_path
    from difforge.errors import ConfigError

    with pytest.raises(ConfigError, match="no installed plugin resolves it"):
        resolve_model_path("tiny-test-model")
    calls = []

    def first(reference):
        calls.append("first")
        return None

    def second(reference):
        calls.append("second")
        return str(tiny_sd_dir) if reference == "tiny-test-model" else None

    def never(reference):
        calls.append("never")
        return "/must/not/be/used"

    # pluggy asks the most recently registered implementation first
    register_plugin(plugin_module("resolver_c", difforge_resolve_model=never), "resolver-c")
    register_plugin(plugin_module("resolver_b", difforge_resolve_model=second), "resolver-b")
    register_plugin(plugin_module("resolver_a", difforge_resolve_model=first), "resolver-a")
    assert resolve_model_path("tiny-test-model") == tiny_sd_dir
    assert calls == ["first", "second"]  # a None answer passes on; the first answer stops the chain
    backbone = difforge.load_backbone("tiny-test-model")
    assert backbone.conditioning == "text"


def test_clash_between_plugins_is_an_error_and_leaves_nothing_behind(fresh_plugins):
    with pytest.raises(RegistryError, match="'difforge'.*'clashing'"):
        register_plugin(
            plugin_module(
                "clashing",
                difforge_register_metrics=lambda: {"fresh-metric": len},
                difforge_register_samplers=lambda: {"ddim": len},
            ),
            "clashing",
        )
    assert "fresh-metric" not in get_registry("metrics")
    assert get_registry("samplers").entry("ddim").owner == "difforge"


def test_registration_hook_must_return_a_mapping(fresh_plugins):
    with pytest.raises(PluginError, match="'bad-return'.*must return a mapping"):
        register_plugin(plugin_module("bad_return", difforge_register_rewards=lambda: ["x"]), "bad-return")


def test_core_works_with_every_plugin_disabled(fresh_plugins, monkeypatch, example_plugin_site):
    monkeypatch.syspath_prepend(str(example_plugin_site))
    monkeypatch.setenv("DIFFORGE_DISABLE_PLUGINS", "all")
    statuses = {s.distribution: s for s in difforge.plugins.plugin_statuses()}
    assert statuses["difforge-example-plugin"].status == "disabled"
    assert "brightness" not in get_registry("rewards")
    assert "ddim" in get_registry("samplers")


def test_example_plugin_is_found_loaded_and_conforms(fresh_plugins, monkeypatch, example_plugin_site):
    from difforge_testkit import check_plugin

    monkeypatch.syspath_prepend(str(example_plugin_site))
    registered = check_plugin("difforge-example-plugin")
    assert registered == {"adapters": ["bitfit"], "datasets": ["gradient-images"], "rewards": ["brightness"]}
    reward = get_registry("rewards").get("brightness")
    white, black = torch.ones(1, 3, 8, 8), -torch.ones(1, 3, 8, 8)
    assert reward(white).item() == pytest.approx(1.0) and reward(black).item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="reward 'brightness': expected images"):
        reward(torch.ones(3, 8, 8))


def test_example_plugin_dataset_trains(fresh_plugins, monkeypatch, example_plugin_site, tmp_path):
    monkeypatch.syspath_prepend(str(example_plugin_site))
    result = difforge.train({
        "model": {"build": "unet2d", "options": {"denoiser": {
            "sample_size": 16, "in_channels": 3, "out_channels": 3, "block_out_channels": [16, 32],
            "layers_per_block": 1, "down_block_types": ["DownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "UpBlock2D"], "norm_num_groups": 8}}},
        "data": {"dataset": "gradient-images", "options": {"count": 16, "resolution": 16}, "batch_size": 4},
        "train": {"steps": 3},
        "output": {"dir": str(tmp_path / "run"), "tensorboard": False, "progress": False},
    })
    assert result.steps == 3 and all(map(lambda x: x == x, result.losses))


def test_cli_lists_installed_third_party_plugin(example_plugin_site):
    proc = run_cli("plugins", pythonpath=[example_plugin_site])
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("difforge-example-plugin"))
    assert "loaded" in row and "rewards: brightness" in row and "datasets: gradient-images" in row
    assert "adapters: bitfit" in row
    assert "difforge-zoo" in proc.stdout and "not installed" in proc.stdout and "pip install" in proc.stdout


@pytest.fixture
def broken_site(tmp_path):
    site = tmp_path / "site"
    make_distribution(site, "difforge-broken", "raise RuntimeError('boom at import')\n", ["difforge>=0.1"])
    make_distribution(site, "difforge-from-future", "raise AssertionError('must not be imported')\n", ["difforge>=99"])
    make_distribution(
        site, "difforge-fine",
        "from difforge import hookimpl\n\n"
        "@hookimpl\ndef difforge_register_metrics():\n    return {'fine-metric': len}\n",
    )
    return site


def test_broken_and_incompatible_plugins_are_reported_not_fatal(broken_site):
    proc = run_cli("plugins", pythonpath=[broken_site])
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split(None, 4) for line in proc.stdout.splitlines()[1:]}
    _, version, status, _, notes = rows["difforge-broken"]
    assert (version, status, notes) == ("0.1.0", "failed", "RuntimeError: boom at import")
    assert rows["difforge-from-future"][2] == "incompatible"
    assert rows["difforge-from-future"][4].startswith("requires difforge>=99, this is difforge 0.1.0")
    assert rows["difforge-fine"][2] == "loaded" and rows["difforge-fine"][4] == "metrics: fine-metric"
    assert rows["difforge"][2] == "loaded"


def test_strict_mode_fails_naming_the_plugin(broken_site):
    proc = run_cli("--strict-plugins", "plugins", pythonpath=[broken_site])
    assert proc.returncode == 1
    assert "difforge-broken failed: RuntimeError: boom at import" in proc.stderr
    assert "difforge-from-future incompatible" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_disable_by_name(broken_site):
    proc = run_cli("plugins", pythonpath=[broken_site], env={"DIFFORGE_DISABLE_PLUGINS": "difforge-broken"})
    rows = {line.split()[0]: line.split(None, 4) for line in proc.stdout.splitlines()[1:]}
    assert rows["difforge-broken"][2] == "disabled" and rows["difforge-fine"][2] == "loaded"


def test_plugin_cli_command(fresh_plugins, capsys):
    import argparse

    from difforge.cli import Command, main

    def configure(p: argparse.ArgumentParser):
        p.add_argument("--name", default="world")

    def run(args):
        print(f"hello {args.name}")
        return 0

    register_plugin(plugin_module("greeter", difforge_register_commands=lambda: {
        "greet": Command("say hello", configure, run)}), "greeter")
    assert main(["greet", "--name", "plugin"]) == 0
    assert "hello plugin" in capsys.readouterr().out


def test_load_plugins_reports_load_time_and_registrations(monkeypatch, broken_site):
    monkeypatch.syspath_prepend(str(broken_site))
    pm = DifforgePluginManager()
    statuses = {s.distribution: s for s in load_plugins(pm)}
    assert statuses["difforge-fine"].registered == {"metrics": ["fine-metric"]}
    assert statuses["difforge-fine"].load_time_s > 0
    with pytest.raises(PluginError, match="difforge-broken"):
        load_plugins(DifforgePluginManager(), strict=True)


def test_builtin_jpeg_reward_and_pixel_metric_measure_what_they_say(fresh_plugins):
    flat = torch.zeros(2, 3, 32, 32)
    noise = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    reward = get_registry("rewards").get("jpeg-compressibility")
    assert (reward(flat) > reward(noise)).all()  # a flat image compresses to fewer bytes
    with pytest.raises(ValueError, match="reward 'jpeg-compressibility': expected float samples"):
        reward(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    metric = get_registry("metrics").get("pixel-statistics")
    assert metric(flat)["diversity"] == 0.0 and metric(noise)["diversity"] > 10


def test_example_plugin_adapter_type_keeps_the_protocol(fresh_plugins, monkeypatch, example_plugin_site,
                                                        tiny_sd_dir, tmp_path):
    """docs/adapters.md's plugin adapter (BitFit) passes the testkit's common adapter check (merge,
    unmerge, disable, save -> load, trainable set) and trains only bias offsets."""
    monkeypatch.syspath_prepend(str(example_plugin_site))
    from difforge import AdapterSet
    from difforge.backbone import load_backbone
    from difforge_testkit import check_adapter_type

    x, t, cond = torch.randn(1, 4, 8, 8), torch.tensor([500]), torch.randn(1, 16, 32)
    check_adapter_type("bitfit", lambda: load_backbone(tiny_sd_dir).denoiser, lambda unet: unet(x, t, cond).sample,
                       tmp_path, {"blocks": ["up_blocks"]})
    adapters = AdapterSet(load_backbone(tiny_sd_dir).denoiser)
    adapters.add("bitfit", "mine", blocks=["up_blocks"])
    params = adapters.trainable_parameters("mine")
    assert params and all(p.dim() == 1 for p in params)
