"""difforge-canvas mechanisms on synthetic denoisers and tiny inputs: MultiDiffusion's fusion,
StitchDiffusion's stitch block, Composite Diffusion's layouts, masks and scaffolding, the CLI."""

import json
import math

import pytest
import torch
from helpers import cli_error, run_cli

import difforge
from difforge.plugin_api import SamplingSchedule, UsageError
from difforge_canvas.composite import boundary_step, latent_masks, sample_composite
from difforge_canvas.layout import Layout, read_layout
from difforge_canvas.panorama import column_step, panorama_views, stitch_views, wrap_seam_error
from difforge_canvas.views import View, fuse, fused_denoise, sliding_views, view_conditions


def _schedule(steps: int = 10) -> SamplingSchedule:
    alphas = torch.linspace(0.02, 0.98, steps + 1)
    return SamplingSchedule(timesteps=torch.arange(steps, 0, -1) * 100, alphas=alphas[:-1], alphas_prev=alphas[1:])


def test_sliding_views_cover_the_canvas_with_the_last_window_flush():
    views = sliding_views(8, 30, (8, 8), 5)
    assert [int(v.columns[0]) for v in views] == [0, 5, 10, 15, 20, 22]
    assert all(v.size == (8, 8) for v in views)
    with pytest.raises(ValueError, match="does not fit"):
        sliding_views(8, 6, (8, 8), 2)


def test_fusing_the_crops_of_a_canvas_gives_the_canvas_back():
    canvas = torch.randn(2, 4, 8, 30)
    views = panorama_views(8, 30, (8, 8), 3, stitch=True)
    assert torch.allclose(fuse(torch.cat([v.crop(canvas) for v in views]), views, canvas.shape), canvas, atol=1e-6)


def test_fusion_is_the_per_pixel_weighted_mean_and_refuses_uncovered_pixels():
    rows = torch.arange(2)
    views = [View(rows, torch.arange(0, 3), weight=1.0), View(rows, torch.arange(1, 4), weight=3.0)]
    estimates = torch.cat([torch.zeros(1, 1, 2, 3), torch.ones(1, 1, 2, 3)])
    fused = fuse(estimates, views, (1, 1, 2, 4))
    assert fused[0, 0, 0].tolist() == [0.0, 0.75, 0.75, 1.0]
    with pytest.raises(ValueError, match="uncovered"):
        fuse(estimates[:1], views[:1], (1, 1, 2, 4))


def test_fusing_x0_then_stepping_equals_multidiffusions_fusion_of_each_views_ddim_step():
    """MultiDiffusion averages the views' next samples; a DDIM step is affine in (x_t, x0) with
    coefficients shared by all pixels, so fusing x0 first is the same step."""
    torch.manual_seed(0)
    weight = torch.randn(4, 4, 1, 1) * 0.3

    def window_denoise(x, t):
        return torch.tanh(torch.nn.functional.conv2d(x, weight)) + x.mean((2, 3), keepdim=True)

    views = panorama_views(6, 20, (6, 6), 2, stitch=True)
    x = torch.randn(1, 4, 6, 20)
    t = torch.tensor([500])
    alpha, alpha_prev = torch.tensor(0.3), torch.tensor(0.6)

    def ddim_step(x_t, x0):
        eps = (x_t - alpha.sqrt() * x0) / (1 - alpha).sqrt()
        return alpha_prev.sqrt() * x0 + (1 - alpha_prev).sqrt() * eps

    fused_x0 = fused_denoise(window_denoise, views)(x, t)
    per_view = torch.cat([ddim_step(v.crop(x), window_denoise(v.crop(x), t)) for v in views])
    assert torch.allclose(ddim_step(x, fused_x0), fuse(per_view, views, x.shape), atol=1e-5)


def test_the_stitch_block_joins_the_right_end_to_the_left_end_with_two_passes():
    (block,) = stitch_views(8, 40, (8, 8), 2)
    assert block.columns.tolist() == [36, 37, 38, 39, 0, 1, 2, 3]
    assert block.weight == 2.0
    assert len(panorama_views(8, 40, (8, 8), 2, stitch=True)) == len(sliding_views(8, 40, (8, 8), 2)) + 1


