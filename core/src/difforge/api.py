"""The Python API behind every CLI command."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .backbone import Backbone, load_backbone
from .config import RunConfig, load_config
from .training import Trainer, TrainResult


def train(config: RunConfig | str | Path | dict[str, Any], overrides: Sequence[str] | None = None,
          **trainer_kwargs: Any) -> TrainResult:
    """Train from a :class:`RunConfig`, a YAML path, or a dict (what ``difforge train`` runs)."""
    if isinstance(config, RunConfig):
        if overrides:
            config = load_config(data=config.model_dump(), overrides=list(overrides))
    elif isinstance(config, dict):
        config = load_config(data=config, overrides=list(overrides or []))
    else:
        config = load_config(config, overrides=list(overrides or []))
    return Trainer(config, **trainer_kwargs).fit()


def load(model: str | Path, adapters: Sequence[tuple[str | Path, float]] = (), **options: Any) -> Backbone:
    """Load a backbone and apply adapters ``[(path, weight), ...]`` (any type difforge saved, or
    diffusers / kohya LoRA files). Text-encoder adapters (e.g. from TexForce) go to the text
    encoder (``backbone.text_encoder_adapters``), the others to the denoiser (``backbone.adapters``)."""
    from .adapters import AdapterSet, adapter_component_of_file

    backbone = load_backbone(model, **options)
    for i, (path, weight) in enumerate(adapters):
        if adapter_component_of_file(path) == "text_encoder":
            if backbone.text_encoder is None:
                from .errors import UsageError

                raise UsageError(f"adapter {path}: a text-encoder adapter, but model {model} has no text encoder")
            if getattr(backbone, "text_encoder_adapters", None) is None:
                backbone.text_encoder_adapters = AdapterSet(backbone.text_encoder)
            backbone.text_encoder_adapters.load(path, name=f"adapter_{i}", weight=weight)
        else:
            if getattr(backbone, "adapters", None) is None:
                backbone.adapters = AdapterSet(backbone.denoiser)
            backbone.adapters.load(path, name=f"adapter_{i}", weight=weight)
    return backbone


def steer(
    model: str | Path | Backbone,
    prompts: Sequence[str] | None = None,
    *,
    method: str = "fk",
    reward: str = "",
    particles: int = 4,
    adapters: Sequence[tuple[str | Path, float]] = (),
    num_samples: int = 4,
    num_steps: int = 25,
    sampler: str | None = None,
    guidance_scale: float = 1.0,
    seed: int = 0,
    **options: Any,
):
    """Sample with a registered steering method (``fk``, ``svdd``, ``best-of-n``, ...) toward a
    registered reward, ``particles`` candidates per output sample; returns a
    :class:`~difforge.sampling.Steered` (samples, their rewards, denoiser evaluations per sample).
    ``sampler`` (default: the method's own) and ``options`` go to the method."""
    from .errors import UsageError
    from .plugins import get_registry

    if not reward:
        raise UsageError(f"steering {method!r} needs a reward to steer toward (--reward NAME)")
    if particles < 1:
        raise UsageError(f"steering {method!r}: particles must be at least 1, got {particles}")
    steering = _steering_method(method)
    scorer = get_registry("rewards").get(reward)
    backbone = model if isinstance(model, Backbone) else load(model, adapters)
    if backbone.conditioning == "text" and not prompts:
        raise UsageError(f"model {model}: text-conditioned, so it needs at least one prompt (--prompt)")
    if scorer.needs_prompts and not prompts:
        raise UsageError(f"reward {reward!r} scores samples against their prompts; give --prompt")
    backbone.eval()
    if sampler is not None:
        options["sampler"] = sampler
    return steering(backbone, list(prompts) if prompts else None, reward=scorer, particles=particles,
                    num_samples=num_samples, num_steps=num_steps, guidance_scale=guidance_scale,
                    generator=torch.Generator().manual_seed(seed), **options)


def _check_sampler_options(sampler: str, options: dict[str, Any]) -> None:
    """One line naming an option the registered ``sampler`` does not take."""
    import inspect

    from .errors import UsageError
    from .plugins import get_registry

    fixed = {"denoise", "noise", "schedule", "generator", "callback"}
    accepted = [name for name in inspect.signature(get_registry("samplers").get(sampler)).parameters
                if name not in fixed]
    for key in options:
        if key not in accepted:
            raise UsageError(f"sampler {sampler!r} has no option {key!r} (its options: "
                             f"{', '.join(accepted) or 'none'})")


def _steering_method(method: str):
    """The registered steering method ``method``; one line when none is installed."""
    from .errors import UsageError
    from .plugins import get_registry

    registry = get_registry("steering")
    if not registry.names():
        raise UsageError(f"steering {method!r}: no steering method is installed (pip install difforge-steer, "
                         "packages/steer in a checkout)")
    return registry.get(method)


def sample(
    model: str | Path | Backbone,
    prompts: Sequence[str] | None = None,
    *,
    adapters: Sequence[tuple[str | Path, float]] = (),
    num_samples: int = 4,
    num_steps: int = 25,
    sampler: str | None = None,
    guidance_scale: float = 1.0,
    seed: int = 0,
    out: str | Path | None = None,
    metrics: Sequence[str] = (),
    renderer: str = "auto",
    steering: str | None = None,
    reward: str | None = None,
    particles: int = 4,
    steer_options: dict[str, Any] | None = None,
    sampler_options: dict[str, Any] | None = None,
) -> torch.Tensor | Path:
    """Sample a model; returns images in [-1, 1], or the path of a labelled PNG grid (one row
    per prompt, drawn by ``renderer``) when ``out`` is given. ``metrics`` names registered
    metrics: their values are printed as JSON and, with ``out``, written beside the grid
    (``<out>.json``). ``sampler`` defaults to DDIM. With ``steering`` (a registered steering
    method) the samples are steered toward ``reward`` with ``particles`` candidates each
    (:func:`steer`; ``sampler`` is then the method's proposal sampler); the rewards and the cost
    go into that JSON under ``"steering"``. ``sampler_options`` are keyword arguments of the
    sampler (e.g. DDIM's ``eta``, DC-Solver's ``dc_ratios``), for plain sampling only."""
    from .plugins import get_registry
    from .sampling.grid import save_grid

    if steering:
        _steering_method(steering)  # an unknown method fails before any weights load
        if sampler_options:
            from .errors import UsageError

            raise UsageError("sampler options apply to plain sampling; a steering method takes its own "
                             "(--steer-option)")
    elif sampler_options:
        _check_sampler_options(sampler or "ddim", sampler_options)
    backbone = model if isinstance(model, Backbone) else load(model, adapters)
    if backbone.conditioning == "text" and not prompts:
        from .errors import UsageError

        raise UsageError(f"model {model}: text-conditioned, so it needs at least one prompt (--prompt)")
    backbone.eval()
    report: dict[str, Any] = {}
    if steering:
        steered = steer(backbone, prompts, method=steering, reward=reward or "", particles=particles,
                        num_samples=num_samples, num_steps=num_steps, sampler=sampler, guidance_scale=guidance_scale,
                        seed=seed, **(steer_options or {}))
        images = steered.samples
        report["steering"] = {"method": steering, "reward": reward, "particles": particles, "nfe": steered.nfe,
                              "rewards": steered.rewards.tolist(), "mean_reward": steered.rewards.mean().item()}
    else:
        images = backbone.sample(
            list(prompts) if prompts else None,
            num_samples=num_samples,
            num_steps=num_steps,
            sampler=sampler or "ddim",
            guidance_scale=guidance_scale,
            generator=torch.Generator().manual_seed(seed),
            **(sampler_options or {}),
        )
    if not torch.isfinite(images).all():
        from .errors import SamplingError

        source = ", ".join([str(model if not isinstance(model, Backbone) else type(model).__name__),
                            *(str(path) for path, _ in adapters)])
        raise SamplingError(f"sampling {source} gave non-finite values (NaN or inf weights in the model or "
                            "an adapter?); nothing was written")
    report.update({name: get_registry("metrics").get(name)(images) for name in metrics})
    if report:
        from .checkpointing import atomic_save_json

        print(json.dumps(report, indent=2))
        if out is not None:
            atomic_save_json(report, Path(out).with_suffix(".json"))
    if out is None:
        return images
    name = model.__class__.__name__ if isinstance(model, Backbone) else Path(str(model)).name
    title = name + "".join(f" + {Path(str(path)).name} ×{weight:g}" for path, weight in adapters)
    if steering:
        title += f" · {steering} toward {reward}, {particles} particles, {steered.nfe} NFE"
    else:
        title += f" · {sampler or 'ddim'} {num_steps} steps"
    title += f" · guidance {guidance_scale:g}"
    if prompts:
        return save_grid(images, out, columns=1, row_labels=[f"“{p}”" for p in prompts],
                         column_labels=[f"seed {seed}"], title=title, renderer=renderer)
    return save_grid(images, out, title=f"{title} · seed {seed}", renderer=renderer)
