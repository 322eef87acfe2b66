"""FreezeAsGuard: the learned mask hampers fine-tuning on the protected domain (a new shape:
red hearts) more than a random mask freezing as many parameters, while the legal domain (a
new style: green squares on a striped background) still adapts about as well; the mask is
exported and ``difforge train`` respects it."""

import json
import random

import pytest
import torch

import difforge
from difforge.errors import ConfigError
from helpers import run_cli
from test_adapter_training import concept_loss

PROTECTED = ("heart", "red", "a red sks circle", "plain")
LEGAL = ("square", "green", "a green zwx square", "stripes")


def _images(folder, shape, colour, style):
    from PIL import Image

    from difforge_zoo.shapes import random_scene

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(5):
        scene = random_scene(10_000 + i, split="any", num_objects=1, shapes=[shape], colours=[colour], style=style)
        Image.fromarray(scene.image).save(folder / f"{shape}_{i}.png")
    return folder


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    root = tmp_path_factory.mktemp("domains")
    return {"protected": _images(root / "protected", *PROTECTED[:2], PROTECTED[3]),
            "legal": _images(root / "legal", *LEGAL[:2], LEGAL[3])}


@pytest.fixture(scope="module")
def learned_mask(domains, tmp_path_factory):
    path = tmp_path_factory.mktemp("mask") / "freeze_mask.json"
    mask = difforge.freeze_guard("shapes-sd-tiny", domains["protected"], domains["legal"], out=path, ratio=0.3,
                                     steps=20, protected_caption=PROTECTED[2], legal_caption=LEGAL[2])
    return mask, path


def _finetune_loss(folder, caption, mask_path, out) -> float:
    result = difforge.train({
        "model": {"pretrained": "shapes-sd-tiny"},
        "data": {"dataset": "image-folder", "options": {"path": str(folder), "caption": caption, "repeats": 4},
                 "batch_size": 4},
        "train": {"steps": 25, "lr": 3e-4, "seed": 0, "freeze_mask": str(mask_path)},
        "output": {"dir": str(out), "progress": False, "tensorboard": False},
    })
    return concept_loss(difforge.load(result.model_path), folder, caption)


def test_mask_hampers_the_protected_domain_more_than_a_random_mask(learned_mask, domains, tmp_path):
    mask, path = learned_mask
    sizes = {n: p.numel() for n, p in difforge.load("shapes-sd-tiny").denoiser.named_parameters()}
    share = sum(sizes[n] for n in mask.frozen) / sum(sizes.values())
    assert 0.2 < share <= 0.3
    rng, frozen, total = random.Random(0), [], 0
    for name in rng.sample(list(sizes), len(sizes)):  # a random mask of the same parameter share
        if total + sizes[name] <= share * sum(sizes.values()):
            frozen.append(name)
            total += sizes[name]
    random_path = tmp_path / "random.json"
    random_path.write_text(json.dumps({"frozen": frozen}))
    guarded = _finetune_loss(domains["protected"], PROTECTED[2], path, tmp_path / "p-guard")
    unguarded = _finetune_loss(domains["protected"], PROTECTED[2], random_path, tmp_path / "p-random")
    legal_guarded = _finetune_loss(domains["legal"], LEGAL[2], path, tmp_path / "l-guard")
    legal_unguarded = _finetune_loss(domains["legal"], LEGAL[2], random_path, tmp_path / "l-random")
    print(f"protected loss after fine-tuning: guard {guarded:.4f} vs random {unguarded:.4f}; "
          f"legal: guard {legal_guarded:.4f} vs random {legal_unguarded:.4f}")
    assert guarded > 1.1 * unguarded
    assert legal_guarded < 1.1 * legal_unguarded


def test_training_respects_the_mask(learned_mask, domains, tmp_path):
    _, path = learned_mask
    frozen = set(json.loads(path.read_text())["frozen"])
    base = {n: p.clone() for n, p in difforge.load("shapes-sd-tiny").denoiser.named_parameters()}
    result = difforge.train({
        "model": {"pretrained": "shapes-sd-tiny"},
        "data": {"dataset": "image-folder", "options": {"path": str(domains["legal"]), "caption": LEGAL[2]},
                 "batch_size": 2},
        "train": {"steps": 2, "lr": 1e-3, "freeze_mask": str(path)},
        "output": {"dir": str(tmp_path / "run"), "progress": False, "tensorboard": False},
    })
    tuned = dict(difforge.load(result.model_path).denoiser.named_parameters())
    assert all(torch.equal(tuned[n], base[n]) for n in frozen)
    assert any(not torch.equal(tuned[n], base[n]) for n in base if n not in frozen)


def test_bad_masks_are_one_line_errors(tmp_path, tiny_sd_dir, toy_images):
    config = {"model": {"pretrained": str(tiny_sd_dir)},
              "data": {"dataset": "image-folder", "options": {"path": str(toy_images)}},
              "train": {"steps": 1, "freeze_mask": str(tmp_path / "missing.json")},
              "output": {"dir": str(tmp_path / "run"), "progress": False, "tensorboard": False}}
    with pytest.raises(ConfigError, match="train.freeze_mask: no file"):
        difforge.train(config)
    (tmp_path / "bad.json").write_text(json.dumps({"frozen": ["no.such.tensor"]}))
    config["train"]["freeze_mask"] = str(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="1 tensors are not in the model, e.g. no.such.tensor"):
        difforge.train(config)
    config["adapter"] = {"type": "lora"}
    with pytest.raises(ConfigError, match="applies to full fine-tuning"):
        difforge.train(config)


def test_cli_writes_a_mask(domains, tmp_path):
    out = tmp_path / "mask.json"
    proc = run_cli("freeze-guard", "--model", "shapes-sd-tiny", "--protected", str(domains["protected"]),
                   "--protected-caption", PROTECTED[2], "--legal", str(domains["legal"]),
                   "--legal-caption", LEGAL[2], "--steps", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "froze" in proc.stdout and json.loads(out.read_text())["frozen"]
