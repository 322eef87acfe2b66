"""The adapter protocol's invariants, for every registered adapter type: merging one adapter
at weight 1 matches the unmerged model, unmerging restores the base weights, save -> load
round-trips exactly, and disabling every adapter gives the base model's outputs bitwise."""

import pytest
import torch

from difforge import AdapterSet
from difforge.adapters.inputs import adapter_inputs
from difforge.adapters.tuned_layer import is_adapter_tensor
from difforge.backbone import load_backbone
from difforge.plugins import get_registry
from difforge_testkit import check_adapter_type

#: options that make each type small and valid on the tiny UNet
OPTIONS = {
    "lora": {"rank": 4},
    "dora": {"rank": 4},
    "loha": {"rank": 2},
    "lokr": {"rank": 2},
    "oft": {"block_size": 4},
    "difffit": {},
    "sara": {"ratio": 0.1},
    "orthogonal": {"rank": 2, "slot": 1},
    "sparse-ft": {"density": 0.1},
    "sc-tuner": {"hidden_ratio": 0.25},
    "ip-adapter": {"image_embed_dim": 8, "num_tokens": 2},
}


#: max |merged - unmerged| over the UNet output (fp32); OFT's Cayley rotation is merged as a
#: matrix product, so it rounds a little more
MERGE_TOLERANCE = {"oft": 1e-4}
DEFAULT_MERGE_TOLERANCE = 1e-5


def test_every_builtin_type_is_covered():
    assert set(OPTIONS) == set(get_registry("adapters").owned_by("difforge"))


def _perturb(adapters: AdapterSet, name: str, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapters.trainable_parameters(name):
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _out(unet, seed=0, inputs=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 8, 8, generator=g)
    cond = torch.randn(2, 16, 32, generator=g)
    with torch.no_grad(), adapter_inputs(unet, inputs or {}):
        return unet(x, torch.tensor([10, 600]), cond).sample


def _base_weights(unet):
    return {k.replace(".base_layer", ""): v.detach().clone() for k, v in unet.named_parameters()
            if not is_adapter_tensor(k)}


@pytest.fixture
def base_unet(tiny_sd_dir):
    return load_backbone(tiny_sd_dir).denoiser.eval()


@pytest.mark.parametrize("kind", sorted(OPTIONS))
def test_invariants(kind, tiny_sd_dir, tmp_path):
    """The testkit's common adapter check (merge, unmerge, disable, save -> load, trainable set)."""
    inputs = {"ip_adapter_image_embeds": torch.randn(2, 8, generator=torch.Generator().manual_seed(5))}
    check_adapter_type(kind, lambda: load_backbone(tiny_sd_dir).denoiser, _out, tmp_path, OPTIONS[kind],
                       inputs=inputs if kind == "ip-adapter" else None,
                       merge_tolerance=MERGE_TOLERANCE.get(kind, DEFAULT_MERGE_TOLERANCE))


def test_the_common_check_catches_a_broken_type(tiny_sd_dir, tmp_path, fresh_plugins):
    """A LoRA whose save drops a tensor fails the check at the round trip."""
    from difforge.adapters import LoraAdapter

    class Lossy(LoraAdapter):
        name = "lossy-lora"

        def state_dict(self, model, adapter_name):
            state = super().state_dict(model, adapter_name)
            return dict(list(state.items())[1:])

    from helpers import plugin_module

    from difforge.plugins import register_plugin

    register_plugin(plugin_module("lossy", difforge_register_adapters=lambda: {"lossy-lora": Lossy()}), "lossy")
    with pytest.raises(AssertionError, match="lossy-lora"):
        check_adapter_type("lossy-lora", lambda: load_backbone(tiny_sd_dir).denoiser, _out, tmp_path, {"rank": 4})


def test_types_stack_and_weights_scale(base_unet):
    base_out = _out(base_unet)
    adapters = AdapterSet(base_unet)
    adapters.add("lora", "a", rank=4)
    adapters.add("difffit", "b")
    adapters.add("sara", "c", ratio=0.05)
    for i, name in enumerate("abc"):
        _perturb(adapters, name, seed=i)
    together = _out(base_unet)
    adapters.set_weights({"a": 0.0, "b": 0.0, "c": 0.0})
    assert torch.equal(_out(base_unet), base_out)
    adapters.set_weights({"a": 1.0, "b": 1.0, "c": 1.0})
    assert torch.equal(_out(base_unet), together)
    adapters.merge()
    assert (_out(base_unet) - together).abs().max() < 1e-5
    adapters.unmerge()
    assert torch.allclose(_out(base_unet), together, atol=1e-6)  # PEFT unmerges by subtraction


def test_controllable_sc_tuner_reads_its_condition(base_unet):
    adapters = AdapterSet(base_unet)
    adapters.add("sc-tuner", "control", condition_channels=1)
    _perturb(adapters, "control")
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, :, :16] = 1
    left = _out(base_unet, inputs={"condition_map": mask})
    right = _out(base_unet, inputs={"condition_map": mask.flip(-1)})
    assert (left - right).abs().max() > 1e-4
    free = _out(base_unet)
    assert torch.equal(_out(base_unet), free)  # nothing stays bound after a call
    with pytest.raises(ValueError, match=r"condition_map must be \(N, 1, H, W\), got \(2, 3, 32, 32\)"):
        _out(base_unet, inputs={"condition_map": torch.zeros(2, 3, 32, 32)})
    with pytest.raises(ValueError, match="extra model input.*nothing"):
        _out(base_unet, inputs={"nothing": mask})
