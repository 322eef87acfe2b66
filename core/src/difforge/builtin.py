"""The core registers its own components through the same hooks as any plugin.

Every component is a :func:`~difforge.registry.lazy` reference, so registering the core imports
nothing heavy: torch, diffusers and transformers load when a component is first used.
"""

from __future__ import annotations

from .hookspecs import hookimpl
from .registry import lazy


def _refs(module: str, names: dict[str, str], call: bool = False) -> dict[str, object]:
    return {name: lazy(f"{module}:{attribute}", call=call) for name, attribute in names.items()}


@hookimpl
def difforge_register_backbones():
    return _refs("difforge.backbone.builders", {"unet2d": "build_unet2d", "unet2d-condition": "build_unet2d_condition",
                                                "dit": "build_dit", "unet1d": "build_unet1d",
                                                "unet3d-condition": "build_unet3d_condition"})


@hookimpl
def difforge_register_denoisers():
    return _refs("difforge.backbone.specs", {
        "UNet2DConditionModel": "UNET2D_CONDITION", "UNet2DModel": "UNET2D", "DiTTransformer2DModel": "DIT",
        "UNet1DModel": "UNET1D", "UNet3DConditionModel": "UNET3D_CONDITION"}) | _refs(
        "difforge.backbone.controlnet", {"ControlNetDenoiser": "CONTROLNET_DENOISER_SPEC"})


@hookimpl
def difforge_register_parameterizations():
    return _refs("difforge.backbone.parameterization",
                 {"epsilon": "Epsilon", "v": "VPrediction", "x0": "X0", "flow": "FlowMatching"})


@hookimpl
def difforge_register_schedulers():
    return _refs("diffusers", {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler", "euler": "EulerDiscreteScheduler",
                               "flow_euler": "FlowMatchEulerDiscreteScheduler"})


@hookimpl
def difforge_register_datasets():
    return {**_refs("difforge.training.data", {"image-folder": "ImageFolderDataset", "prompts": "PromptsDataset"}),
            **_refs("difforge.training.preferences", {"preference-pairs": "PreferencePairsDataset"})}


@hookimpl
def difforge_register_objectives():
    return {
        **_refs("difforge.training.objectives", {"denoising": "DenoisingObjective"}),
        **_refs("difforge.training.dreambooth", {"dreambooth": "DreamBoothObjective"}),
        **_refs("difforge.training.control", {"controlled-denoising": "ControlledDenoisingObjective"}),
        **_refs("difforge.training.controlnet", {"controlnet": "ControlNetObjective"}),
        **_refs("difforge.training.autoencoder", {"autoencoder": "AutoencoderObjective"}),
    }


@hookimpl
def difforge_register_adapters():
    return _refs("difforge.adapters", {
        "lora": "LoraAdapter", "dora": "DoraAdapter", "loha": "LohaAdapter", "lokr": "LokrAdapter", "oft": "OftAdapter",
        "difffit": "DiffFitAdapter", "sara": "SaraAdapter", "orthogonal": "OrthogonalAdapter",
        "sparse-ft": "SparseFtAdapter", "sc-tuner": "ScTunerAdapter", "ip-adapter": "IpAdapter"}, call=True)


@hookimpl
def difforge_register_samplers():
    return _refs("difforge.sampling.samplers", {"ddpm": "sample_ddpm", "ddim": "sample_ddim",
                                                "consistency": "sample_consistency", "euler": "sample_euler",
                                                "flow_euler": "sample_flow_euler"})


@hookimpl
def difforge_register_guidance():
    return _refs("difforge.sampling.guidance", {"cfg": "classifier_free_guidance"})


@hookimpl
def difforge_register_rewards():
    return _refs("difforge.rewards", {"jpeg-compressibility": "JpegCompressibility",
                                      "jpeg-incompressibility": "JpegIncompressibility",
                                      "colourfulness": "Colourfulness"}, call=True)


@hookimpl
def difforge_register_metrics():
    return _refs("difforge.metrics", {"pixel-statistics": "pixel_statistics"})


@hookimpl
def difforge_register_renderers():
    return _refs("difforge.sampling.grid", {"auto": "render_auto"})
