"""The one training loop, on ``accelerate``.

Device placement, mixed precision, gradient accumulation, clipping and distributed data
parallelism come from ``accelerate``; difforge adds the pieces around them: adapters,
EMA, exact resume (weights, optimizer, LR schedule, EMA, grad scaler, every RNG, the data
position and the objective's own state), atomic checkpoints, non-finite-loss handling, progress,
TensorBoard and samples.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..adapters import AdapterSet, PeftAdapter
from ..adapters.lora.config import TEXT_ENCODER_TARGET_MODULES
from ..backbone import Backbone, load_backbone
from ..checkpointing import (
    atomic_save_json,
    atomic_save_safetensors,
    atomic_torch_save,
    atomic_write,
    latest_checkpoint,
    require_checkpoint,
    torch_load_safe,
    write_checkpoint_dir,
)
from ..config import RunConfig, dump_config
from ..errors import ConfigError, DataError, TrainingError
from .data import EpochBatchSampler, SkipCorrupt, collate, is_sample_key
from .objectives import DenoisingObjective

StepCallback = Callable[["Trainer", int, dict[str, float]], None]


@dataclass
class TrainResult:
    """What a finished run produced (``losses``: one per optimizer step, the mean over processes)."""

    output_dir: Path
    steps: int
    losses: list[float] = field(default_factory=list)
    adapter_path: Path | None = None
    model_path: Path | None = None
    skipped_batches: int = 0
    skipped_samples: int = 0
    seconds: float = 0.0


def build_backbone(config: RunConfig) -> Backbone:
    """The backbone a config describes (loaded from disk or built from a registered builder)."""
    from ..plugins import get_registry

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
    from ..plugins import get_registry

    factory = get_registry("datasets").get(config.data.dataset)
    schema = getattr(factory, "options_model", None)
    if schema is not None:
        schema.model_validate(config.data.options)
    return factory(**config.data.options)


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    random.setstate(_as_tuple(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def split_objective_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An objective's :meth:`~difforge.training.Objective.state_dict` split into its tensors
    (for safetensors) and its JSON values."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
    return tensors, {k: v for k, v in state.items() if k not in tensors}


class Trainer:
    """Runs one :class:`~difforge.config.RunConfig`.

    ``backbone`` and ``dataset`` may be given directly (otherwise built from the config);
    ``callbacks`` are called as ``callback(trainer, step, logs)`` after every optimizer step.
    """

    def __init__(
        self,
        config: RunConfig,
        *,
        backbone: Backbone | None = None,
        dataset: Dataset | None = None,
        callbacks: Sequence[StepCallback] = (),
    ) -> None:
        self.config = config
        self.callbacks = list(callbacks)
        self.output_dir = Path(config.output.dir)
        self._setup_accelerator()
        self.backbone = backbone if backbone is not None else build_backbone(config)
        self.dataset = dataset if dataset is not None else build_dataset(config)
        if config.data.on_corrupt == "skip":
            self.dataset = SkipCorrupt(self.dataset)
        self._setup_model()
        self.objective.setup(self)
        self._setup_optimization()
        self.step = 0
        self.micro_step = 0
        self.skipped_batches = 0
        self.skipped_samples = 0
        self.losses: list[float] = []
        self._resume()

    # ------------------------------------------------------------------ setup
    def _setup_accelerator(self) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        t = self.config.train
        use_cpu = t.device == "cpu" or (t.device == "auto" and not torch.cuda.is_available())
        if t.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("train.device: 'cuda' requested but CUDA is not available")
        precision = t.mixed_precision
        if precision == "auto":
            precision = "bf16" if (not use_cpu and torch.cuda.is_bf16_supported()) else "no"
        log_with = None
        if self.config.output.tensorboard:
            try:
                import tensorboard  # noqa: F401

                log_with = "tensorboard"
            except ImportError:
                log_with = None
        self.accelerator = Accelerator(
            cpu=use_cpu,
            mixed_precision=precision,
            gradient_accumulation_steps=t.grad_accum,
            log_with=log_with,
            project_dir=str(self.output_dir),
        )
        set_seed(t.seed + self.accelerator.process_index)
        self.generator = torch.Generator().manual_seed(t.seed * 7919 + self.accelerator.process_index)

    def _setup_model(self) -> None:
        cfg, acc = self.config, self.accelerator
        bb = self.backbone
        denoiser = bb.denoiser
        self.adapters: AdapterSet | None = None
        if cfg.adapter is not None and cfg.train.freeze_mask:
            raise ConfigError("train.freeze_mask: a FreezeAsGuard mask applies to full fine-tuning; "
                              "remove the adapter section")
        #: the module holding the trained parameters: the denoiser, or the text encoder
        self.adapted: torch.nn.Module = denoiser
        if cfg.adapter is not None:
            self.adapted = self._adapted_component(cfg.adapter)
            self.adapters = AdapterSet(self.adapted)
            options = dict(cfg.adapter.options)
            if self.adapted is not denoiser:
                options.setdefault("target_modules", list(TEXT_ENCODER_TARGET_MODULES))
            self.adapters.add(cfg.adapter.type, cfg.adapter.name, **options)
            denoiser.requires_grad_(False)
            self.adapted.requires_grad_(False)
            self.trainable = self.adapters.trainable_parameters(cfg.adapter.name)
            for p in self.trainable:
                p.requires_grad_(True)
        else:
            denoiser.requires_grad_(True)
            if cfg.train.freeze_mask:
                self._apply_freeze_mask(denoiser, cfg.train.freeze_mask)
            self.trainable = [p for p in denoiser.parameters() if p.requires_grad]
        self.trainable_names = [n for n, p in self.adapted.named_parameters() if p.requires_grad]
        if cfg.train.gradient_checkpointing:
            if not getattr(denoiser, "_supports_gradient_checkpointing", False):
                raise ConfigError(
                    f"train.gradient_checkpointing: {type(denoiser).__name__} does not support it"
                )
            denoiser.enable_gradient_checkpointing()
        weight_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(acc.mixed_precision, torch.float32)
        for frozen in (bb.vae, bb.text_encoder):
            if frozen is not None and frozen is not self.adapted:
                frozen.to(acc.device).eval()
                if weight_dtype != torch.float32:
                    frozen.to(dtype=weight_dtype)
        denoiser.to(acc.device)
        self.adapted.to(acc.device)
        self.ema = None
        if cfg.train.ema is not None:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(
                self.trainable,
                decay=cfg.train.ema.decay,
                update_after_step=cfg.train.ema.update_after_step,
            )
        self.objective = self._build_objective()

    def _adapted_component(self, adapter) -> torch.nn.Module:
        """The module ``adapter.component`` names, checked to accept the adapter type."""
        if adapter.component == "denoiser":
            return self.backbone.denoiser
        if self.backbone.text_encoder is None:
            raise ConfigError("adapter.component: 'text_encoder', but this model has no text encoder")
        from ..plugins import get_registry

        if not isinstance(get_registry("adapters").get(adapter.type), PeftAdapter):
            raise ConfigError(f"adapter.component: the text encoder takes the PEFT (LoRA family) adapter types "
                              f"(lora, dora, loha, lokr, oft), not {adapter.type!r}")
        return self.backbone.text_encoder

    @staticmethod
    def _apply_freeze_mask(denoiser: torch.nn.Module, path: str) -> None:
        from .freeze_guard import load_freeze_mask

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

    def _build_objective(self):
        from ..plugins import get_registry

        cfg = self.config
        cls = get_registry("objectives").get(cfg.objective.name)
        if issubclass(cls, DenoisingObjective):
            return cls(self.backbone, default_caption_dropout=cfg.data.caption_dropout, **cfg.objective.options)
        return cls(self.backbone, **cfg.objective.options)

    def _setup_optimization(self) -> None:
        from diffusers.optimization import get_scheduler

        t = self.config.train
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
        optimizer = opt_cls(self.trainable, lr=t.lr, betas=t.adam_betas, weight_decay=t.weight_decay)
        self.lr_scheduler = get_scheduler(
            t.lr_scheduler, optimizer, num_warmup_steps=t.warmup_steps, num_training_steps=t.steps
        )
        self.model, self.optimizer = self.accelerator.prepare(self.backbone.denoiser, optimizer)
        self.forward_model = torch.compile(self.model) if t.compile else self.model

    # ------------------------------------------------------------------ checkpoints
    def _resume(self) -> None:
        resume = self.config.train.resume
        if not resume:
            return
        if resume == "auto":
            path = latest_checkpoint(self.output_dir)
            if path is None:
                return
        else:
            path = require_checkpoint(resume)
        self.load_checkpoint(path)

    def save_checkpoint(self) -> Path:
        """Write ``checkpoint-<step>`` atomically and prune old ones."""
        acc = self.accelerator
        rng_states = self._gather_rng()
        objective_states = self._gather_objective_state()
        path = self.output_dir / f"checkpoint-{self.step}"
        if acc.is_main_process:
            def fill(tmp: Path) -> None:
                params = dict(self.adapted.named_parameters())
                atomic_save_safetensors({n: params[n] for n in self.trainable_names}, tmp / "trainable.safetensors")
                if self.adapters is not None:  # index sets and masks that are not parameters
                    state = self.adapters.state_dict(self.config.adapter.name)
                    atomic_save_safetensors({k: v.detach().cpu().contiguous() for k, v in state.items()},
                                            tmp / "adapter_state.safetensors")
                if self.ema is not None:
                    ema = dict(zip(self.trainable_names, self.ema.shadow_params, strict=True))
                    atomic_save_safetensors(ema, tmp / "ema.safetensors")
                    atomic_save_json({"optimization_step": self.ema.optimization_step}, tmp / "ema.json")
                for rank, (tensors, values) in enumerate(objective_states):
                    if tensors:
                        atomic_save_safetensors(tensors, tmp / f"objective_state-{rank}.safetensors")
                    if values:
                        atomic_save_json(values, tmp / f"objective_state-{rank}.json")
                atomic_torch_save(self.optimizer.state_dict(), tmp / "optimizer.pt")
                atomic_torch_save(self.lr_scheduler.state_dict(), tmp / "lr_scheduler.pt")
                if acc.scaler is not None:
                    atomic_torch_save(acc.scaler.state_dict(), tmp / "scaler.pt")
                for rank, state in enumerate(rng_states):
                    atomic_torch_save(state, tmp / f"rng-{rank}.pt")
                atomic_save_json(
                    {
                        "step": self.step,
                        "micro_step": self.micro_step,
                        "skipped_batches": self.skipped_batches,
                        "skipped_samples": self.skipped_samples,
                        "losses": self.losses,
                        "num_processes": acc.num_processes,
                    },
                    tmp / "trainer_state.json",
                )
                atomic_write(tmp / "config.yaml", lambda p: p.write_text(dump_config(self.config)))

            write_checkpoint_dir(self.output_dir, self.step, fill, self.config.output.keep_last)
        acc.wait_for_everyone()
        return path

    def _mean_over_processes(self, loss: torch.Tensor) -> float:
        """A step's loss averaged over the processes, so every rank logs (and every checkpoint
        keeps) the same history."""
        if self.accelerator.num_processes > 1:
            loss = self.accelerator.reduce(loss.detach(), reduction="mean")
        return loss.item()

    def _gather_objective_state(self) -> list[tuple[dict[str, torch.Tensor], dict[str, Any]]]:
        """Each process's objective state (an on-policy round is per process), split for storage."""
        state = split_objective_state(self.objective.state_dict())
        if self.accelerator.num_processes == 1:
            return [state]
        from accelerate.utils import gather_object

        return gather_object([state])

    def _gather_rng(self) -> list[dict[str, Any]]:
        state = _rng_state(self.generator)
        if self.accelerator.num_processes == 1:
            return [state]
        from accelerate.utils import gather_object

        return gather_object([state])

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore everything :meth:`save_checkpoint` wrote (exact resume)."""
        import json

        from safetensors.torch import load_file

        path = require_checkpoint(path)
        acc = self.accelerator
        state = json.loads((path / "trainer_state.json").read_text())
        if state["num_processes"] != acc.num_processes:
            raise TrainingError(
                f"{path}: saved with {state['num_processes']} processes, resuming with {acc.num_processes}"
            )
        if self.adapters is not None and (path / "adapter_state.safetensors").exists():
            self.adapters.load_state_dict(self.config.adapter.name, load_file(str(path / "adapter_state.safetensors")))
        weights = load_file(str(path / "trainable.safetensors"))
        params = dict(self.adapted.named_parameters())
        missing = [n for n in self.trainable_names if n not in weights]
        if missing:
            raise TrainingError(f"{path}: checkpoint lacks {len(missing)} trained tensors, e.g. {missing[0]}")
        with torch.no_grad():
            for name in self.trainable_names:
                params[name].copy_(weights[name])
        if self.ema is not None and (path / "ema.safetensors").exists():
            ema = load_file(str(path / "ema.safetensors"))
            self.ema.shadow_params = [ema[n].to(acc.device) for n in self.trainable_names]
            self.ema.optimization_step = json.loads((path / "ema.json").read_text())["optimization_step"]
        self.optimizer.load_state_dict(torch_load_safe(path / "optimizer.pt"))
        self.lr_scheduler.load_state_dict(torch_load_safe(path / "lr_scheduler.pt"))
        if acc.scaler is not None and (path / "scaler.pt").exists():
            acc.scaler.load_state_dict(torch_load_safe(path / "scaler.pt"))
        objective_state: dict[str, Any] = {}
        own = path / f"objective_state-{acc.process_index}"
        if own.with_suffix(".safetensors").exists():
            objective_state.update(load_file(str(own.with_suffix(".safetensors"))))
        if own.with_suffix(".json").exists():
            objective_state.update(json.loads(own.with_suffix(".json").read_text()))
        if objective_state:  # a checkpoint from before objectives kept state resumes with a fresh one
            self.objective.load_state_dict(objective_state)
        _set_rng_state(torch_load_safe(path / f"rng-{acc.process_index}.pt"), self.generator)
        self.step, self.micro_step = state["step"], state["micro_step"]
        self.skipped_batches, self.skipped_samples = state["skipped_batches"], state["skipped_samples"]
        self.losses = list(state["losses"])

    # ------------------------------------------------------------------ data
    def _batches(self):
        """Yield batches forever from the current data position."""
        acc, d = self.accelerator, self.config.data
        size = len(self.dataset)
        per_epoch = EpochBatchSampler.batches_per_epoch(size, d.batch_size, acc.num_processes)
        if per_epoch == 0:
            raise DataError(
                f"dataset has {size} samples, fewer than data.batch_size ({d.batch_size}) "
                f"x {acc.num_processes} process(es)"
            )
        while True:
            epoch, start = divmod(self.micro_step, per_epoch)
            sampler = EpochBatchSampler(
                size, d.batch_size, self.config.train.seed, epoch, start, acc.process_index, acc.num_processes
            )
            # its own generator: a loader draws a worker base seed when iterated, which must
            # not consume the global RNG (a resumed run creates its loader mid-epoch)
            loader_rng = torch.Generator().manual_seed(self.config.train.seed * 1_000_003 + epoch)
            loader = DataLoader(self.dataset, batch_sampler=sampler, collate_fn=collate,
                                num_workers=d.num_workers, generator=loader_rng)
            yield from loader

    def _augment(self, batch: dict[str, Any]) -> dict[str, Any]:
        keys = [k for k in batch if is_sample_key(k)]
        if self.config.data.random_flip and keys:
            flip = torch.rand(len(batch[keys[0]]), generator=self.generator) < 0.5
            for key in keys:  # a preference pair is flipped together
                pixels = batch[key].clone()
                pixels[flip] = pixels[flip].flip(-1)
                batch[key] = pixels
        return batch

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainResult:
        """Train until ``train.steps`` optimizer steps; returns a :class:`TrainResult`."""
        cfg, acc = self.config, self.accelerator
        out = cfg.output
        started = time.perf_counter()
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.output_dir / "config.yaml", lambda p: p.write_text(dump_config(cfg)))
        if acc.log_with:
            acc.init_trackers("difforge")
        progress = self._progress()
        self.model.train()
        batches = self._batches()
        running: list[torch.Tensor] = []
        while self.step < cfg.train.steps:
            batch = self._augment(next(batches))
            self.micro_step += 1
            self.skipped_samples += batch.pop("num_skipped", 0)
            if len(batch) == 0:
                continue  # every sample of this batch was corrupt and skipped
            with acc.accumulate(self.model):
                with acc.autocast():
                    loss, objective_logs = self.objective.loss(batch, self.forward_model, self.generator)
                    penalty = self.adapters.regularization() if self.adapters is not None else None
                    if penalty is not None:
                        loss = loss + penalty
                if not self._all_finite(loss):
                    self._on_non_finite(loss)
                    self.optimizer.zero_grad()
                    continue
                acc.backward(loss)
                if acc.sync_gradients and cfg.train.max_grad_norm:
                    acc.clip_grad_norm_(self.trainable, cfg.train.max_grad_norm)
                self.optimizer.step()
                if acc.sync_gradients:
                    self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            running.append(loss.detach())
            if not acc.sync_gradients:
                continue
            self.step += 1
            if self.adapters is not None:
                self._reset_optimizer_state(self.adapters.on_step_end(self.step, cfg.train.steps))
            if self.ema is not None:
                self.ema.step(self.trainable)
            step_loss = self._mean_over_processes(torch.stack(running).mean())
            running.clear()
            self.losses.append(step_loss)
            logs = {**{k: float(v) for k, v in objective_logs.items()},
                    "loss": step_loss, "lr": self.lr_scheduler.get_last_lr()[0]}
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{step_loss:.4f}", refresh=False)
            if acc.log_with and self.step % out.log_every == 0:
                acc.log(logs, step=self.step)
            if out.checkpoint_every and self.step % out.checkpoint_every == 0:
                self.save_checkpoint()
            if out.sample_every and out.sample_prompts and self.step % out.sample_every == 0:
                self.save_samples(self.output_dir / "samples" / f"step-{self.step:06d}.png")
            for callback in self.callbacks:
                callback(self, self.step, logs)
        if progress is not None:
            progress.close()
        result = self._finish(time.perf_counter() - started)
        if acc.log_with:
            acc.end_training()
        return result

    def _reset_optimizer_state(self, params: list[torch.nn.Parameter]) -> None:
        """Forget the optimizer moments of parameters an adapter re-purposed (e.g. SaRA re-selection)."""
        state = self.optimizer.optimizer.state if hasattr(self.optimizer, "optimizer") else self.optimizer.state
        for param in params:
            state.pop(param, None)

    def _progress(self):
        if not (self.config.output.progress and self.accelerator.is_main_process):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.config.train.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)

    def _all_finite(self, loss: torch.Tensor) -> bool:
        finite = torch.isfinite(loss.detach()).float().reshape(1)
        if self.accelerator.num_processes > 1:
            finite = self.accelerator.gather(finite.to(self.accelerator.device)).min()
        return bool(finite.item())

    def _on_non_finite(self, loss: torch.Tensor) -> None:
        if self.config.train.on_nan == "skip":
            self.skipped_batches += 1
            return
        last = latest_checkpoint(self.output_dir)
        raise TrainingError(
            f"non-finite loss ({loss.item()}) at step {self.step + 1}; "
            f"last good checkpoint: {last if last is not None else 'none'} "
            "(set train.on_nan: skip to skip such batches)"
        )

    def _finish(self, seconds: float) -> TrainResult:
        acc, cfg = self.accelerator, self.config
        acc.wait_for_everyone()
        result = TrainResult(
            output_dir=self.output_dir,
            steps=self.step,
            losses=list(self.losses),
            skipped_batches=self.skipped_batches,
            skipped_samples=self.skipped_samples,
            seconds=seconds,
        )
        if acc.is_main_process:
            if self.adapters is not None:
                name = cfg.adapter.name
                result.adapter_path = self.adapters.save(name, self.output_dir / "adapter").parent
                if self.ema is not None:
                    with self.ema_weights():
                        self.adapters.save(name, self.output_dir / "adapter_ema")
            else:
                result.model_path = self.output_dir / "model"
                self.backbone.save_pretrained(result.model_path)
            atomic_save_json(
                {"steps": self.step, "final_loss": self.losses[-1] if self.losses else None,
                 "skipped_batches": self.skipped_batches, "skipped_samples": self.skipped_samples,
                 "seconds": round(seconds, 3)},
                self.output_dir / "train_summary.json",
            )
        acc.wait_for_everyone()
        return result

    @contextmanager
    def ema_weights(self):
        """Context manager: the trained parameters hold their EMA values inside it."""
        self.ema.store(self.trainable)
        self.ema.copy_to(self.trainable)
        try:
            yield
        finally:
            self.ema.restore(self.trainable)

    @torch.no_grad()
    def save_samples(self, path: Path) -> Path:
        """Sample ``output.sample_prompts`` with a fixed seed and save a grid PNG."""
        from ..sampling.grid import save_grid

        out = self.config.output
        self.model.eval()
        try:
            generator = torch.Generator().manual_seed(out.sample_seed)
            images = self.backbone.sample(
                out.sample_prompts if self.backbone.conditioning == "text" else None,
                num_samples=len(out.sample_prompts),
                num_steps=out.sample_steps,
                guidance_scale=out.sample_guidance,
                generator=generator,
            )
        finally:
            self.model.train()
        if self.accelerator.is_main_process:
            save_grid(images, path)
        return path


def train(config: RunConfig, **kwargs: Any) -> TrainResult:
    """Build a :class:`Trainer` for ``config`` and run it (the API behind ``difforge train``)."""
    return Trainer(config, **kwargs).fit()


__all__ = ["TrainResult", "Trainer", "build_backbone", "build_dataset", "train"]
