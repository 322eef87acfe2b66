"""LoRA through the adapter protocol: named adapters, weights, enable/disable, merge/unmerge,
save/load, and interop with diffusers' load_lora_weights."""

import pytest
import torch
from diffusers import StableDiffusionPipeline

from difforge import AdapterSet
from difforge.backbone import load_backbone


def _randomise(adapters: AdapterSet, name: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapters.trainable_parameters(name):
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.fixture
def unet_with_two_adapters(tiny_sd_dir):
    backbone = load_backbone(tiny_sd_dir)
    unet = backbone.denoiser.eval()
    base = {k: v.clone() for k, v in unet.state_dict().items()}
    adapters = AdapterSet(unet)
    adapters.add("lora", "first", rank=4)
    adapters.add("lora", "second", rank=2, target_modules=["to_q", "to_v"])
    _randomise(adapters, "first", 0)
    _randomise(adapters, "second", 1)
    return backbone, adapters, base


def _out(backbone, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 8, 8, generator=g)
    cond = torch.randn(2, 16, 32, generator=g)
    with torch.no_grad():
        return backbone.predict(x, torch.tensor([10, 600]), cond)


def _base_out(tiny_sd_dir):
    return _out(load_backbone(tiny_sd_dir).eval())


def test_trainable_parameters_are_only_the_adapter(unet_with_two_adapters):
    _, adapters, _ = unet_with_two_adapters
    names = [n for n, p in adapters.model.named_parameters() if p.requires_grad]
    assert names and all(".lora_" in n for n in names)
    assert adapters.num_trainable("first") > adapters.num_trainable("second") > 0


def test_disable_gives_base_outputs_bitwise(unet_with_two_adapters, tiny_sd_dir):
    backbone, adapters, _ = unet_with_two_adapters
    assert not torch.equal(_out(backbone), _base_out(tiny_sd_dir))
    adapters.disable()
    assert torch.equal(_out(backbone), _base_out(tiny_sd_dir))
    adapters.enable()
    assert not torch.equal(_out(backbone), _base_out(tiny_sd_dir))


def test_weights_scale_each_adapter(unet_with_two_adapters, tiny_sd_dir):
    backbone, adapters, _ = unet_with_two_adapters
    adapters.set_weights({"first": 0.0, "second": 0.0})
    assert torch.equal(_out(backbone), _base_out(tiny_sd_dir))
    adapters.set_weights({"first": 1.0})
    only_first = _out(backbone)
    adapters.set_weights({"first": 0.5})
    half_first = _out(backbone)
    base = _base_out(tiny_sd_dir)
    # the LoRA delta is linear in its scale at first order
    assert (half_first - base).norm() < (only_first - base).norm()
    with pytest.raises(ValueError, match="unknown adapter"):
        adapters.set_weights({"third": 1.0})


def test_merge_matches_unmerged_and_unmerge_restores_base(unet_with_two_adapters):
    backbone, adapters, base = unet_with_two_adapters
    adapters.set_weights({"first": 1.0, "second": 0.7})
    unmerged = _out(backbone)
    adapters.merge()
    merged = _out(backbone)
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-4)
    adapters.unmerge()
    restored = backbone.denoiser.state_dict()
    worst = max((restored[k] - v).abs().max().item() for k, v in base.items() if k in restored)
    assert worst <= 1e-6


def test_save_load_round_trip_exact(unet_with_two_adapters, tiny_sd_dir, tmp_path):
    backbone, adapters, _ = unet_with_two_adapters
    adapters.set_weights({"second": 0.0})
    expected = _out(backbone)
    adapters.save("first", tmp_path / "first")
    fresh = load_backbone(tiny_sd_dir).eval()
    loaded = AdapterSet(fresh.denoiser)
    loaded.load(tmp_path / "first", name="first")
    assert torch.equal(_out(fresh), expected)
    saved = adapters.types["first"].state_dict(adapters.model, "first")
    again = loaded.types["first"].state_dict(loaded.model, "first")
    assert saved.keys() == again.keys() and all(torch.equal(saved[k], again[k]) for k in saved)


def test_diffusers_pipeline_loads_difforge_lora(unet_with_two_adapters, tiny_sd_dir, tmp_path):
    backbone, adapters, _ = unet_with_two_adapters
    adapters.set_weights({"second": 0.0})
    ours = _out(backbone)
    adapters.save("first", tmp_path / "lora")
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_dir, local_files_only=True)
    pipe.load_lora_weights(tmp_path / "lora", adapter_name="mine")
    g = torch.Generator().manual_seed(0)
    x, cond = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 16, 32, generator=g)
    with torch.no_grad():
        theirs = pipe.unet(x, torch.tensor([10, 600]), encoder_hidden_states=cond).sample
    torch.testing.assert_close(theirs, ours, atol=1e-6, rtol=1e-5)
    # and a whole diffusers generation runs with it
    image = pipe("a red circle", num_inference_steps=2, height=32, width=32, output_type="pt").images
    assert image.shape == (1, 3, 32, 32)