def test_the_stitch_block_closes_the_loop_of_a_smoothing_denoiser():
    """A denoiser whose clean estimate is its window blurred along the width smooths a canvas
    into slowly varying columns; the two ends of a plain MultiDiffusion canvas are never in one
    window and stay apart, with the stitch block they are smoothed as neighbours and the wrap
    seam is about one ordinary column step (same noise)."""

    def window_denoise(x, t):
        padded = torch.nn.functional.pad(x, (2, 2, 0, 0), mode="replicate")
        return torch.nn.functional.avg_pool2d(padded, (1, 5), stride=1)

    noise = torch.randn(8, 1, 8, 48, generator=torch.Generator().manual_seed(0))
    ddim = difforge.get_registry("samplers").get("ddim")
    seams = {}
    for stitch in (False, True):
        views = panorama_views(8, 48, (8, 8), 2, stitch=stitch)
        images = ddim(fused_denoise(window_denoise, views), noise, _schedule(20))
        seams[stitch] = wrap_seam_error(images).mean() / column_step(images).mean()
    # the seam in units of the canvas's own column-to-column step: 3.5 plain, 1.3 stitched
    assert seams[False] > 2.5
    assert seams[True] < 1.5


def test_view_conditions_repeat_per_view_and_canvas():
    conditions = torch.arange(6.0).reshape(2, 1, 3)  # two prompts shared by all canvases
    views = [View(torch.arange(1), torch.arange(1), condition=c) for c in (1, 0)]
    rows = view_conditions(conditions, views, batch=2)
    assert rows.tolist() == [[3, 4, 5], [3, 4, 5], [0, 1, 2], [0, 1, 2]]
    assert view_conditions(None, views, 2) is None


def _halves(**extra) -> Layout:
    return Layout(size=(4, 8), segments=[{"prompt": "left", "box": (0, 0, 4, 4)},
                                         {"prompt": "right", "box": (4, 0, 8, 4)}], **extra)


def test_mask_weighted_views_composite_each_segments_estimate_inside_it():
    masks = latent_masks(_halves().masks(), 2)
    assert masks.shape == (2, 2, 4) and torch.equal(masks.sum(0), torch.ones(2, 4))
    views = [View(torch.arange(2), torch.arange(4), weight=m, condition=i) for i, m in enumerate(masks)]
    estimates = torch.cat([torch.full((1, 1, 2, 4), 5.0), torch.full((1, 1, 2, 4), -5.0)])
    fused = fuse(estimates, views, (1, 1, 2, 4))
    assert fused[0, 0].tolist() == [[5.0, 5.0, -5.0, -5.0]] * 2


def test_boundary_step_reads_only_pixels_across_segments():
    images = torch.zeros(1, 3, 4, 8)
    images[..., 4:] = 1.0
    assert boundary_step(images, _halves()).item() == pytest.approx(1.0)
    images[..., :, 1] = 7.0  # inside the left segment
    assert boundary_step(images, _halves()).item() == pytest.approx(1.0)


def test_layout_files_boxes_masks_and_their_errors(tmp_path):
    from PIL import Image

    mask = torch.zeros(4, 8, dtype=torch.uint8)
    mask[:, 4:] = 255
    Image.fromarray(mask.numpy()).save(tmp_path / "right.png")
    good = tmp_path / "layout.yaml"
    good.write_text("size: [4, 8]\nsegments:\n  - {prompt: a, box: [0, 0, 4, 4]}\n  - {prompt: b, mask: right.png}\n")
    layout = read_layout(good)
    assert layout.prompts == ["a", "b"]
    assert layout.boxes() == [(0, 0, 4, 4), (4, 0, 8, 4)]

    head = "size: [4, 8]\nsegments:\n  - "
    cases = {
        head + "{prompt: a, box: [0, 0, 4, 4]}\n": "bad.yaml: 16 pixels of the 4x8 canvas are in no segment",
        head + "{prompt: a, box: [0, 0, 4, 4], mask: right.png}\n": "bad.yaml: segments.0: Value error, give exactly",
        head + "{prompt: a, box: [0, 0, 9, 4]}\n": r"bad.yaml: segments\[0\].box \[0, 0, 9, 4\] leaves",
        "size: [4, 6]\nsegments:\n  - {prompt: a, mask: right.png}\n":
            r"bad.yaml: segments\[0\].mask .*right.png: 4x8 pixels, the canvas is 4x6",
        head + "{prompt: a, mask: missing.png}\n": r"bad.yaml: segments\[0\].mask .*missing.png: not a readable image",
        "size: [4, 8]\nsegment: []\n": "segments: Field required",
    }
    for text, message in cases.items():
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(UsageError, match=message) as caught:
            read_layout(bad).masks()
        assert "\n" not in str(caught.value)


