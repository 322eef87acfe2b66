"""The public API for plugins and method packages: everything a distribution that extends
difforge may import, besides the top-level ``difforge`` module (``train``, ``sample``, ``load``,
``Backbone``, ``hookimpl``, ``lazy``...).

First-party packages and plugins import nothing else of difforge (a test walks them), so what
is listed here is what difforge keeps stable for extension authors::

    from difforge.plugin_api import DenoiserSpec, Objective, Reward, hookimpl, lazy

Names load lazily: importing this module imports neither torch nor diffusers.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> (difforge module, attribute)
EXPORTS: dict[str, tuple[str, str]] = {
    # plugin system
    "hookimpl": ("hookspecs", "hookimpl"),
    "lazy": ("registry", "lazy"),
    "LazyComponent": ("registry", "LazyComponent"),
    "Registry": ("registry", "Registry"),
    "get_registry": ("plugins", "get_registry"),
    "register_plugin": ("plugins", "register_plugin"),
    "DifforgePluginManager": ("plugins", "DifforgePluginManager"),
    "load_plugins": ("plugins", "load_plugins"),
    "reset_plugin_manager": ("plugins", "reset_plugin_manager"),
    "Command": ("cli", "Command"),
    "cli_main": ("cli", "main"),
    "adapter_argument": ("cli", "adapter_argument"),
    "model_arguments": ("cli", "model_arguments"),
    "load_model_arguments": ("cli", "load_model_arguments"),
    "option_argument": ("cli", "option_argument"),
    # errors
    "DifforgeError": ("errors", "DifforgeError"),
    "RegistryError": ("errors", "RegistryError"),
    "ConfigError": ("errors", "ConfigError"),
    "DataError": ("errors", "DataError"),
    "TrainingError": ("errors", "TrainingError"),
    "CheckpointError": ("errors", "CheckpointError"),
    "SamplingError": ("errors", "SamplingError"),
    "WeightsError": ("errors", "WeightsError"),
    "UsageError": ("errors", "UsageError"),
    "read_safetensors": ("weights", "read_safetensors"),
    "require_finite": ("weights", "require_finite"),
    "dataset_attribute": ("training.data", "dataset_attribute"),
    "read_text": ("training.data", "read_text"),
    "read_image": ("training.data", "read_image"),
    # backbone
    "Backbone": ("backbone", "Backbone"),
    "DenoiserSpec": ("backbone.specs", "DenoiserSpec"),
    "ControlNetDenoiser": ("backbone.controlnet", "ControlNetDenoiser"),
    "controlnet_from_unet": ("backbone.controlnet", "controlnet_from_unet"),
    "CONDITIONING_KINDS": ("backbone.specs", "CONDITIONING_KINDS"),
    "image_shape": ("backbone.specs", "image_shape"),
    "sequence_shape": ("backbone.specs", "sequence_shape"),
    "Parameterization": ("backbone.parameterization", "Parameterization"),
    "load_backbone": ("backbone", "load_backbone"),
    "backbone_builder": ("backbone.builders", "backbone_builder"),
    "resolve_model_path": ("backbone", "resolve_model_path"),
    # training
    "Objective": ("training.objectives", "Objective"),
    "DenoisingObjective": ("training.objectives", "DenoisingObjective"),
    "TrainResult": ("training.trainer", "TrainResult"),
    "load_image": ("training.data", "load_image"),
    "batch_samples": ("training.data", "batch_samples"),
    "load_freeze_mask": ("training.freeze_mask", "load_freeze_mask"),
    "SAMPLE_KEY": ("training.data", "SAMPLE_KEY"),
    "TrainingContext": ("training.context", "TrainingContext"),
    "ReferenceModel": ("training.reference", "ReferenceModel"),
    "PreferencePairsDataset": ("training.preferences", "PreferencePairsDataset"),
    "SAMPLE_FILE_KEY": ("training.preferences", "SAMPLE_FILE_KEY"),
    "read_pair_image": ("training.preferences", "read_pair_image"),
    "read_sample_file": ("training.preferences", "read_sample_file"),
    "image_to_tensor": ("training.data", "image_to_tensor"),
    # rewards
    "Reward": ("rewards", "Reward"),
    "ImageReward": ("rewards", "ImageReward"),
    # adapters
    "AdapterType": ("adapters.base", "AdapterType"),
    "AdapterSet": ("adapters.composition", "AdapterSet"),
    "adapter_inputs": ("adapters.inputs", "adapter_inputs"),
    "LayerAdapter": ("adapters.layer_adapter", "LayerAdapter"),
    "module_matches": ("adapters.layer_adapter", "module_matches"),
    "Tuner": ("adapters.tuned_layer", "Tuner"),
    "base_module_names": ("adapters.tuned_layer", "base_module_names"),
    # sampling and outputs
    "SamplingSchedule": ("sampling.schedule", "SamplingSchedule"),
    "schedule_from_scheduler": ("sampling.schedule", "schedule_from_scheduler"),
    "classifier_free_guidance": ("sampling.guidance", "classifier_free_guidance"),
    "guidance_scale_embedding": ("sampling.guidance", "guidance_scale_embedding"),
    "ddpm_posterior": ("sampling.samplers", "ddpm_posterior"),
    "ddpm_step": ("sampling.samplers", "ddpm_step"),
    "timestep_batch": ("sampling.samplers", "timestep_batch"),
    "Steered": ("sampling.steering", "Steered"),
    "to_uint8": ("sampling.grid", "to_uint8"),
    "make_grid": ("sampling.grid", "make_grid"),
    "save_grid": ("sampling.grid", "save_grid"),
    "labelled_grid": ("sampling.grid", "labelled_grid"),
    "render_auto": ("sampling.grid", "render_auto"),
    "write_report": ("report", "write_report"),
    "atomic_write": ("checkpointing", "atomic_write"),
    "atomic_save_json": ("checkpointing", "atomic_save_json"),
    "atomic_save_safetensors": ("checkpointing", "atomic_save_safetensors"),
}

__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module, attribute = EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'difforge.plugin_api' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"difforge.{module}"), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
