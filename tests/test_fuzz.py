"""Property-based fuzzing of what users type and write: config files, ``--set`` overrides, and
the captions/metadata and preference-pairs readers. Whatever the input, the result is a valid
object or one of difforge's own errors with a message of one line per problem; never another
exception. The examples are derandomized (the same in every run, so CI is reproducible);
``DIFFORGE_FUZZ_EXAMPLES=5000 DIFFORGE_FUZZ_RANDOM=1`` explores further."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from difforge.config import RunConfig, load_config
from difforge.errors import ConfigError, DataError
from difforge.training.data import ImageFolderDataset
from difforge.training.preferences import PreferencePairsDataset

SETTINGS = settings(max_examples=int(os.environ.get("DIFFORGE_FUZZ_EXAMPLES", 300)), deadline=None,
                    derandomize=os.environ.get("DIFFORGE_FUZZ_RANDOM") is None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

BASE = {"model": {"build": "unet2d"}, "data": {"dataset": "image-folder", "options": {"path": "images"}},
        "train": {"steps": 10, "lr": 1e-4}, "output": {"dir": "out"}}
KEYS = ["model", "model.build", "model.pretrained", "model.options", "model.parameterization", "data",
        "data.dataset", "data.options", "data.options.path", "data.options.resolution", "data.batch_size",
        "data.caption_dropout", "adapter", "adapter.type", "adapter.options", "adapter.options.rank", "objective",
        "objective.name", "objective.options", "train", "train.steps", "train.lr", "train.lr_scheduler",
        "train.adam_betas", "train.ema", "train.ema.decay", "train.on_nan", "train.seed", "output",
        "output.keep_last", "output.sample_prompts", "output.sample_metrics", "nonsense", "train.nonsense"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=8)


def assert_difforge_error_lines(message: str, source: str) -> None:
    lines = message.splitlines()
    assert lines, "an empty error message"
    for line in lines:
        assert line.startswith((source, "--set")), line


def set_key(data: dict, dotted: str, value) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


@SETTINGS
@given(changes=st.lists(st.tuples(st.sampled_from(KEYS), values), max_size=4))
def test_config_mutations_validate_or_fail_with_one_line_per_problem(changes):
    data = json.loads(json.dumps(BASE))
    for key, value in changes:
        set_key(data, key, value)
    try:
        config = load_config(data=data)
    except ConfigError as exc:
        assert_difforge_error_lines(str(exc), "<config>")
    else:
        assert isinstance(config, RunConfig)
        assert config.train.steps >= 1 and config.data.batch_size >= 1
        assert math.isfinite(config.train.lr) and config.train.lr > 0


@SETTINGS
@given(overrides=st.lists(st.text(max_size=30), max_size=4))
def test_any_set_override_is_applied_or_one_line(overrides):
    try:
        load_config(data=json.loads(json.dumps(BASE)), overrides=overrides)
    except ConfigError as exc:
        assert_difforge_error_lines(str(exc), "<config>")


@SETTINGS
@given(text=st.binary(max_size=200))
def test_any_config_file_bytes_load_or_fail_with_one_line_naming_the_file(text, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(text)
    try:
        load_config(path)
    except ConfigError as exc:
        assert_difforge_error_lines(str(exc), str(path))


json_lines = st.lists(st.one_of(st.text(max_size=40), values.map(json.dumps),
                                st.fixed_dictionaries({"file_name": st.sampled_from(["a.png", "b.png", 3]),
                                                       "text": st.one_of(st.text(max_size=10), st.none())},
                                                      ).map(json.dumps)), max_size=5)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz-images")
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8), (200, 10, 10)).save(folder / name)
    return folder


@SETTINGS
@given(lines=json_lines)
def test_metadata_jsonl_reads_or_fails_naming_the_file_and_line(lines, image_folder):
    meta = image_folder / "metadata.jsonl"
    meta.write_text("\n".join(lines), encoding="utf-8")
    try:
        dataset = ImageFolderDataset(str(image_folder), resolution=8)
    except DataError as exc:
        assert str(exc).startswith(str(meta)) and len(str(exc).splitlines()) == 1
    else:
        assert all(isinstance(dataset.caption_for(f), str) for f in dataset.files)


pair_rows = st.lists(st.one_of(
    st.text(max_size=30), values.map(json.dumps),
    st.fixed_dictionaries({"caption": st.one_of(st.text(max_size=10), st.integers()),
                           "chosen": st.sampled_from(["a.png", "b.png", 7, None]),
                           "rejected": st.sampled_from(["a.png", "b.png", "missing.png"])},
                          optional={"caption_rejected": st.one_of(st.text(max_size=5), st.none())}).map(json.dumps)),
    max_size=5)


@SETTINGS
@given(rows=pair_rows)
def test_pairs_jsonl_reads_or_fails_with_one_line(rows, image_folder):
    pairs = image_folder / "pairs.jsonl"
    pairs.write_text("\n".join(rows), encoding="utf-8")
    try:
        dataset = PreferencePairsDataset(path=str(pairs), resolution=8)
    except DataError as exc:
        assert len(str(exc).splitlines()) == 1 and str(pairs) in str(exc)
        return
    for index in range(len(dataset)):
        try:
            item = dataset[index]
        except DataError as exc:  # a row naming an image that is not there
            assert "missing.png" in str(exc) and len(str(exc).splitlines()) == 1
        else:
            assert item["sample_chosen"].shape == (3, 8, 8)