def test_loading_lora_without_metadata_infers_rank(unet_with_two_adapters, tiny_sd_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    backbone, adapters, _ = unet_with_two_adapters
    adapters.set_weights({"second": 0.0})
    expected = _out(backbone)
    adapters.save("first", tmp_path / "lora")
    tensors = load_file(str(tmp_path / "lora" / "pytorch_lora_weights.safetensors"))
    save_file(tensors, str(tmp_path / "bare.safetensors"))  # no metadata: alpha defaults to rank
    fresh = load_backbone(tiny_sd_dir).eval()
    AdapterSet(fresh.denoiser).load(tmp_path / "bare.safetensors", name="bare")
    assert torch.equal(_out(fresh), expected)


@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_diffusers_pipeline_loads_lora_and_dora(kind, tiny_sd_dir, tmp_path):
    backbone = load_backbone(tiny_sd_dir)
    adapters = AdapterSet(backbone.denoiser.eval())
    adapters.add(kind, "mine", rank=4)
    _randomise(adapters, "mine", 3)
    ours = _out(backbone)
    adapters.save("mine", tmp_path / kind)
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_dir, local_files_only=True)
    pipe.load_lora_weights(tmp_path / kind, adapter_name="mine")
    g = torch.Generator().manual_seed(0)
    x, cond = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 16, 32, generator=g)
    with torch.no_grad():
        theirs = pipe.unet(x, torch.tensor([10, 600]), encoder_hidden_states=cond).sample
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)


def test_kohya_lora_files_load(tiny_sd_dir, tmp_path):
    """A LoRA in the kohya / A1111 layout (lora_unet_..., lora_down/lora_up, alpha) loads through
    diffusers' converters and computes what the original adapter computed."""
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    backbone = load_backbone(tiny_sd_dir)
    adapters = AdapterSet(backbone.denoiser.eval())
    adapters.add("lora", "mine", rank=4, alpha=2.0)
    _randomise(adapters, "mine", 4)
    expected = _out(backbone)
    peft_state = get_peft_model_state_dict(backbone.denoiser, adapter_name="mine")
    kohya = convert_state_dict_to_kohya({f"unet.{k}": v for k, v in peft_state.items()})
    for key in [k for k in kohya if k.endswith(".lora_down.weight")]:
        kohya[key.replace(".lora_down.weight", ".alpha")] = torch.tensor(2.0)
    assert all(k.startswith("lora_unet_") for k in kohya)
    save_file(kohya, str(tmp_path / "kohya.safetensors"))
    fresh = load_backbone(tiny_sd_dir).eval()
    AdapterSet(fresh.denoiser).load(tmp_path / "kohya.safetensors", name="kohya")
    torch.testing.assert_close(_out(fresh), expected, atol=1e-6, rtol=1e-5)


def test_text_encoder_lora_loads_beside_a_unet_lora_in_difforge_and_diffusers(tiny_sd_dir, tmp_path):
    """A text-encoder LoRA (as TexForce trains) is saved with diffusers' ``text_encoder.`` keys,
    ``difforge.load`` routes it to the text encoder and a UNet LoRA to the UNet, and diffusers'
    ``load_lora_weights`` gives the same text embeddings."""
    import difforge

    backbone = load_backbone(tiny_sd_dir)
    text = AdapterSet(backbone.text_encoder.eval())
    text.add("lora", "te", rank=4, target_modules=["q_proj", "k_proj", "v_proj", "out_proj"])
    _randomise(text, "te", 5)
    unet = AdapterSet(backbone.denoiser.eval())
    unet.add("lora", "unet", rank=4)
    _randomise(unet, "unet", 6)
    with torch.no_grad():
        ours_cond = backbone.encode_prompts(["a red circle"])
    ours = _out(backbone)
    text.save("te", tmp_path / "te")
    unet.save("unet", tmp_path / "unet")
    assert difforge.adapters.adapter_component_of_file(tmp_path / "te") == "text_encoder"
    assert difforge.adapters.adapter_component_of_file(tmp_path / "unet") == "denoiser"

    loaded = difforge.load(tiny_sd_dir, adapters=[(tmp_path / "unet", 1.0), (tmp_path / "te", 1.0)])
    with torch.no_grad():
        assert torch.equal(loaded.encode_prompts(["a red circle"]), ours_cond)
    assert torch.equal(_out(loaded), ours)
    base = load_backbone(tiny_sd_dir)
    with torch.no_grad():
        assert not torch.allclose(base.encode_prompts(["a red circle"]), ours_cond)

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_dir, local_files_only=True)
    pipe.load_lora_weights(tmp_path / "te", adapter_name="te")
    ids = pipe.tokenizer(["a red circle"], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         return_tensors="pt").input_ids
    with torch.no_grad():
        theirs = pipe.text_encoder(ids)[0]
    torch.testing.assert_close(theirs, ours_cond, atol=1e-5, rtol=1e-5)
