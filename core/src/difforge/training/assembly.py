"""Assembly: a :class:`~difforge.config.RunConfig` turned into the parts of a run.

Every registry look-up of training happens here (backbone builders, datasets, objectives,
adapter types); the loop (:mod:`.trainer`) and the checkpoint state (:mod:`.state`) only use
the parts. The order of the steps is fixed: each may draw from the seeded random streams, and
a run is reproducible only if they draw in the same order every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..adapters.composition import AdapterSet
from ..adapters.lora.config import TEXT_ENCODER_TARGET_MODULES
from ..adapters.peft_tuner import PeftAdapter
from ..backbone.backbone import Backbone
from ..backbone.loading import load_backbone
from ..config import RunConfig
from ..errors import ConfigError, DifforgeError
from ..plugins import get_registry
from ..weights import first_line
from .data import SkipCorrupt
from .objectives import DenoisingObjective, Objective
from .transforms import Augmented, RandomFlip


def build_backbone(config: RunConfig) -> Backbone:
    """The backbone a config describes (loaded from disk or built from a registered builder)."""
    m = config.model
    options = {"loss_weighting": m.loss_weighting, "snr_gamma": m.snr_gamma}
    if m.parameterization:
        options["parameterization"] = m.parameterization
    if m.pretrained is not None:
        return load_backbone(m.pretrained, **options)
    builder = get_registry("backbones").get(m.build)
    return builder(**{**m.options, **options})


def build_dataset(config: RunConfig) -> Dataset:
    """The dataset a config describes; bad options name ``data.options``."""
    if config.data.dataset is None:
        raise ConfigError("data.dataset: null means the dataset is given in code (Trainer(config, dataset=...)), "
                          "and none was given")
    factory = get_registry("datasets").get(config.data.dataset)
    schema = getattr(factory, "options_model", None)
    if schema is not None:
        schema.model_validate(config.data.options)
    return factory(**config.data.options)


def build_objective(config: RunConfig, backbone: Backbone) -> Objective:
    """The objective a config names, with its options (the denoising family also gets
    ``data.caption_dropout`` as its default)."""
    cls = get_registry("objectives").get(config.objective.name)
    if issubclass(cls, DenoisingObjective):
        return cls(backbone, default_caption_dropout=config.data.caption_dropout, **config.objective.options)
    return cls(backbone, **config.objective.options)


def build_accelerator(config: RunConfig, project_dir: str):
    """The ``accelerate.Accelerator`` of a run (device, precision, accumulation, trackers), with
    the global seeds set and the run's own generator; returns ``(accelerator, generator)``."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    t = config.train
    use_cpu = t.device == "cpu" or (t.device == "auto" and not torch.cuda.is_available())
    if t.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' requested but CUDA is not available")
    precision = t.mixed_precision
    if precision == "auto":
        precision = "bf16" if (not use_cpu and torch.cuda.is_bf16_supported()) else "no"
    log_with = None
    if config.output.tensorboard:
        try:
            import tensorboard  # noqa: F401

            log_with = "tensorboard"
        except ImportError:
            log_with = None
    accelerator = Accelerator(cpu=use_cpu, mixed_precision=precision, gradient_accumulation_steps=t.grad_accum,
                              log_with=log_with, project_dir=project_dir)
    set_seed(t.seed + accelerator.process_index)
    generator = torch.Generator().manual_seed(t.seed * 7919 + accelerator.process_index)
    return accelerator, generator


@dataclass
class TrainedParts:
    """What a run trains: the modules the objective declared, the adapter on them (if any), and
    the parameters the optimizer steps, by checkpoint name."""

    modules: dict[str, nn.Module]
    adapters: AdapterSet | None
    named: dict[str, nn.Parameter]

    @property
    def parameters(self) -> list[nn.Parameter]:
        return list(self.named.values())

    def holds_trained(self, module: nn.Module) -> bool:
        """Whether ``module`` contains any trained parameter."""
        trained = {id(p) for p in self.named.values()}
        return any(id(p) in trained for p in module.parameters())


def attach_trainable(config: RunConfig, backbone: Backbone, objective: Objective) -> TrainedParts:
    """Freeze everything, then make trainable what the objective declares: the run's adapter on
    its module, or the modules themselves (minus a FreezeAsGuard mask on the denoiser)."""
    modules = objective.trainable_modules(config)
    if not modules or any(m is None for m in modules.values()):
        missing = [name for name, m in modules.items() if m is None]
        raise ConfigError(f"objective.name: {config.objective.name!r} trains {', '.join(missing) or 'nothing'}, "
                          "which this model does not have")
    if config.adapter is not None and config.train.freeze_mask:
        raise ConfigError("train.freeze_mask: a FreezeAsGuard mask applies to full fine-tuning; "
                          "remove the adapter section")
    backbone.denoiser.requires_grad_(False)
    for module in modules.values():
        module.requires_grad_(False)
    adapters = None
    if config.adapter is not None:
        if len(modules) != 1:
            raise ConfigError(f"adapter: objective {config.objective.name!r} trains {len(modules)} modules "
                              f"({', '.join(modules)}); an adapter goes on one")
        (name, module), = modules.items()
        _check_adapter_fits(config, backbone, module)
        adapters = AdapterSet(module)
        options = dict(config.adapter.options)
        if module is backbone.text_encoder:
            options.setdefault("target_modules", list(TEXT_ENCODER_TARGET_MODULES))
        try:
            adapters.add(config.adapter.type, config.adapter.name, **options)
        except (ValueError, TypeError, KeyError) as exc:  # e.g. target_modules matching no module
            if isinstance(exc, DifforgeError):
                raise
            raise ConfigError(f"adapter.options: {first_line(exc)} ({name} has modules such as "
                              f"{', '.join(_module_examples(module))})") from None
        ordered = adapters.trainable_parameters(config.adapter.name)  # the optimizer's order
        for p in ordered:
            p.requires_grad_(True)
    else:
        for module in modules.values():
            module.requires_grad_(True)
        if config.train.freeze_mask:
            _apply_freeze_mask(backbone.denoiser, config.train.freeze_mask)
        ordered = [p for module in modules.values() for p in module.parameters() if p.requires_grad]
    single = len(modules) == 1
    names = {id(p): n if single else f"{key}.{n}" for key, module in modules.items()
             for n, p in module.named_parameters()}
    return TrainedParts(modules, adapters, {names[id(p)]: p for p in ordered})


