"""Optimal boundary conditions (difforge-solvers' ``obc`` sampler): the mechanism on a tiny model,
the search, the file and the commands. The effect on the shapes world is in test_boundary_effects.py."""

import pytest
import torch
from helpers import brightness_reward, cli_error, run_cli

import difforge
from difforge.errors import UsageError
from difforge.plugin_api import schedule_from_scheduler
from difforge_solvers.boundary import load_boundary, sample_from_boundary, save_boundary, search_boundary

PROMPTS = ["a red circle", "a blue square", "a green triangle"]


@pytest.fixture(scope="module")
def tiny(tiny_sd_dir):
    return difforge.load(tiny_sd_dir).eval()


def test_every_row_starts_from_the_boundary_and_the_base_sampler_solves_from_it(tiny):
    shape = tiny.sample_shape()
    boundary = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    schedule = schedule_from_scheduler(tiny.scheduler, 4)
    denoise = tiny.guided_denoise(tiny.encode_prompts(PROMPTS), 2.0, len(PROMPTS))
    ignored = torch.randn((len(PROMPTS), *shape), generator=torch.Generator().manual_seed(2))
    ddim = difforge.get_registry("samplers").get("ddim")
    with torch.no_grad():
        got = sample_from_boundary(denoise, ignored, schedule, boundary=boundary)
        want = ddim(denoise, boundary.expand(len(PROMPTS), *shape).clone(), schedule)
    torch.testing.assert_close(got, want)
    with pytest.raises(UsageError, match=r"has shape \(2,"):
        sample_from_boundary(denoise, ignored, schedule, boundary=torch.zeros(2, 2, 2))
    with pytest.raises(UsageError, match="'ddpm' adds noise"):
        sample_from_boundary(denoise, ignored, schedule, boundary=boundary, base="ddpm")


def test_the_search_keeps_the_candidate_with_the_best_mean_reward(tiny):
    search = search_boundary(tiny, PROMPTS, brightness_reward(), candidates=4, num_steps=3, guidance_scale=2.0,
                             generator=torch.Generator().manual_seed(0))
    assert len(search.scores) == 4 and search.scores[search.chosen] == max(search.scores)
    pool = torch.randn((4, *tiny.sample_shape()), generator=torch.Generator().manual_seed(0))
    assert torch.equal(search.boundary, pool[search.chosen])
    images = tiny.sample(PROMPTS, num_steps=3, guidance_scale=2.0, sampler="obc", boundary=search.boundary)
    assert brightness_reward()(images, PROMPTS).mean().item() == pytest.approx(max(search.scores), abs=1e-5)


def test_boundary_file_round_trip_and_errors(tiny, tmp_path):
    search = search_boundary(tiny, PROMPTS[:1], brightness_reward(), candidates=2, num_steps=2,
                             generator=torch.Generator().manual_seed(0))
    path = save_boundary(tmp_path / "bc.safetensors", search, model="tiny", steps=2)
    assert torch.equal(load_boundary(path), search.boundary)
    with pytest.raises(UsageError, match="no such file"):
        load_boundary(tmp_path / "none.safetensors")
    from safetensors.torch import save_file

    save_file({"other": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UsageError, match="holds no 'boundary' tensor"):
        load_boundary(tmp_path / "other.safetensors")


def test_search_module_and_sample_command(tiny_sd_dir, tmp_path, capsys):
    """The search module and ``sample --sampler obc`` in subprocesses, as a user runs them; their
    error paths in-process."""
    import subprocess
    import sys

    from difforge_solvers.boundary import main

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "bc.safetensors"
    proc = subprocess.run([sys.executable, "-m", "difforge_solvers.boundary", "--model", str(tiny_sd_dir),
                           "--prompts", str(prompts), "--reward", "colourfulness", "--candidates", "2",
                           "--steps", "2", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.is_file() and '"chosen"' in proc.stdout
    capsys.readouterr()
    assert main(["--model", str(tiny_sd_dir), "--prompts", str(prompts), "--reward", "bogus",
                 "--out", str(tmp_path / "x.safetensors")]) == 1
    bad = capsys.readouterr().err
    assert bad.strip().count("\n") == 0 and "bogus" in bad
    grid = tmp_path / "obc.png"
    result = run_cli("sample", "--model", str(tiny_sd_dir), "--prompt", "a red circle", "--steps", "2",
                     "--sampler", "obc", "--sampler-option", f"boundary={out}", "--out", str(grid))
    assert result.returncode == 0 and grid.stat().st_size > 0, result.stderr
    assert "no such file" in cli_error(capsys, "sample", "--model", str(tiny_sd_dir), "--prompt", "a red circle",
                                       "--steps", "2", "--sampler", "obc", "--sampler-option",
                                       f"boundary={tmp_path / 'none.safetensors'}", "--out", str(tmp_path / "m.png"))
