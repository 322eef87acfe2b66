"""Parameterisations, loss weighting, samplers (checked against diffusers' schedulers) and
backbone loading from local files."""

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    StableDiffusionPipeline,
)
from diffusers.training_utils import compute_snr

import difforge
from difforge.backbone import X0, Epsilon, FlowMatching, VPrediction, load_backbone, save_single_file
from difforge.errors import ConfigError
from difforge.sampling import (
    sample_ddim,
    sample_ddpm,
    sample_euler,
    sample_flow_euler,
    schedule_from_scheduler,
)

VP = [Epsilon, VPrediction, X0]


@pytest.mark.parametrize("cls", VP + [FlowMatching])
def test_target_and_x0_are_consistent(cls):
    scheduler = FlowMatchEulerDiscreteScheduler() if cls is FlowMatching else DDPMScheduler()
    param = cls(scheduler)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(6, 3, 4, 4, generator=g), torch.randn(6, 3, 4, 4, generator=g)
    t = param.sample_timesteps(6, g, "cpu")
    x_t = param.add_noise(x0, noise, t)
    # a perfect model outputs the target; converting it back must give x0
    torch.testing.assert_close(param.to_x0(param.target(x0, noise, t), x_t, t), x0, atol=2e-4, rtol=1e-4)


def test_vp_noising_matches_diffusers():
    scheduler = DDPMScheduler()
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    torch.testing.assert_close(Epsilon(scheduler).add_noise(x0, noise, t), scheduler.add_noise(x0, noise, t))
    torch.testing.assert_close(VPrediction(scheduler).target(x0, noise, t), scheduler.get_velocity(x0, noise, t))


@pytest.mark.parametrize("cls,prediction_type", [(Epsilon, "epsilon"), (VPrediction, "v_prediction"), (X0, "sample")])
def test_min_snr_weights_match_reference_formula(cls, prediction_type):
    """Min-SNR-γ (Hang et al. 2023) as used by diffusers' training scripts."""
    scheduler = DDPMScheduler()
    t = torch.tensor([1, 50, 300, 700, 999])
    gamma = 5.0
    snr = compute_snr(scheduler, t)
    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    expected = {"epsilon": clipped / snr, "v_prediction": clipped / (snr + 1), "sample": clipped}[prediction_type]
    torch.testing.assert_close(cls(scheduler).loss_weight(t, "min_snr", gamma), expected)
    assert torch.equal(cls(scheduler).loss_weight(t, "uniform", gamma), torch.ones(5))


def test_flow_min_snr_is_x0_space_weight():
    param = FlowMatching(FlowMatchEulerDiscreteScheduler())
    t = torch.tensor([0.1, 0.5, 0.9])
    # |x0 err| = t |v err|, SNR = ((1 - t) / t)^2
    expected = torch.minimum(((1 - t) / t) ** 2, torch.tensor(5.0)) * t**2
    torch.testing.assert_close(param.loss_weight(t, "min_snr", 5.0), expected)


def _toy_eps_model(scheduler):
    """An analytic denoiser (data ~ N(0.5, 0.1^2)) so samplers can be compared exactly."""
    ac = scheduler.alphas_cumprod

    def eps(x, t):
        a = ac[t.long()].reshape(-1, 1, 1, 1)
        mean, var = 0.5 * a.sqrt(), a * 0.01 + (1 - a)
        return (x - mean) * (1 - a).sqrt() / var

    def x0(x, t):
        a = ac[t.long()].reshape(-1, 1, 1, 1)
        return (x - (1 - a).sqrt() * eps(x, t)) / a.sqrt()

    return eps, x0


def _reference_loop(scheduler, eps, noise, steps, **step_kwargs):
    scheduler.set_timesteps(steps)
    x = noise * getattr(scheduler, "init_noise_sigma", 1.0)
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(x, t) if hasattr(scheduler, "scale_model_input") else x
        x = scheduler.step(eps(model_in, t.reshape(1).expand(len(x))), t, x, **step_kwargs).prev_sample
    return x


