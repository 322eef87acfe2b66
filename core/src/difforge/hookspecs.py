"""The hooks a difforge plugin can implement.

A plugin is a module (or object) exposed through the ``difforge`` entry-point group and
decorated with :data:`difforge.hookimpl`::

    # pyproject.toml
    [project.entry-points.difforge]
    my_plugin = "my_package.plugin"

    # my_package/plugin.py
    from difforge import hookimpl

    @hookimpl
    def difforge_register_rewards():
        return {"brightness": BrightnessReward()}

Registration hooks (``difforge_register_<kind>``) take no arguments and return a mapping
``{name: component}``; a component may be given as ``difforge.lazy("module:attribute")`` so
that its module (and torch) is imported only when the component is first used, which keeps
``difforge --help`` fast. They are *historic*: a plugin registered after start-up (e.g. in a
test, via :func:`difforge.plugins.register_plugin`) is still asked. The registries are
order-free; a name registered by two plugins is an error naming both.

:func:`difforge_resolve_model` is the one ``firstresult`` hook: exactly one plugin answers
"where is the model called X?".
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT_NAME = "difforge"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec(historic=True)
def difforge_register_backbones() -> dict[str, Any]:
    """Backbone builders: ``name -> callable(**options) -> difforge.Backbone``.

    Used by ``model.build`` in a training config (``model: {build: NAME, options: {...}}``).
    """


@hookspec(historic=True)
def difforge_register_denoisers() -> dict[str, Any]:
    """Denoiser calling conventions: ``class name -> difforge.backbone.DenoiserSpec``.

    The name is the denoiser's class name (``type(denoiser).__name__``); the spec says which
    keyword takes the condition and the timestep, what the model is conditioned on, which extra
    inputs it accepts per call and the shape of one sample. Built-ins: ``UNet2DConditionModel``,
    ``UNet2DModel``, ``DiTTransformer2DModel``, ``UNet1DModel``, ``UNet3DConditionModel``.
    """


@hookspec(historic=True)
def difforge_register_parameterizations() -> dict[str, Any]:
    """Prediction targets: ``name -> difforge.backbone.Parameterization`` subclass.

    Built-ins: ``epsilon``, ``v``, ``x0``, ``flow``.
    """


@hookspec(historic=True)
def difforge_register_schedulers() -> dict[str, Any]:
    """Noise schedulers: ``name -> diffusers SchedulerMixin`` subclass (used by ``model.scheduler``)."""


@hookspec(historic=True)
def difforge_register_datasets() -> dict[str, Any]:
    """Datasets: ``name -> callable(**options) -> torch.utils.data.Dataset``.

    Items are dicts: the training sample under ``"sample"`` (any shape its denoiser takes, e.g.
    ``(C, T, H, W)`` for video; image datasets may use the alias ``"pixel_values"``), and what
    conditions it: ``"caption"`` (text), ``"class_labels"``, ``"condition"`` (a vector, e.g. an
    observation), plus any extra model input the denoiser or its adapters take by name (e.g.
    ``"controlnet_cond"``). Preference datasets yield ``"sample_chosen"`` / ``"sample_rejected"``.
    """


@hookspec(historic=True)
def difforge_register_objectives() -> dict[str, Any]:
    """Training objectives: ``name -> difforge.training.Objective`` subclass."""


@hookspec(historic=True)
def difforge_register_adapters() -> dict[str, Any]:
    """Adapter types: ``name -> difforge.adapters.AdapterType`` (inject / scale / merge / save)."""


@hookspec(historic=True)
def difforge_register_rewards() -> dict[str, Any]:
    """Rewards: ``name -> difforge.rewards.Reward`` (images and prompts -> scores)."""


@hookspec(historic=True)
def difforge_register_captioners() -> dict[str, Any]:
    """Captioners: ``name -> callable(images) -> list[str]``, one caption describing each image
    of an ``(N, 3, H, W)`` batch in [-1, 1] (DCPO's captioning strategy for rejected images)."""


@hookspec(historic=True)
def difforge_register_samplers() -> dict[str, Any]:
    """Samplers: ``name -> pure function`` with the signature of :func:`difforge.sampling.sample_ddim`."""


@hookspec(historic=True)
def difforge_register_guidance() -> dict[str, Any]:
    """Guidance: ``name -> callable(denoise_fn, **options) -> denoise_fn`` wrapping a denoiser."""


@hookspec(historic=True)
def difforge_register_steering() -> dict[str, Any]:
    """Inference-time steering: ``name -> callable(backbone, prompts, *, reward, particles,
    num_samples, num_steps, sampler, guidance_scale, generator, **options) -> difforge.sampling.Steered``.

    A steering method draws ``particles`` candidates per output sample (one output per prompt,
    or ``num_samples`` of an unconditional model) and uses ``reward`` (a
    :class:`difforge.rewards.Reward`) to pick, reweight or resample them while or after
    sampling; it returns the chosen samples with their rewards and the denoiser evaluations it
    spent per sample. ``difforge sample --steer NAME --reward NAME --particles K`` runs it.
    """


@hookspec(historic=True)
def difforge_register_metrics() -> dict[str, Any]:
    """Metrics: ``name -> callable(samples, **context) -> dict[str, float]``."""


@hookspec(historic=True)
def difforge_register_renderers() -> dict[str, Any]:
    """Sample renderers: ``name -> callable(samples) -> uint8 array (N, H, W, 3)``, one RGB tile
    per sample, for the sample kinds of a domain (a spectrogram with its waveform, a mesh
    turntable, a volume's three planes). Grids, training previews and reports name them with
    ``renderer=`` / ``output.sample_renderer`` / ``difforge sample --renderer``."""


@hookspec(historic=True)
def difforge_register_commands() -> dict[str, Any]:
    """CLI sub-commands: ``name -> difforge.cli.Command`` (help, arguments, run)."""


@hookspec(firstresult=True)
def difforge_resolve_model(reference: str) -> str | None:
    """Return a local path for a model reference such as ``"shapes-sd-tiny"``, or ``None``.

    The first plugin that knows the reference answers; plain paths never reach this hook.
    """
