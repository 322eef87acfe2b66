"""Typed training configuration, read from YAML with ``--set key.path=value`` overrides.

Every section forbids unknown keys. Any problem becomes a one-line :class:`ConfigError`
naming the file (or the override), the key and the value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelConfig(_Section):
    """Where the backbone comes from: ``pretrained`` (a local path, a single ``.safetensors``
    file, or a name a plugin resolves) or ``build`` (a registered builder with ``options``)."""

    pretrained: str | None = None
    build: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    parameterization: str | None = None
    loss_weighting: Literal["uniform", "min_snr"] = "uniform"
    snr_gamma: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if (self.pretrained is None) == (self.build is None):
            raise ValueError("set exactly one of model.pretrained or model.build")
        return self


class DataConfig(_Section):
    """The training data: a registered ``dataset`` with its ``options``; ``dataset: null`` when
    the dataset object is given in code (``Trainer(config, dataset=...)``)."""

    dataset: str | None = "image-folder"
    options: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = Field(4, ge=1)
    num_workers: int = Field(0, ge=0)
    on_corrupt: Literal["error", "skip"] = "error"
    caption_dropout: float = Field(0.0, ge=0, le=1)
    random_flip: bool = Field(False, description="flip each item's samples along the last axis with probability "
                                                 "0.5 (images, video frames), seeded per item")


class AdapterConfig(_Section):
    """The adapter to train; omit the section to fine-tune the whole denoiser. ``component``
    chooses the model it is attached to: the denoiser, or the text encoder (the LoRA family
    only; e.g. TexForce)."""

    type: str = "lora"
    name: str = "default"
    component: Literal["denoiser", "text_encoder"] = "denoiser"
    options: dict[str, Any] = Field(default_factory=dict)


class ObjectiveConfig(_Section):
    """The training objective (registered name) and its options."""

    name: str = "denoising"
    options: dict[str, Any] = Field(default_factory=dict)


class EMAConfig(_Section):
    """Exponential moving average of the trained parameters."""

    decay: float = Field(0.999, gt=0, lt=1)
    update_after_step: int = Field(0, ge=0)


class TrainConfig(_Section):
    """Optimisation settings of the loop."""

    steps: int = Field(100, ge=1)
    lr: float = Field(1e-4, gt=0)
    lr_scheduler: Literal[
        "constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"
    ] = "constant"
    warmup_steps: int = Field(0, ge=0)
    grad_accum: int = Field(1, ge=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    optimizer: Literal["adamw", "adamw8bit"] = "adamw"
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    gradient_checkpointing: bool = False
    ema: EMAConfig | None = None
    compile: bool = False
    seed: int = 0
    on_nan: Literal["stop", "skip"] = "stop"
    max_consecutive_skips: int = Field(10, ge=1, description="with on_nan: skip, stop after this many "
                                                             "non-finite batches in a row")
    freeze_mask: str | None = Field(
        None, description="a freeze mask (JSON with a 'frozen' list, e.g. from difforge-guard's freeze-guard): "
                          "these tensors stay frozen"
    )
    resume: str | None = Field(
        None, description="'auto' (latest checkpoint in output.dir), a checkpoint path, or null"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"


class OutputConfig(_Section):
    """Where and how often the run writes."""

    dir: str = "outputs/run"
    checkpoint_every: int = Field(0, ge=0, description="0: only at the end")
    keep_last: int | None = Field(2, ge=1)
    log_every: int = Field(10, ge=1)
    tensorboard: bool = True
    progress: bool = True
    sample_every: int = Field(0, ge=0)
    sample_prompts: list[str] = Field(default_factory=list)
    samples_per_prompt: int = Field(1, ge=1)
    sample_steps: int = Field(20, ge=1)
    sample_guidance: float = Field(1.0, ge=0)
    sample_seed: int = 1234
    sample_metrics: list[str] = Field(default_factory=list,
                                      description="registered metrics computed on each sample grid (JSON beside it)")
    sample_renderer: str = Field("auto", description="how sample grids draw samples: 'auto' (images, video "
                                                     "frames) or a renderer a plugin registers")
    report: bool = Field(True, description="write report.html into the run directory at the end")
    overwrite: bool = Field(False, description="replace the run already in output.dir (its checkpoints and "
                                               "outputs are deleted) instead of refusing to start")


class RunConfig(_Section):
    """A whole training run: ``model``, ``data``, ``adapter``, ``objective``, ``train``, ``output``."""

    model: ModelConfig
    data: DataConfig = Field(default_factory=DataConfig)
    adapter: AdapterConfig | None = None
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.lr=1e-4")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: invalid key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> tuple[dict[str, Any], set[str]]:
    """Apply ``key.path=value`` overrides (values parsed as YAML); returns data and the keys set."""
    touched: set[str] = set()
    for item in overrides or []:
        path, value = _parse_override(item)
        node = data
        for i, part in enumerate(path[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            elif not isinstance(nxt, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(path[: i + 1])} is not a section")
            node = nxt
        node[path[-1]] = value
        touched.add(".".join(path))
    return data, touched


def _dotted(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as ``a.b.c`` (parts that are not plain printable text quoted,
    so a key holding a line break cannot split the one-line message)."""
    return ".".join(p if isinstance(p, str) and p.isprintable() and p else repr(p) for p in loc)


