"""FreezeAsGuard: the learned mask serves its purpose (after a short fine-tuning run on each
domain under the mask, the protected domain, red hearts, stays worse relative to the legal
domain, green squares on stripes, than under random masks freezing the same share of
parameters); the mask is exported and ``difforge train`` respects it."""

import json

import pytest
import torch
from helpers import run_cli

import difforge
from difforge.errors import ConfigError
from difforge_guard import freeze_guard, random_freeze_mask

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
    mask = freeze_guard("shapes-sd-tiny", domains["protected"], domains["legal"], out=path, ratio=0.5,
                                     steps=20, protected_caption=PROTECTED[2], legal_caption=LEGAL[2])
    return mask, path


def _batches(folder, caption, seed):
    from difforge.training.data import ImageFolderDataset

    data = ImageFolderDataset(path=str(folder), caption=caption)
    g = torch.Generator().manual_seed(seed)
    while True:
        idx = torch.randint(0, len(data), (4,), generator=g).tolist()
        yield {"pixel_values": torch.stack([data[i]["pixel_values"] for i in idx]), "caption": [caption] * 4}


def test_learned_mask_hampers_the_protected_domain_more_than_random_masks(learned_mask, domains):
    """After 20 fine-tuning steps on each domain under each mask, the learned mask leaves the
    protected domain's loss higher relative to the legal domain's than random masks freezing
    the same share of parameters do."""
    from difforge_guard import evaluate_freeze_mask

    mask, _ = learned_mask
    backbone = difforge.load("shapes-sd-tiny")
    sizes = {n: p.numel() for n, p in backbone.denoiser.named_parameters()}
    share = sum(sizes[n] for n in mask.frozen) / sum(sizes.values())
    assert 0.4 < share <= 0.5
    gaps = {}
    masks = [("learned", mask.frozen)]
    masks += [(f"random-{seed}", random_freeze_mask(sizes, share, seed)) for seed in range(3)]
    for label, frozen in masks:
        losses = evaluate_freeze_mask(backbone, frozen, _batches(domains["protected"], PROTECTED[2], 0),
                                      _batches(domains["legal"], LEGAL[2], 1))
        gaps[label] = losses["protected_loss"] - losses["legal_loss"]
    print("protected minus legal loss after fine-tuning under the mask:", {k: round(v, 4) for k, v in gaps.items()})
    assert gaps["learned"] > max(v for k, v in gaps.items() if k != "learned")


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
