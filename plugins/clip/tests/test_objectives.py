"""The CLIP objectives on the real teacher (shapes-sd-tiny) and student (the zoo's CLIP): what
the gradients reach, export, LoRA merging, the diffusion classifier, the commands."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from difforge_clip import benchmark as world
from difforge_clip.objectives import DivaObjective, NegClipObjective, SdsClipObjective
from difforge_clip.student import ClipEncoder, clip_dir, count_parameters, layer_norms, save_clip
from difforge_clip.teacher import DiffusionClassifier


@pytest.fixture(scope="module")
def teacher():
    import difforge

    return difforge.load("shapes-sd-tiny")


def _batch(count=4, seed=0):
    from difforge_zoo.data import ShapesDataset

    data = ShapesDataset(count=count, seed=seed, num_objects=2)
    items = [data[i] for i in range(count)]
    return {"pixel_values": torch.stack([it["pixel_values"] for it in items]),
            "caption": [it["caption"] for it in items]}


def _with_grad(module):
    return {n for n, p in module.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_sds_gradient_reaches_only_the_declared_parameters(teacher):
    objective = SdsClipObjective(teacher, trainable="layernorm")
    modules = objective.trainable_modules(type("C", (), {"adapter": None})())
    assert set(modules) == {"student", "head"}
    for module in modules.values():
        module.requires_grad_(True)
    batch = _batch()
    images = batch["pixel_values"]
    sds = objective.sds(objective.image_embeds(images), batch["caption"], teacher.denoiser,
                        torch.Generator().manual_seed(0))
    sds.backward()
    clip = objective.clip
    touched = _with_grad(clip)
    norms = {id(p) for m in layer_norms(clip) for p in m.parameters()}
    named = dict(clip.named_parameters())
    assert touched and all(id(named[n]) in norms for n in touched)  # LayerNorms only
    assert all(n.startswith("vision_model.") for n in touched)  # the SDS term sees images only
    assert _with_grad(objective.head) == {"weight", "bias"}
    for frozen in (teacher.denoiser, teacher.text_encoder, teacher.vae):
        assert not any(p.grad is not None for p in frozen.parameters())
    # the full loss (contrastive + λ SDS) also reaches the text tower's LayerNorms
    clip.zero_grad()
    loss, logs = objective.loss(batch, teacher.denoiser, torch.Generator().manual_seed(0))
    loss.backward()
    assert any(n.startswith("text_model.") for n in _with_grad(clip)) and {"contrastive", "sds"} <= logs.keys()
    assert count_parameters(modules["student"]) == sum(p.numel() for m in layer_norms(clip) for p in m.parameters())


def test_diva_conditions_the_teacher_on_vision_tokens_and_trains_the_vision_tower(teacher):
    objective = DivaObjective(teacher, patch_tokens=4)
    for module in objective.trainable_modules(type("C", (), {"adapter": None})()).values():
        module.requires_grad_(True)
    loss, _ = objective.loss(_batch(), teacher.denoiser, torch.Generator().manual_seed(0))
    loss.backward()
    touched = _with_grad(objective.clip)
    assert touched and all(n.startswith(("vision_model.", "visual_projection")) for n in touched)
    assert not any(p.grad is not None for p in teacher.denoiser.parameters())


def test_negclip_adds_one_hard_negative_per_caption(teacher):
    objective = NegClipObjective(teacher)
    loss, logs = objective.loss(_batch(6), teacher.denoiser, torch.Generator().manual_seed(0))
    assert logs["negatives"] == 6 and torch.isfinite(loss)
    assert count_parameters(objective.student) == count_parameters(objective.clip)  # NegCLIP tunes it all


def test_lora_student_exports_merged_in_the_clipmodel_layout(teacher, tmp_path):
    from transformers import CLIPModel

    objective = SdsClipObjective(teacher, trainable="lora", lora_rank=2)
    with torch.no_grad():
        for p in objective.student.parameters():
            p.add_(0.05 * torch.randn_like(p))  # a trained LoRA: B is no longer zero
    path = save_clip(objective.clip, objective.tokenizer, tmp_path / "student")
    reloaded = ClipEncoder.from_pretrained(path)
    assert isinstance(reloaded.clip, CLIPModel)
    assert not any("lora" in k for k in reloaded.clip.state_dict())
    live = ClipEncoder(objective.clip, objective.tokenizer)
    batch = _batch(3)["pixel_values"]
    tokens = live.tokenize(["a red circle", "a blue square on the left and a green circle on the right"])
    with torch.no_grad():
        torch.testing.assert_close(reloaded.encode_image(batch), live.encode_image(batch), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(reloaded.encode_text(tokens), live.encode_text(tokens), atol=1e-5, rtol=1e-5)
        zoo = ClipEncoder.from_pretrained("shapes-sd-tiny")
        assert (reloaded.encode_image(batch) - zoo.encode_image(batch)).abs().max() > 1e-4  # the LoRA changed it


def test_diffusion_classifier_uses_shared_noise_and_prefers_true_captions(teacher):
    items = [world.options_item("sugarcrepe", "replace-obj", i, seed=5) for i in range(6)]
    classifier = DiffusionClassifier(teacher, num_noise=8)
    images, options = [it.image for it in items], [it.caption_options for it in items]
    first = classifier.option_scores(images, options)
    np.testing.assert_array_equal(first, classifier.option_scores(images, options))  # deterministic
    assert first.shape == (6, 2)
    assert (first[:, 0] > first[:, 1]).mean() >= 5 / 6  # a replaced shape is easy for the teacher
    raw = DiffusionClassifier(teacher, num_noise=8, relative=False).option_scores(images, options)
    np.testing.assert_allclose(first[:, 0] - first[:, 1], raw[:, 0] - raw[:, 1], atol=1e-5)


def test_clip_eval_command_prints_the_table_and_exports(tmp_path, capsys):
    from difforge.plugin_api import cli_main as main

    assert main(["clip-eval", "--count", "2", "--json", str(tmp_path / "r.json")]) == 0
    assert "| shapes-sd-tiny |" in capsys.readouterr().out and (tmp_path / "r.json").exists()
    assert main(["clip-eval", "--count", "1", "--export", str(tmp_path / "bench")]) == 0
    assert (tmp_path / "bench" / "aro.json").exists()
    capsys.readouterr()
    assert main(["clip-eval", "--clip", str(tmp_path / "missing")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing" in err and err.startswith("difforge: error:")


def test_plugin_registers_its_objectives_and_commands():
    from difforge_testkit import check_plugin

    registered = check_plugin("difforge-clip")
    assert set(registered["objectives"]) == {"clip-finetune", "negclip", "sds-clip", "diva"}
    assert set(registered["commands"]) == {"clip-distill", "clip-eval"}


def test_a_resumed_run_ends_with_the_same_student(tmp_path):
    from safetensors.torch import load_file

    import difforge
    from difforge_clip.distill import distill_config

    def run(out, steps, resume=None):
        config = distill_config("contrastive", out, steps=steps, batch_size=8, train_count=64)
        config["output"]["checkpoint_every"] = 3
        config["train"]["resume"] = resume
        return difforge.train(config)

    straight = run(tmp_path / "straight", 6)
    run(tmp_path / "stopped", 3)
    resumed = run(tmp_path / "stopped", 6, resume="auto")
    assert resumed.steps == 6
    a = load_file(straight.model_path / "model.safetensors")
    b = load_file(resumed.model_path / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    zoo = load_file(clip_dir("shapes-sd-tiny") / "model.safetensors")
    changed = [k for k in a if not torch.equal(a[k], zoo[k])]
    assert changed and all(any(n in k for n in ("layer_norm", "layrnorm", "layernorm")) for k in changed)
