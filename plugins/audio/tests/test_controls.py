"""Music ControlNet inputs: control images, subsets, time masks, and the controlled UNet wrapper."""

import numpy as np
import pytest
import torch

pytest.importorskip("difforge_audio")

from difforge_audio.codec import MelCodec  # noqa: E402
from difforge_audio.controlnet import ControlNetDenoiser, controlnet_from_unet  # noqa: E402
from difforge_audio.controls import (  # noqa: E402
    CONTROL_CHANNELS,
    Controls,
    chroma_to_mel,
    extract_controls,
    random_masks,
)
from difforge_audio.music import NUM_FRAMES, random_clip  # noqa: E402


@pytest.fixture(scope="module")
def controls():
    return extract_controls(MelCodec().encode(random_clip(1).audio))


def test_control_image_layout(controls):
    image = controls.image(64)
    assert image.shape == (CONTROL_CHANNELS, 64, NUM_FRAMES)
    assert torch.equal(image[1:, 0], image[1:, 40])  # dynamics, rhythm and masks: constant along frequency
    voiced = np.nonzero(controls.melody >= 0)[0]
    bands = image[0][:, voiced].argmax(0).numpy()  # the melody sits on the bands of its pitch class
    assert (chroma_to_mel(64).argmax(0)[bands] == controls.melody[voiced]).all()
    assert image[0][:, controls.melody < 0].abs().sum() == 0
    assert image[3:, 0].eq(1).all()  # every control given everywhere
    assert image[2, 0].max() == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="64 mel bands, got n_mels=32"):
        controls.image(32)


def test_subsets_and_time_spans(controls):
    melody_only = controls.only(["melody"]).image(64)
    assert melody_only[1:3].abs().sum() == 0 and melody_only[4:].sum() == 0 and melody_only[3].eq(1).all()
    assert melody_only[0].abs().sum() > 0
    half = controls.within(0, 32).image(64)
    assert half[:, :, 32:].abs().sum() == 0 and half[3:, 0, :32].eq(1).all()
    with pytest.raises(ValueError, match="unknown control"):
        controls.only(["timbre"])
    with pytest.raises(ValueError, match="control 'dynamics' must have shape"):
        Controls(controls.melody, controls.dynamics[:10], controls.rhythm)


def test_training_masks_cover_absent_full_and_partial():
    rng = np.random.default_rng(0)
    kinds = {"absent": 0, "full": 0, "partial": 0}
    for _ in range(300):
        for mask in random_masks(rng).values():
            kinds["absent" if not mask.any() else "full" if mask.all() else "partial"] += 1
    total = sum(kinds.values())
    assert 0.18 < kinds["absent"] / total < 0.32 and 0.28 < kinds["full"] / total < 0.42
    assert 0.32 < kinds["partial"] / total < 0.48


def test_controlled_unet_starts_as_the_base_and_takes_the_control_per_call(tiny_spectrogram_unet, controls):
    unet = tiny_spectrogram_unet
    controlnet = controlnet_from_unet(unet)
    model = ControlNetDenoiser(unet, controlnet)
    x, t, cond = torch.randn(2, 1, 64, 64), torch.tensor([10, 500]), torch.randn(2, 4, 32)
    image = controls.image(64)[None].repeat(2, 1, 1, 1)
    with torch.no_grad():
        base = unet(x, t, encoder_hidden_states=cond).sample
        controlled = model(x, t, encoder_hidden_states=cond, controlnet_cond=image).sample
        assert torch.allclose(base, controlled, atol=1e-6)  # zero-initialised ControlNet outputs
        for p in controlnet.controlnet_down_blocks.parameters():
            p.add_(0.05)
        assert not torch.allclose(base, model(x, t, encoder_hidden_states=cond, controlnet_cond=image).sample,
                                  atol=1e-4)
        assert torch.equal(base, model(x, t, encoder_hidden_states=cond).sample)  # no control: the base
    with pytest.raises(ValueError, match="controlnet_cond must be"):
        model(x, t, encoder_hidden_states=cond, controlnet_cond=torch.zeros(2, 3, 64, 64))


def test_backbone_passes_the_control_through_guidance(tiny_spectrogram_unet, controls):
    """The registered spec routes ``controlnet_cond`` from ``sample(extra=...)`` to the denoiser;
    guidance repeats it for its unconditional half, as the wrapper used to."""
    from diffusers import DDPMScheduler

    from difforge import Backbone

    unet = tiny_spectrogram_unet
    controlnet = controlnet_from_unet(unet)
    for p in controlnet.controlnet_down_blocks.parameters():
        p.data.add_(0.05)
    seen = []
    model = ControlNetDenoiser(unet, controlnet)
    model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs["controlnet_cond"].shape[0]),
                                    with_kwargs=True)
    backbone = Backbone(model, DDPMScheduler(num_train_timesteps=100))
    assert backbone.input_names() == {"controlnet_cond"}
    image = controls.image(64)[None]
    cond = torch.randn(1, 4, 32)
    backbone.null_condition = lambda batch: torch.zeros(batch, 4, 32)
    out = backbone.sample(condition=cond, num_steps=2, guidance_scale=2.0, extra={"controlnet_cond": image},
                          generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 1, 64, 64) and seen == [2, 2]
