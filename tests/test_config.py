"""Configs: typed, strict, one-line errors naming file/override, key and value."""

import pytest

from difforge.config import load_config
from difforge.errors import ConfigError

GOOD = """
model: {build: unet2d}
data: {dataset: image-folder, options: {path: /tmp}}
adapter: {type: lora, options: {rank: 8}}
train: {steps: 10, lr: 1.0e-4}
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(GOOD)
    return path


def _error(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_good_config_and_overrides(config_file):
    config = load_config(config_file, ["train.lr=3e-4", "adapter.options.rank=16", "output.dir=out/x"])
    assert config.train.lr == 3e-4 and config.adapter.options["rank"] == 16 and config.output.dir == "out/x"
    assert config.train.steps == 10 and config.objective.name == "denoising"


def test_unknown_key_names_file_and_key(config_file, tmp_path):
    config_file.write_text(GOOD + "trian: {steps: 3}\n")
    assert _error(config_file) == f"{config_file}: trian: unknown key"


def test_unknown_nested_key(config_file):
    config_file.write_text(GOOD.replace("lr: 1.0e-4", "lr: 1.0e-4, learning_rate: 3"))
    assert _error(config_file) == f"{config_file}: train.learning_rate: unknown key (got 3)"


def test_bad_value_names_key_and_value(config_file):
    config_file.write_text(GOOD.replace("steps: 10", "steps: ten"))
    message = _error(config_file)
    assert message.startswith(f"{config_file}: train.steps: ") and "(got 'ten')" in message


def test_bad_override_names_the_override(config_file):
    message = _error(config_file, ["train.lr=-1"])
    assert message.startswith("--set train.lr: ") and "(got -1)" in message
    assert _error(config_file, ["train.nope=1"]) == "--set train.nope: unknown key (got 1)"
    assert "expected KEY=VALUE" in _error(config_file, ["train.lr"])


def test_unknown_component_names_lists_known(config_file):
    message = _error(config_file, ["adapter.type=lorra"])
    assert message.startswith(f"{config_file}: adapter.type: unknown adapter 'lorra' (did you mean 'lora'?)")


def test_component_options_are_validated_before_loading(config_file):
    expected = f"{config_file}: adapter.options.rnak: unknown key (got 4)"
    assert _error(config_file, ["adapter.options.rnak=4"]) == expected
    message = _error(config_file, ["data.dataset=image-folder", "objective.options.noise_offest=0.1"])
    assert message == f"{config_file}: objective.options.noise_offest: unknown key (got 0.1)"


def test_model_source_must_be_exactly_one(config_file):
    message = _error(config_file, ["model.pretrained=some/path"])
    assert "set exactly one of model.pretrained or model.build" in message


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {build: unet2d\n")
    assert _error(bad).startswith(f"{bad}: line ")
    assert _error(tmp_path / "missing.yaml") == f"{tmp_path / 'missing.yaml'}: no such config file"


def test_every_problem_is_reported_at_once_one_line_each(config_file):
    with pytest.raises(ConfigError) as info:
        load_config(config_file, ["train.lr=fast", "train.steps=0", "output.nonsense=1", "data.options.resolutoin=3"])
    lines = str(info.value).splitlines()
    assert len(lines) == 3 and all(line.startswith("--set ") for line in lines), lines
    assert {line.split(":")[0] for line in lines} == {"--set train.lr", "--set train.steps", "--set output.nonsense"}
    with pytest.raises(ConfigError, match=r"data.options.resolutoin: unknown key"):  # options once the sections pass
        load_config(config_file, ["data.options.resolutoin=3"])


def test_a_dataset_given_in_code_is_declared_with_null(config_file):
    from difforge.training import Trainer

    config = load_config(config_file, ["data.dataset=null", "data.options={}"])
    assert config.data.dataset is None
    with pytest.raises(ConfigError, match="data.dataset: null means the dataset is given in code"):
        Trainer(config)