def test_ddim_matches_diffusers_scheduler():
    scheduler = DDIMScheduler(clip_sample=False, set_alpha_to_one=False)
    eps, x0 = _toy_eps_model(scheduler)
    noise = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    ours = sample_ddim(x0, noise, schedule_from_scheduler(scheduler, 20))
    torch.testing.assert_close(ours, _reference_loop(scheduler, eps, noise, 20), atol=1e-4, rtol=1e-4)


def test_ddpm_matches_diffusers_scheduler_with_same_noise():
    scheduler = DDPMScheduler(clip_sample=False)
    eps, x0 = _toy_eps_model(scheduler)
    noise = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    ours = sample_ddpm(x0, noise, schedule_from_scheduler(scheduler, 25), generator=torch.Generator().manual_seed(5))
    ref = _reference_loop(scheduler, eps, noise, 25, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_euler_matches_diffusers_scheduler():
    scheduler = EulerDiscreteScheduler(timestep_spacing="trailing")
    eps, x0 = _toy_eps_model(scheduler)
    noise = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    ours = sample_euler(x0, noise, schedule_from_scheduler(scheduler, 30))
    ref_scheduler = EulerDiscreteScheduler(timestep_spacing="trailing")
    torch.testing.assert_close(ours, _reference_loop(ref_scheduler, eps, noise, 30), atol=1e-4, rtol=1e-4)


def test_flow_euler_matches_diffusers_scheduler():
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    target = torch.full((2, 1, 4, 4), 0.25)

    def velocity(x, timestep):  # exact velocity field towards a point mass at `target`
        s = (timestep / 1000).reshape(-1, 1, 1, 1)
        return (x - target) / s

    def x0(x, timestep):
        return x - (timestep / 1000).reshape(-1, 1, 1, 1) * velocity(x, timestep)

    noise = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    ours = sample_flow_euler(x0, noise, schedule_from_scheduler(scheduler, 10))
    ref = _reference_loop(FlowMatchEulerDiscreteScheduler(shift=3.0), velocity, noise, 10)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours, target, atol=1e-4, rtol=1e-4)


def test_ddim_eta_one_is_stochastic_eta_zero_is_not():
    scheduler = DDIMScheduler(clip_sample=False)
    _, x0 = _toy_eps_model(scheduler)
    noise = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    sched = schedule_from_scheduler(scheduler, 10)
    a = sample_ddim(x0, noise, sched, eta=1.0, generator=torch.Generator().manual_seed(1))
    b = sample_ddim(x0, noise, sched, eta=1.0, generator=torch.Generator().manual_seed(2))
    c = sample_ddim(x0, noise, sched, eta=0.0, generator=torch.Generator().manual_seed(1))
    d = sample_ddim(x0, noise, sched, eta=0.0, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(a, b) and torch.equal(c, d)


def test_callback_sees_every_step_and_can_replace_x():
    scheduler = DDIMScheduler(clip_sample=False)
    _, x0 = _toy_eps_model(scheduler)
    noise = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    seen = []

    def callback(step, t, x, x0):
        seen.append(step)
        return torch.zeros_like(x) if step == 9 else None

    out = sample_ddim(x0, noise, schedule_from_scheduler(scheduler, 10), callback=callback)
    assert seen == list(range(10)) and torch.equal(out, torch.zeros_like(out))


def test_load_pipeline_directory_and_sample_with_cfg(tiny_sd_dir):
    backbone = load_backbone(tiny_sd_dir)
    assert backbone.conditioning == "text" and backbone.parameterization.name == "epsilon"
    images = backbone.sample(["a red circle", "a blue square"], num_steps=3, guidance_scale=3.0,
                             generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, 32, 32) and images.abs().max() <= 1
    # diffusers loads the very same directory offline
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_dir, local_files_only=True)
    out = pipe("a red circle", num_inference_steps=2, height=32, width=32, output_type="pt").images
    assert out.shape == (1, 3, 32, 32)