def _module_examples(module: nn.Module, count: int = 5) -> list[str]:
    """A few distinct names of ``module``'s linear/conv layers (what ``target_modules`` matches)."""
    names = {n.rsplit(".", 1)[-1] for n, m in module.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    return sorted(n for n in names if n and not n.isdigit())[:count]


def _check_adapter_fits(config: RunConfig, backbone: Backbone, module: nn.Module) -> None:
    if config.adapter.component == "text_encoder":
        if backbone.text_encoder is None:
            raise ConfigError("adapter.component: 'text_encoder', but this model has no text encoder")
        if not isinstance(get_registry("adapters").get(config.adapter.type), PeftAdapter):
            raise ConfigError(f"adapter.component: the text encoder takes the PEFT (LoRA family) adapter types "
                              f"(lora, dora, loha, lokr, oft), not {config.adapter.type!r}")


def _apply_freeze_mask(denoiser: nn.Module, path: str) -> None:
    from .freeze_mask import load_freeze_mask

    try:
        frozen = load_freeze_mask(path)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(str(err)) from None
    params = dict(denoiser.named_parameters())
    unknown = [n for n in frozen if n not in params]
    if unknown:
        raise ConfigError(f"train.freeze_mask: {path}: {len(unknown)} tensors are not in the model, "
                          f"e.g. {unknown[0]}")
    for name in frozen:
        params[name].requires_grad_(False)


def place_models(config: RunConfig, backbone: Backbone, trained: TrainedParts, accelerator) -> None:
    """Gradient checkpointing, frozen components on the device in the run's precision, the
    trained modules on the device."""
    denoiser = backbone.denoiser
    if config.train.gradient_checkpointing:
        if not getattr(denoiser, "_supports_gradient_checkpointing", False):
            raise ConfigError(f"train.gradient_checkpointing: {type(denoiser).__name__} does not support it")
        denoiser.enable_gradient_checkpointing()
    weight_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(accelerator.mixed_precision, torch.float32)
    trained_modules = list(trained.modules.values())
    for frozen in (backbone.vae, backbone.text_encoder):
        if frozen is not None and not any(frozen is m for m in trained_modules):
            frozen.to(accelerator.device).eval()
            if weight_dtype != torch.float32:
                frozen.to(dtype=weight_dtype)
    denoiser.to(accelerator.device)
    for module in trained_modules:
        module.to(accelerator.device)


def build_ema(config: RunConfig, parameters: list[nn.Parameter]):
    """diffusers' ``EMAModel`` over the trained parameters, or ``None``."""
    if config.train.ema is None:
        return None
    from diffusers.training_utils import EMAModel

    return EMAModel(parameters, decay=config.train.ema.decay, update_after_step=config.train.ema.update_after_step)


def build_optimization(config: RunConfig, parameters: list[nn.Parameter]) -> tuple[Any, Any]:
    """The optimizer (AdamW, or 8-bit AdamW on CUDA) and the LR schedule."""
    from diffusers.optimization import get_scheduler

    t = config.train
    if t.optimizer == "adamw8bit":
        if not torch.cuda.is_available():
            raise ConfigError("train.optimizer: 'adamw8bit' needs CUDA (bitsandbytes), which is not available")
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise ConfigError("train.optimizer: 'adamw8bit' needs bitsandbytes: "
                              "pip install 'difforge[bnb]'") from None
        opt_cls = bnb.optim.AdamW8bit
    else:
        opt_cls = torch.optim.AdamW
    optimizer = opt_cls(parameters, lr=t.lr, betas=t.adam_betas, weight_decay=t.weight_decay)
    lr_scheduler = get_scheduler(t.lr_scheduler, optimizer, num_warmup_steps=t.warmup_steps,
                                 num_training_steps=t.steps)
    return optimizer, lr_scheduler


def wrap_dataset(config: RunConfig, dataset: Dataset) -> Dataset:
    """The dataset as the loop reads it: corrupt samples skipped when ``data.on_corrupt: skip``,
    items flipped by ``data.random_flip`` (:mod:`.transforms`, seeded per item)."""
    if config.data.on_corrupt == "skip":
        dataset = SkipCorrupt(dataset)
    if config.data.random_flip:
        dataset = Augmented(dataset, [RandomFlip(dims=(-1,))], seed=config.train.seed)
    return dataset


__all__ = ["TrainedParts", "attach_trainable", "build_accelerator", "build_backbone", "build_dataset", "build_ema",
           "build_objective", "build_optimization", "place_models", "wrap_dataset"]
