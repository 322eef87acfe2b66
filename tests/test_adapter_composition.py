"""Composition: merge strategies over several adapters, exact unmerge, and the sparse types'
training-time behaviour (SaRA re-selection and nuclear norm, LT-SFT masking, exact resume)."""

import pytest
import torch
from test_adapter_invariants import _base_weights, _out, _perturb

import difforge
from difforge import AdapterSet
from difforge.adapters import MERGE_STRATEGIES
from difforge.backbone import load_backbone


@pytest.fixture
def two_loras(tiny_sd_dir):
    unet = load_backbone(tiny_sd_dir).denoiser.eval()
    base = _base_weights(unet)
    adapters = AdapterSet(unet)
    adapters.add("lora", "a", rank=2)
    adapters.add("lora", "b", rank=2)
    _perturb(adapters, "a", 0)
    _perturb(adapters, "b", 1)
    return unet, adapters, base


@pytest.mark.parametrize("strategy", MERGE_STRATEGIES)
def test_every_strategy_merges_and_unmerges_exactly(strategy, two_loras):
    unet, adapters, base = two_loras
    stacked = _out(unet)
    if strategy == "orthogonal":  # independently drawn LoRAs overlap; the strategy must refuse them
        with pytest.raises(ValueError, match="overlap"):
            adapters.merge(strategy=strategy, max_cosine=0.0)
        return
    adapters.merge(strategy=strategy, rank=4)
    merged = _out(unet)
    now = _base_weights(unet)
    assert any(not torch.equal(now[k], base[k]) for k in base), "merging must write the base weights"
    if strategy in ("linear", "cat", "svd"):  # svd at rank >= the sum of ranks is exact
        assert (merged - stacked).abs().max() < 1e-5
    adapters.unmerge()
    restored = _base_weights(unet)
    assert max((restored[k] - base[k]).abs().max().item() for k in base) <= 1e-6
    assert torch.allclose(_out(unet), stacked, atol=1e-6)


def test_svd_truncation_and_orthogonal_sum(tiny_sd_dir):
    unet = load_backbone(tiny_sd_dir).denoiser.eval()
    adapters = AdapterSet(unet)
    adapters.add("orthogonal", "x", rank=2, slot=0)
    adapters.add("orthogonal", "y", rank=2, slot=1)
    for i, name in enumerate("xy"):
        _perturb(adapters, name, i)
    stacked = _out(unet)
    adapters.merge(strategy="orthogonal")  # distinct slots: updates are orthogonal, the sum is exact
    assert (_out(unet) - stacked).abs().max() < 1e-5
    adapters.unmerge()
    adapters.merge(strategy="svd", rank=1)  # rank 1 < 2 + 2: an approximation
    assert (_out(unet) - stacked).abs().max() > 1e-6
    adapters.unmerge()


def test_unmergeable_types_say_so(tiny_sd_dir):
    unet = load_backbone(tiny_sd_dir).denoiser.eval()
    adapters = AdapterSet(unet)
    adapters.add("sc-tuner", "sc")
    with pytest.raises(ValueError, match="'sc' \\(sc-tuner\\) cannot be merged"):
        adapters.merge()
    with pytest.raises(ValueError, match="unknown merge strategy 'mean'"):
        AdapterSet(load_backbone(tiny_sd_dir).denoiser).merge([], strategy="mean")


def test_sara_reselection_keeps_the_function_and_moves_the_trainable_entries(tiny_sd_dir):
    unet = load_backbone(tiny_sd_dir).denoiser.eval()
    adapters = AdapterSet(unet)
    sara = adapters.add("sara", "s", ratio=0.1, reselect_at=[0.5])
    _perturb(adapters, "s")
    before = _out(unet)
    layers = sara._layers(unet, "s")
    index_before = {n: layer.tuners["s"].index.clone() for n, layer in layers.items()}
    penalty = adapters.regularization()
    assert penalty is not None and penalty.item() > 0 and penalty.requires_grad
    reset = adapters.on_step_end(step=5, total_steps=10)
    assert len(reset) == len(layers) and all(float(p.detach().abs().sum()) == 0 for p in reset)
    assert torch.allclose(_out(unet), before, atol=1e-6)
    assert any(not torch.equal(layer.tuners["s"].index, index_before[n]) for n, layer in layers.items())
    assert adapters.on_step_end(step=6, total_steps=10) == []


def test_sparse_ft_keeps_the_densest_changes(tiny_sd_dir):
    unet = load_backbone(tiny_sd_dir).denoiser.eval()
    adapters = AdapterSet(unet)
    sft = adapters.add("sparse-ft", "d", density=0.05, phase1_fraction=0.5)
    _perturb(adapters, "d")
    reset = adapters.on_step_end(step=5, total_steps=10)
    tuners = [layer.tuners["d"] for layer in sft._layers(unet, "d").values()]
    kept = sum(float(t.mask.sum()) for t in tuners) / sum(t.mask.numel() for t in tuners)
    assert 0.04 < kept < 0.06 and len(reset) == len(tuners)
    assert all(float(t.delta.detach().abs().sum()) == 0 for t in tuners)


def test_sara_resume_is_exact_across_a_reselection(tiny_sd_dir, toy_images, tmp_path):
    """20 steps straight == 10 steps, resume, 10 more, with the re-selection at step 10 and the
    nuclear-norm penalty on."""
    def config(out, steps):
        return {"model": {"pretrained": str(tiny_sd_dir)},
                "data": {"dataset": "image-folder", "options": {"path": str(toy_images), "resolution": 32},
                         "batch_size": 2},
                "adapter": {"type": "sara", "options": {"ratio": 0.05, "reselect_at": [0.5], "nuclear_weight": 1e-3}},
                "train": {"steps": steps, "lr": 1e-3, "seed": 0, "resume": "auto"},
                "output": {"dir": str(out), "checkpoint_every": 10, "progress": False, "tensorboard": False}}

    straight = difforge.train(config(tmp_path / "straight", 20))
    first = config(tmp_path / "resumed", 20)
    trainer = difforge.Trainer(difforge.load_config(data=first))
    trainer.callbacks.append(lambda t, step, logs: (_ for _ in ()).throw(KeyboardInterrupt) if step == 10 else None)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    resumed = difforge.train(config(tmp_path / "resumed", 20))
    assert resumed.losses == straight.losses
    from safetensors.torch import load_file

    a = load_file(str(straight.adapter_path / "difforge_adapter.safetensors"))
    b = load_file(str(resumed.adapter_path / "difforge_adapter.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