@pytest.fixture(scope="module")
def shapes():
    return difforge.load("shapes-sd-tiny").eval()


def test_scaffolding_replaces_the_outside_of_each_segment_only_in_its_phase(shapes, monkeypatch):
    seen = []
    guided_denoise = shapes.guided_denoise

    def recording(cond, scale, batch, **kw):
        def denoise(x, t):
            seen.append(x.clone())
            return torch.zeros_like(x)
        assert len(cond) == batch == 2
        return denoise

    monkeypatch.setattr(shapes, "guided_denoise", recording)
    layout = Layout(size=(32, 64), segments=[{"prompt": "a red circle", "box": (0, 0, 32, 32)},
                                             {"prompt": "a blue square", "box": (32, 0, 64, 32)}])
    sample_composite(shapes, layout, scaffold_fraction=0.4, num_steps=5, generator=torch.Generator().manual_seed(0))
    assert len(seen) == 5
    for step, crops in enumerate(seen):
        left_view, right_view = crops
        scaffolded = step < 2
        # the left segment's view keeps the canvas on the left; its right half is the canvas only when harmonising
        assert torch.equal(left_view[:, :, :16], right_view[:, :, :16]) is not scaffolded
        assert torch.equal(left_view[:, :, 16:], right_view[:, :, 16:]) is not scaffolded
    monkeypatch.setattr(shapes, "guided_denoise", guided_denoise)


def test_canvas_methods_refuse_bad_sizes_and_conditionings_in_one_line(shapes):
    from difforge_canvas.panorama import sample_panorama

    with pytest.raises(UsageError, match="width 127 is not a multiple of the model's 2-pixel latent cell"):
        sample_panorama(shapes, ["a red circle"], width=127)
    with pytest.raises(UsageError, match="at least the model's 16x16 window high and 1.5 windows wide"):
        sample_panorama(shapes, ["a red circle"], width=32)
    with pytest.raises(UsageError, match="text-conditioned; give prompts"):
        sample_panorama(shapes, None, width=64)
    with pytest.raises(UsageError, match="scaffold colour 'nocolour'"):
        sample_composite(shapes, Layout(size=(32, 32), segments=[{"prompt": "a", "box": (0, 0, 32, 32)}]),
                         scaffold_color="nocolour", num_steps=1)


