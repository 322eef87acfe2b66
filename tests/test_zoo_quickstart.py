"""The quickstart (README's main command): DreamBooth + LoRA teaches shapes-sd-tiny a shape it
never saw, measured by the analytic scorer; the class prior stays within tolerance.

The full measurement is the adapter benchmark's table 4 (benchmarks/results/dreambooth_prior.json:
the quickstart's task, 300 steps, 32 samples per prompt, 3 training seeds, with and without the
prior loss). The suite checks the stored rows hold the quickstart's claim, runs the quickstart
command shortened (its files, report and metrics), and checks that the shortened run trains
exactly like the stored seed-0 run did (its first losses)."""

import json

import pytest
from helpers import ROOT

from difforge_zoo.quickstart import run_quickstart

PRIOR_RESULTS = ROOT / "benchmarks" / "results" / "dreambooth_prior.json"
#: required per stored seed: concept fidelity over the base model (measured: +0.59 to +0.75)
FIDELITY_GAIN = 0.4
#: the quickstart's own tolerance for the class prior (difforge_zoo.quickstart)
PRIOR_TOLERANCE = 0.15


@pytest.fixture(scope="module")
def stored():
    return json.loads(PRIOR_RESULTS.read_text())


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory, stored):
    out = tmp_path_factory.mktemp("quickstart")
    steps = len(stored["prior_preservation"]["rows"][0]["loss_head"])
    return out, run_quickstart(out, samples=2, overrides=[f"train.steps={steps}", "output.sample_every=5",
                                                          "output.checkpoint_every=5"])


def test_quickstart_writes_lora_grid_and_metrics(quickstart):
    out, metrics = quickstart
    assert (out / "run" / "adapter" / "pytorch_lora_weights.safetensors").exists()
    assert (out / "before_after.png").exists()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["instance_prompt"] == "a red sks circle" and saved["samples_per_prompt"] == 2
    assert set(saved["dreambooth"]) == {"concept_fidelity", "class_prior_accuracy"}


def test_quickstart_report_shows_the_labelled_grid_and_the_metrics(quickstart):
    out, metrics = quickstart
    report = out / "run" / "report.html"
    assert metrics["paths"]["report"] == str(report)
    page = report.read_text()
    assert "Before and after" in page and "concept_fidelity" in page and "class_prior_accuracy" in page
    assert page.count("<img src='data:image/png;base64,") == 1 + 2  # before/after + a grid every 5 steps


def test_the_stored_quickstart_runs_teach_the_concept_and_keep_the_class_prior(stored):
    """Every stored seed of the quickstart's task (prior loss weight 1): the concept is learned
    and the class prior stays within the quickstart's tolerance of the base model's."""
    table = stored["prior_preservation"]
    base = table["base"]
    assert base["concept_fidelity"] <= 0.1  # the base model has never seen a heart
    with_prior = [r for r in table["rows"] if r["prior_loss_weight"] == 1.0]
    assert sorted(r["seed"] for r in with_prior) == [0, 1, 2] and stored["samples"] >= 32
    for row in with_prior:
        assert row["concept_fidelity"] >= base["concept_fidelity"] + FIDELITY_GAIN, row
        assert abs(row["class_prior"] - base["class_prior"]) <= PRIOR_TOLERANCE, row


def test_the_quickstart_trains_exactly_like_the_stored_run(quickstart, stored):
    """The shortened quickstart's losses are the stored seed-0 run's first losses: the stored
    table measured the quickstart as this code trains it."""
    out, _ = quickstart
    row = next(r for r in stored["prior_preservation"]["rows"] if (r["seed"], r["prior_loss_weight"]) == (0, 1.0))
    losses = json.loads((out / "run" / "history.json").read_text())["loss"]
    assert losses == pytest.approx(row["loss_head"], rel=1e-3), (losses, row["loss_head"])