def test_sample_is_deterministic_given_seed(tiny_sd_dir):
    backbone = load_backbone(tiny_sd_dir)
    kw = dict(num_steps=3, sampler="euler", generator=None)
    a = backbone.sample(["a red circle"], **{**kw, "generator": torch.Generator().manual_seed(3)})
    b = backbone.sample(["a red circle"], **{**kw, "generator": torch.Generator().manual_seed(3)})
    assert torch.equal(a, b)


def test_parameterization_override_updates_scheduler(tiny_sd_dir, tmp_path):
    backbone = load_backbone(tiny_sd_dir, parameterization="v")
    assert backbone.scheduler.config.prediction_type == "v_prediction"
    backbone.save_pretrained(tmp_path / "v-model")
    assert load_backbone(tmp_path / "v-model").parameterization.name == "v"


def _unet2d_options():
    return {"denoiser": {"sample_size": 8, "in_channels": 3, "out_channels": 3, "block_out_channels": [16, 32],
                         "layers_per_block": 1, "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
                         "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 8}}


def test_single_file_safetensors_round_trip(tmp_path):
    backbone = difforge.get_registry("backbones").get("unet2d")(**_unet2d_options(), parameterization="x0")
    path = save_single_file(backbone, tmp_path / "model.safetensors")
    loaded = load_backbone(path)
    assert loaded.parameterization.name == "x0"
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([3, 700])
    torch.testing.assert_close(loaded.predict(x, t), backbone.predict(x, t), rtol=0, atol=0)


def test_model_directory_round_trip(tmp_path):
    backbone = difforge.get_registry("backbones").get("unet2d")(**_unet2d_options())
    backbone.save_pretrained(tmp_path / "m")
    loaded = load_backbone(tmp_path / "m")
    for a, b in zip(backbone.denoiser.state_dict().values(), loaded.denoiser.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    x, t = torch.randn(1, 3, 8, 8), torch.tensor([10])
    # weights are bitwise equal; diffusers may pick another attention kernel after from_pretrained
    torch.testing.assert_close(loaded.predict(x, t), backbone.predict(x, t), atol=1e-5, rtol=1e-5)


def test_bad_model_paths_give_clear_errors(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\x80\x04not a pickle you should load")
    with pytest.raises(ConfigError, match=r"weights.bin: only .safetensors single files can be loaded"):
        load_backbone(tmp_path / "weights.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty: not a diffusers pipeline"):
        load_backbone(tmp_path / "empty")


@pytest.mark.parametrize("builder,options,cond", [
    ("dit", {"denoiser": {"sample_size": 8, "in_channels": 3, "out_channels": 3, "num_layers": 2,
                          "num_attention_heads": 2, "attention_head_dim": 8, "patch_size": 2,
                          "num_embeds_ada_norm": 4, "norm_num_groups": 8}}, "class"),
    ("unet1d", {"denoiser": {  # the temporal U-Net of Janner et al. 2022, as in diffusers' tests
        "sample_size": 16, "in_channels": 6, "out_channels": 6, "block_out_channels": [8, 8, 16, 16],
        "time_embedding_type": "positional", "use_timestep_embedding": True, "flip_sin_to_cos": False,
        "freq_shift": 1.0, "out_block_type": "OutConv1DBlock", "mid_block_type": "MidResTemporalBlock1D",
        "down_block_types": ["DownResnetBlock1D"] * 4, "up_block_types": ["UpResnetBlock1D"] * 3,
        "act_fn": "swish"}}, "none"),
])
def test_other_denoisers_predict_and_sample(builder, options, cond):
    backbone = difforge.get_registry("backbones").get(builder)(**options)
    assert backbone.conditioning == cond
    shape = backbone.sample_shape()
    kwargs = {"class_labels": torch.tensor([0, 3])} if cond == "class" else {"num_samples": 2}
    out = backbone.sample(num_steps=2, generator=torch.Generator().manual_seed(0),
                          guidance_scale=2.0 if cond == "class" else 1.0, **kwargs)
    assert out.shape == (2, *shape)
