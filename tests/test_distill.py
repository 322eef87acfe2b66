"""Latent consistency distillation (difforge-distill's ``lcm`` objective) and sampling a model that
takes the guidance scale as an input. The effect on the shapes world (the embedded
shapes-lcm-tiny against its teacher at the same step count) is in test_zoo_model.py."""

import pytest
import torch
from safetensors.torch import load_file

import difforge
from difforge.errors import ConfigError
from difforge.plugin_api import guidance_scale_embedding
from difforge_distill.lcm import LCMObjective, LCMOptions, with_guidance_embedding


def _config(tiny_sd_dir, toy_images, out, *, steps=4, resume=None, options=None, adapter=None):
    return {"model": {"pretrained": str(tiny_sd_dir)},
            "data": {"dataset": "image-folder", "options": {"path": str(toy_images), "resolution": 32},
                     "batch_size": 2},
            "adapter": adapter,
            "objective": {"name": "lcm", "options": {"num_ddim_timesteps": 10, "guidance_embedding_dim": 16,
                                                     **(options or {})}},
            "train": {"steps": steps, "lr": 1e-3, "seed": 0, "resume": resume},
            "output": {"dir": str(out), "checkpoint_every": 2, "keep_last": 5, "tensorboard": False,
                       "progress": False}}


def test_the_guidance_embedding_is_diffusers_lcm_pipelines():
    from diffusers import LatentConsistencyModelPipeline

    w = torch.tensor([0.0, 1.5, 3.0, 6.0])
    expected = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, w, embedding_dim=256)
    assert torch.allclose(guidance_scale_embedding(w, 256), expected, atol=1e-6)


def test_the_student_starts_as_the_teacher_whatever_guidance_it_is_given(tiny_sd_dir):
    teacher = difforge.load_backbone(tiny_sd_dir).denoiser.eval()
    student = with_guidance_embedding(teacher, 16).eval()
    assert student.config.time_cond_proj_dim == 16 and teacher.config.time_cond_proj_dim is None
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = torch.randn(2, 77, 32, generator=torch.Generator().manual_seed(1))[:, : teacher.config.cross_attention_dim]
    t = torch.tensor([10, 500])
    with torch.no_grad():
        expected = teacher(x, t, encoder_hidden_states=cond).sample
        got = student(x, t, encoder_hidden_states=cond,
                      timestep_cond=guidance_scale_embedding(torch.tensor([3.0, 6.0]), 16)).sample
    assert torch.equal(expected, got)


def test_a_distilled_model_samples_with_lcms_scheduler_and_one_call_per_step(tiny_sd_dir, toy_images, tmp_path):
    from diffusers import LCMScheduler

    result = difforge.train(_config(tiny_sd_dir, toy_images, tmp_path / "run"))
    assert len(result.losses) == 4 and all(torch.isfinite(torch.tensor(result.losses)))
    model = difforge.load_backbone(result.model_path)
    assert isinstance(model.scheduler, LCMScheduler) and model.embeds_guidance
    assert model.scheduler.config.original_inference_steps == 10
    calls = []
    model.denoiser.register_forward_hook(lambda module, args, kwargs, out: calls.append(
        (len(args[0]), kwargs.get("timestep_cond"))), with_kwargs=True)
    model.sample(["a", "b", "c"], num_steps=2, sampler="consistency", guidance_scale=4.0,
                 generator=torch.Generator().manual_seed(0))
    assert [n for n, _ in calls] == [3, 3]  # no unconditional half: the scale is an input
    assert torch.allclose(calls[0][1], guidance_scale_embedding(torch.full((3,), 3.0), 16))
    # a different scale is a different model input, hence different samples
    first = model.sample(["a"], num_steps=2, sampler="consistency", guidance_scale=2.0,
                         generator=torch.Generator().manual_seed(0))
    second = model.sample(["a"], num_steps=2, sampler="consistency", guidance_scale=7.0,
                          generator=torch.Generator().manual_seed(0))
    assert not torch.equal(first, second)


def test_training_moves_the_guidance_embedding_and_the_target_follows_the_student(tiny_sd_dir, toy_images, tmp_path):
    from difforge.config import RunConfig

    trainer = difforge.Trainer(RunConfig.model_validate(_config(tiny_sd_dir, toy_images, tmp_path / "run", steps=3)))
    objective = trainer.objective
    assert isinstance(objective, LCMObjective)
    trainer.fit()
    projection = trainer.backbone.denoiser.time_embedding.cond_proj.weight
    assert projection.abs().sum() > 0  # learned from zero
    student = dict(trainer.backbone.denoiser.named_parameters())
    target = dict(objective.target.named_parameters())
    teacher = dict(objective.teacher.named_parameters())
    name = "conv_in.weight"
    # the target (EMA 0.95 of the student, updated after steps 1 and 2) lies between teacher and student
    assert not torch.equal(target[name], student[name]) and not torch.equal(target[name], teacher[name])
    assert (target[name] - teacher[name]).norm() < (student[name] - teacher[name]).norm()
    assert objective.target_step == 2


def test_a_resumed_distillation_matches_the_uninterrupted_one(tiny_sd_dir, toy_images, tmp_path):
    full = difforge.train(_config(tiny_sd_dir, toy_images, tmp_path / "full"))
    middle = tmp_path / "full" / "checkpoint-2"
    resumed = difforge.train(_config(tiny_sd_dir, toy_images, tmp_path / "resumed", resume=str(middle)))
    assert resumed.losses == full.losses
    expected = load_file(str(tmp_path / "full" / "checkpoint-4" / "trainable.safetensors"))
    got = load_file(str(tmp_path / "resumed" / "checkpoint-4" / "trainable.safetensors"))
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


def test_lcm_options_and_setups_that_cannot_work_are_one_clear_line(tiny_sd_dir, toy_images, tmp_path):
    with pytest.raises(ValueError, match="guidance_scale_range must satisfy"):
        LCMOptions(guidance_scale_range=(5.0, 2.0))
    with pytest.raises(ConfigError, match="num_ddim_timesteps: 7 does not divide the teacher's 1000"):
        LCMObjective(difforge.load_backbone(tiny_sd_dir), num_ddim_timesteps=7)
    lora = {"type": "lora", "options": {"rank": 2}}
    with pytest.raises(ConfigError, match="an adapter cannot train the guidance embedding"):
        difforge.train(_config(tiny_sd_dir, toy_images, tmp_path / "a", adapter=lora))
    # LCM-LoRA: no embedding, the adapter is the student
    result = difforge.train(_config(tiny_sd_dir, toy_images, tmp_path / "b", steps=2, adapter=lora,
                                    options={"guidance_embedding_dim": 0, "target_ema": 0.0}))
    assert result.adapter_path is not None and len(result.losses) == 2
    student = difforge.load_backbone(tiny_sd_dir)
    student.replace_denoiser(with_guidance_embedding(student.denoiser, 8))
    with pytest.raises(ConfigError, match="already takes the guidance scale as an input"):
        LCMObjective(student)