def _format_error(err: dict[str, Any], source: str, touched: set[str]) -> str:
    key = _dotted(err["loc"])
    where = f"{source}: {key}"
    if any(key == t or key.startswith(t + ".") for t in touched):
        where = f"--set {key}"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    value = err.get("input")
    shown = "" if err["type"] in ("missing",) or isinstance(value, dict) else f" (got {value!r})"
    return f"{where}: {msg}{shown}"


def validate_config(data: dict[str, Any], source: str = "<config>", touched: set[str] | None = None) -> RunConfig:
    """Validate a config mapping; errors name ``source`` and the key."""
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(_format_error(err, source, touched or set()) for err in exc.errors())) from None
    _validate_components(config, source)
    return config


def _validate_components(config: RunConfig, source: str) -> None:
    """Check registered names and their options before anything heavy is loaded; every problem
    is reported (one line each), not only the first."""
    from .errors import RegistryError
    from .plugins import get_registry

    checks = [("objectives", config.objective.name, "objective.name", config.objective.options, "objective.options")]
    if config.data.dataset is not None:
        checks.append(("datasets", config.data.dataset, "data.dataset", config.data.options, "data.options"))
    if config.adapter is not None:
        checks.append(("adapters", config.adapter.type, "adapter.type", config.adapter.options, "adapter.options"))
    if config.model.build is not None:
        checks.append(("backbones", config.model.build, "model.build", None, None))
    if config.model.parameterization is not None:
        checks.append(("parameterizations", config.model.parameterization, "model.parameterization", None, None))
    for metric in config.output.sample_metrics:
        checks.append(("metrics", metric, "output.sample_metrics", None, None))
    components, problems = {}, []
    for kind, name, key, options, options_key in checks:
        try:
            component = components[kind] = get_registry(kind).get(name)
        except RegistryError as exc:
            problems.append(f"{source}: {key}: {exc}")
            continue
        schema = getattr(component, "options_model", None)
        if schema is not None and options is not None:
            try:
                schema.model_validate(options)
            except ValidationError as exc:
                for err in exc.errors():
                    sub = _dotted(err["loc"])
                    msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
                    shown = "" if err["type"] == "missing" else f" (got {err.get('input')!r})"
                    problems.append(f"{source}: {options_key}{'.' + sub if sub else ''}: {msg}{shown}")
    if "objectives" in components and (config.data.dataset is None or "datasets" in components):
        try:
            _check_data_fits_objective(config, components["objectives"], components.get("datasets"), source)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))


#: what an objective may require of the data, each checked against the dataset's ``provides``
DATA_REQUIREMENTS = frozenset({"images", "captions", "preference_pairs", "controlnet_cond"})
#: what an objective provides for itself (its reference model, samples, reward, class images)
SELF_PROVIDED = frozenset({"reference_model", "on_policy_samples", "reward", "class_images"})


def _check_data_fits_objective(config: RunConfig, objective: Any, dataset: Any, source: str) -> None:
    """Every requirement an objective declares is checked: data requirements against what the
    dataset ``provides`` (default: images with captions), ``adapter:<type>`` and
    ``text_encoder_adapter`` against the adapter section; an undeclared kind is an error."""
    needs = set(getattr(objective, "requires", ()))
    if dataset is None:  # given in code: what it provides is the caller's to match
        needs -= DATA_REQUIREMENTS
    provides = set(getattr(dataset, "provides", {"images", "captions"}))
    name, data = config.objective.name, config.data.dataset
    for need in sorted(needs):
        if need in DATA_REQUIREMENTS:
            if need not in provides:
                what = {"preference_pairs": "needs preference pairs", "images": "trains on images (samples)",
                        "captions": "needs captions"}.get(need, f"needs {need!r}")
                hint = " (use preference-pairs)" if need == "preference_pairs" else ""
                raise ConfigError(f"{source}: data.dataset: objective {name!r} {what}, which dataset "
                                  f"{data!r} does not give{hint}")
        elif need.startswith("adapter:"):
            wanted = need.split(":", 1)[1]
            if config.adapter is None or config.adapter.type != wanted:
                raise ConfigError(f"{source}: adapter.type: objective {name!r} trains an adapter of type {wanted!r}")
        elif need == "text_encoder_adapter":
            if config.adapter is None or config.adapter.component != "text_encoder":
                raise ConfigError(f"{source}: adapter.component: objective {name!r} trains an adapter on the "
                                  f"text encoder; set adapter.component: text_encoder")
        elif need not in SELF_PROVIDED:
            raise ConfigError(f"{source}: objective.name: objective {name!r} requires {need!r}, which difforge "
                              f"cannot check (known: {', '.join(sorted(DATA_REQUIREMENTS | SELF_PROVIDED))}, "
                              "adapter:<type>, text_encoder_adapter)")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                data: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config file (or ``data``), apply overrides and validate it."""
    source = str(path) if path is not None else "<config>"
    if path is not None:
        data = _read_yaml(Path(path))
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections (model, data, ...), "
                          f"not a {type(data).__name__}")
    data = dict(data)
    data, touched = apply_overrides(data, overrides)
    return validate_config(data, source, touched)


def _read_yaml(path: Path) -> Any:
    """A YAML file's contents; a missing, unreadable, non-UTF-8 or invalid file is one line."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = (getattr(exc, "problem", None) or str(exc)).strip().splitlines()[0]
        raise ConfigError(f"{path}:{where}: invalid YAML ({problem})") from None


def dump_config(config: RunConfig) -> str:
    """The config as YAML (what a run saves next to its outputs)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