def test_panorama_and_compose_commands(tmp_path, capsys):
    """``compose`` in a subprocess, as a user runs it; the other commands in-process."""
    from difforge.cli import main

    layout = tmp_path / "layout.yaml"
    layout.write_text("size: [32, 64]\nsegments:\n  - {prompt: a red circle, box: [0, 0, 32, 32]}\n"
                      "  - {prompt: a blue square, box: [32, 0, 64, 32]}\n")
    done = run_cli("compose", str(layout), "--model", "shapes-sd-tiny", "--steps", "2", "--reward", "shapes-alignment",
                   "--out", str(tmp_path / "c.png"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c.png").exists() and "segment_scores" in (tmp_path / "c.json").read_text()
    assert main(["panorama", "--model", "shapes-sd-tiny", "--prompt", "a red circle", "--width", "64", "--steps", "2",
                 "--out", str(tmp_path / "p.png")]) == 0
    assert "wrap_seam_error" in (tmp_path / "p.json").read_text()
    assert main(["highres", "--model", "shapes-sd-tiny", "--prompt", "a red circle", "--steps", "3",
                 "--out", str(tmp_path / "h.png")]) == 0
    report = json.loads((tmp_path / "h.json").read_text())
    assert report == {"method": "diffusehigh", "attention_scaling": True, "nfe": 5}
    layout.write_text("size: [32, 64]\nsegments: []\n")
    error = cli_error(capsys, "compose", str(layout), "--model", "no-such-model", "--out", str(tmp_path / "x.png"))
    assert f"layout {layout}: segments: List should have at least 1 item" in error


def test_haar_structure_guidance_takes_the_low_band_of_the_reference_and_keeps_the_rest():
    from difforge_canvas.highres import haar_low_pass, structure_guidance

    x0, reference = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    guided = structure_guidance(x0, reference)
    assert torch.allclose(haar_low_pass(guided), haar_low_pass(reference), atol=1e-6)
    assert torch.allclose(guided - haar_low_pass(guided), x0 - haar_low_pass(x0), atol=1e-6)
    assert torch.allclose(haar_low_pass(haar_low_pass(x0)), haar_low_pass(x0), atol=1e-6)


def test_entropy_scaled_attention_scales_self_attention_queries_inside_the_block_only(shapes):
    from difforge_canvas.highres import entropy_scaled_attention

    attention = shapes.denoiser.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    tokens = torch.randn(1, 1024, attention.to_q.in_features)
    plain = attention.to_q(tokens)
    with entropy_scaled_attention(shapes.denoiser, area_ratio=4) as layers:
        scaled = attention.to_q(tokens)
        cross = shapes.denoiser.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_q(tokens)
    assert layers == 7  # shapes-sd-tiny's self-attention layers
    assert torch.allclose(scaled, plain * (math.log(1024) / math.log(256)) ** 0.5, atol=1e-6)
    assert torch.equal(cross, shapes.denoiser.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_q(tokens))
    assert torch.equal(attention.to_q(tokens), plain)


def test_diffusehigh_keeps_the_native_samples_structure_and_counts_its_evaluations(shapes):
    from difforge_canvas.highres import sample_high_resolution

    prompts = ["a red circle on the left and a blue square on the right", "a green triangle"]
    result = sample_high_resolution(shapes, prompts, num_steps=8, guidance_scale=4,
                                    generator=torch.Generator().manual_seed(0))
    naive = sample_high_resolution(shapes, prompts, structure=False, num_steps=8, guidance_scale=4,
                                   generator=torch.Generator().manual_seed(0))
    assert result.images.shape == naive.images.shape == (2, 3, 64, 64) and result.base.shape == (2, 3, 32, 32)
    assert result.nfe == 8 + 5 and naive.nfe == 8  # 5 of the 8 steps lie at or below 0.6 T

    def distance_from_base(images):
        return (torch.nn.functional.interpolate(images, size=(32, 32), mode="area") - result.base).abs().mean()

    assert distance_from_base(result.images) < 0.5 * distance_from_base(naive.images)
    with pytest.raises(UsageError, match="scale must be a power of 2"):
        sample_high_resolution(shapes, prompts, scale=3)


def _cow_condition() -> tuple[torch.Tensor, tuple[int, int]]:
    """A red 8 x 8 patch on the shapes world's background, for the left of the canvas."""
    patch = torch.tensor([236, 236, 236]).float().reshape(3, 1, 1).expand(3, 8, 8).clone() / 127.5 - 1
    patch[:, 2:6, 2:6] = (torch.tensor([215, 38, 38]).float() / 127.5 - 1).reshape(3, 1, 1)
    return patch, (4, 12)


def test_cow_cycles_between_its_levels_and_counts_its_evaluations(shapes, monkeypatch):
    from difforge_canvas.cow import cow_nfe, sample_cow

    seen = []
    monkeypatch.setattr(shapes, "guided_denoise", lambda cond, scale, batch, **kw:
                        lambda x, t: seen.append(int(t.flatten()[0])) or torch.zeros_like(x))
    condition, position = _cow_condition()
    result = sample_cow(shapes, ["a red circle"], condition, position=position, num_steps=10, cycles=3,
                        cycle_start=0.8, cycle_end=0.4, generator=torch.Generator().manual_seed(0))
    timesteps = shapes.scheduler.timesteps.tolist()  # the 10-step schedule the call set
    cycle = [t for t in timesteps if 400 < t <= 800]
    assert seen == cycle * 3 + [t for t in timesteps if t <= 400]
    assert result.nfe == len(seen) == cow_nfe(shapes, 10)
    assert result.mask.sum() == 64 and result.mask[12:20, 4:12].all()


def test_cow_keeps_the_condition_one_way_and_sdedit_does_not(shapes):
    """With the region reset to the end, the condition's latents come out as the seed's whatever the
    prompt (nothing flows into the region), while the rest follows the prompt and the condition
    (it flows out); SDEdit from the seed (never reset) lets the region change."""
    from difforge_canvas.cow import sample_cow

    condition, position = _cow_condition()

    def run(prompt: str, patch: torch.Tensor, **options) -> torch.Tensor:
        return sample_cow(shapes, [prompt], patch, position=position, num_steps=6, guidance_scale=4.0,
                          generator=torch.Generator().manual_seed(0), **options).latents[0]

    inside = (slice(None), slice(6, 10), slice(2, 6))  # the latent cells of the 8 x 8 patch at (4, 12)
    red, blue = run("a red circle on the left", condition), run("a blue square on the right", condition)
    assert torch.equal(red[inside], blue[inside])
    assert not torch.allclose(red[:, :, 8:], blue[:, :, 8:], atol=1e-2)
    other = run("a red circle on the left", condition.flip(0))  # a blue patch in the same place
    assert not torch.allclose(red[:, :, 8:], other[:, :, 8:], atol=1e-3)
    sdedit = run("a blue square on the right", condition, cycles=1, preserve_until=1.0)
    assert not torch.allclose(sdedit[inside], blue[inside], atol=1e-2)


def test_cow_refuses_bad_options_and_conditions_in_one_line(shapes, tmp_path, capsys):
    from difforge_canvas.cow import sample_cow

    condition, _ = _cow_condition()
    with pytest.raises(UsageError, match="cow: needs cycles >= 1"):
        sample_cow(shapes, ["a"], condition, cycle_start=0.3, cycle_end=0.5)
    with pytest.raises(UsageError, match=r"cow: a 8x8 condition at \(left 28, top 0\) leaves the 32x32 canvas"):
        sample_cow(shapes, ["a"], condition, position=(28, 0))
    with pytest.raises(UsageError, match="cow: background 'nocolour' is not a colour"):
        sample_cow(shapes, ["a"], condition, background="nocolour")
    with pytest.raises(UsageError, match="cow: no step of a 2-step schedule lies between"):
        sample_cow(shapes, ["a"], condition, num_steps=2, cycle_start=0.45, cycle_end=0.4)
    (tmp_path / "bad.png").write_text("not an image")
    error = cli_error(capsys, "cow", "--model", "shapes-sd-tiny", "--condition", str(tmp_path / "bad.png"),
                      "--prompt", "a red circle")
    assert f"error: cow: condition {tmp_path / 'bad.png'}: not an image file Pillow can read" in error


def test_cow_command(tmp_path):
    from PIL import Image

    from difforge.cli import main

    condition, _ = _cow_condition()
    Image.fromarray(((condition + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()).save(tmp_path / "patch.png")
    assert main(["cow", "--model", "shapes-sd-tiny", "--condition", str(tmp_path / "patch.png"), "--position", "4",
                 "12", "--prompt", "a blue square on the right", "--steps", "5", "--out", str(tmp_path / "c.png")]) == 0
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["method"] == "cow" and report["nfe"] > 5 and len(report["condition_psnr"]) == 1
    assert (tmp_path / "c.png").exists()
