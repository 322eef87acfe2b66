"""The one training loop, on ``accelerate``.

Device placement, mixed precision, gradient accumulation, clipping and distributed data
parallelism come from ``accelerate``; difforge adds the pieces around them: adapters, EMA,
exact resume, non-finite-loss handling, progress, TensorBoard and samples. The parts of a run
are assembled from the config in :mod:`.assembly`; what a checkpoint holds is :mod:`.state`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..backbone import Backbone
from ..checkpointing import atomic_save_json, latest_checkpoint, publish_directory
from ..config import RunConfig
from ..errors import DataError, TrainingError
from ..report import HISTORY_NAME, write_report
from .assembly import (
    attach_trainable,
    build_accelerator,
    build_backbone,
    build_dataset,
    build_ema,
    build_objective,
    build_optimization,
    place_models,
    wrap_dataset,
)
from .context import TrainingContext
from .data import EpochBatchSampler, collate
from .run_dir import check_output_dir, identity_hash, prepare_output_dir, run_identity, write_run_files
from .state import Checkpointer, LoopState

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
        check_output_dir(config)  # refuse a run that would mix with another before anything loads
        self.config = config
        self.callbacks = list(callbacks)
        self.output_dir = Path(config.output.dir)
        self.state = LoopState()
        self.consecutive_skips = 0  # non-finite batches in a row (train.on_nan: skip)
        self.accelerator, self.generator = build_accelerator(config, str(self.output_dir))
        self.backbone = backbone if backbone is not None else build_backbone(config)
        self.dataset = wrap_dataset(config, dataset if dataset is not None else build_dataset(config))
        self.objective = build_objective(config, self.backbone)
        self.trained = attach_trainable(config, self.backbone, self.objective)
        self.adapters = self.trained.adapters
        self.trainable = self.trained.parameters
        place_models(config, self.backbone, self.trained, self.accelerator)
        self.ema = build_ema(config, self.trainable)
        acc = self.accelerator
        self.context = TrainingContext(self.backbone, self.dataset, config, self.adapters, self.trainable,
                                       is_main_process=acc.is_main_process, wait_for_everyone=acc.wait_for_everyone,
                                       _step=lambda: self.state.step)
        self.objective.setup(self.context)
        optimizer, self.lr_scheduler = build_optimization(config, self.trainable)
        # DDP wraps the denoiser when it holds trained parameters; trained parameters outside it (a
        # text-encoder adapter, a jointly trained text encoder) start from rank 0's values and have
        # their gradients averaged by hand
        in_denoiser = {id(p) for p in self.backbone.denoiser.parameters()}
        self.hand_reduced = ([p for p in self.trainable if id(p) not in in_denoiser]
                             if acc.num_processes > 1 else [])
        self._broadcast(self.hand_reduced)
        if self.trained.holds_trained(self.backbone.denoiser):
            self.model, self.optimizer = acc.prepare(self.backbone.denoiser, optimizer)
        else:  # DDP refuses a module without trainable parameters
            self.model, self.optimizer = self.backbone.denoiser, acc.prepare(optimizer)
        self.forward_model = torch.compile(self.model) if config.train.compile else self.model
        self.checkpointer = Checkpointer(config, acc, self.generator, self.trained, self.ema, self.objective,
                                         self.optimizer, self.lr_scheduler)
        acc.wait_for_everyone()  # every process has checked output.dir before the main one claims it
        self.run = prepare_output_dir(config) if acc.is_main_process else None
        self.run_id = self._broadcast_object(self.run["run_id"] if self.run else None)
        self.checkpointer.run_info = {"run_id": self.run_id, "identity_hash": identity_hash(run_identity(config))}
        self._run_files_written = False
        self._resume()

    # ------------------------------------------------------------------ counters
    @property
    def step(self) -> int:
        """Optimizer steps taken."""
        return self.state.step

    @property
    def micro_step(self) -> int:
        """Micro-batches read (the data position)."""
        return self.state.micro_step

    @property
    def losses(self) -> list[float]:
        """The loss of every optimizer step so far."""
        return self.state.losses

    # ------------------------------------------------------------------ checkpoints
    def _resume(self) -> None:
        self.state = self.checkpointer.resume(self.config.train.resume, self.state)

    def _write_run_files(self) -> None:
        """``run.json`` and ``config.yaml``, once the run has taken a step."""
        if self.accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            write_run_files(self.config, self.run)
        if self.accelerator.log_with:  # TensorBoard creates its folder: also not before a step
            self.accelerator.init_trackers("difforge")
        self._run_files_written = True

    def _broadcast_object(self, value: Any) -> Any:
        """The main process's ``value`` on every process."""
        if self.accelerator.num_processes == 1:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value])[0]

    def save_checkpoint(self) -> Path:
        """Write ``checkpoint-<step>`` atomically and prune old ones."""
        return self.checkpointer.save(self.state)

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore everything :meth:`save_checkpoint` wrote (exact resume)."""
        self.checkpointer.load(path, self.state)

    def _mean_over_processes(self, loss: torch.Tensor) -> float:
        """A step's loss averaged over the processes, so every rank logs (and every checkpoint
        keeps) the same history."""
        if self.accelerator.num_processes > 1:
            loss = self.accelerator.reduce(loss.detach(), reduction="mean")
        return loss.item()

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
            epoch, start = divmod(self.state.micro_step, per_epoch)
            sampler = EpochBatchSampler(
                size, d.batch_size, self.config.train.seed, epoch, start, acc.process_index, acc.num_processes
            )
            # its own generator: a loader draws a worker base seed when iterated, which must
            # not consume the global RNG (a resumed run creates its loader mid-epoch)
            loader_rng = torch.Generator().manual_seed(self.config.train.seed * 1_000_003 + epoch)
            set_epoch(self.dataset, epoch)
            loader = DataLoader(self.dataset, batch_sampler=sampler, collate_fn=collate,
                                num_workers=d.num_workers, generator=loader_rng)
            yield from loader

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainResult:
        """Train until ``train.steps`` optimizer steps; returns a :class:`TrainResult`."""
        cfg, acc, state = self.config, self.accelerator, self.state
        out = cfg.output
        started = time.perf_counter()
        progress = self._progress()
        self.model.train()
        for module in self.trained.modules.values():
            module.train()
        batches = self._batches()
        running: list[torch.Tensor] = []
        while self.step < cfg.train.steps:
            batch = next(batches)
            state.micro_step += 1
            state.skipped_samples += batch.pop("num_skipped", 0)
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
                if acc.sync_gradients and self.hand_reduced:
                    self._average_gradients()
                if acc.sync_gradients and cfg.train.max_grad_norm:
                    acc.clip_grad_norm_(self.trainable, cfg.train.max_grad_norm)
                self.optimizer.step()
                if acc.sync_gradients:
                    self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            running.append(loss.detach())
            self.consecutive_skips = 0
            if not acc.sync_gradients:
                continue
            state.step += 1
            if not self._run_files_written:
                self._write_run_files()
            if self.adapters is not None:
                self._reset_optimizer_state(self.adapters.on_step_end(self.step, cfg.train.steps))
            if self.ema is not None:
                self.ema.step(self.trainable)
            step_loss = self._mean_over_processes(torch.stack(running).mean())
            running.clear()
            state.losses.append(step_loss)
            state.lrs.append(self.lr_scheduler.get_last_lr()[0])
            logs = {**{k: float(v) for k, v in objective_logs.items()}, "loss": step_loss, "lr": state.lrs[-1]}
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
        if acc.log_with and self._run_files_written:
            acc.end_training()
        return result

    @staticmethod
    def _broadcast(params: list[torch.nn.Parameter]) -> None:
        """Start every process from rank 0's values of ``params`` (as DDP does when it wraps a module)."""
        if not params:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for param in params:
                dist.broadcast(param.data, src=0)

    def _average_gradients(self) -> None:
        """Average the gradients of the trained parameters DDP does not wrap over the processes."""
        for param in self.hand_reduced:
            if param.grad is not None:
                param.grad = self.accelerator.reduce(param.grad, reduction="mean")

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
        t = self.config.train
        last = latest_checkpoint(self.output_dir)
        where = f"last good checkpoint: {last if last is not None else 'none'}"
        if t.on_nan == "skip":
            self.state.skipped_batches += 1
            self.consecutive_skips += 1
            if self.consecutive_skips < t.max_consecutive_skips:
                return
            raise TrainingError(
                f"{self.consecutive_skips} non-finite losses in a row at step {self.step + 1} "
                f"(train.max_consecutive_skips); {where}")
        raise TrainingError(
            f"non-finite loss ({loss.item()}) at step {self.step + 1}; {where} "
            "(set train.on_nan: skip to skip such batches)"
        )

    def _finish(self, seconds: float) -> TrainResult:
        acc, cfg = self.accelerator, self.config
        acc.wait_for_everyone()
        if not self._run_files_written:  # a run resumed at its last step takes none
            self._write_run_files()
        result = TrainResult(
            output_dir=self.output_dir,
            steps=self.step,
            losses=list(self.losses),
            skipped_batches=self.state.skipped_batches,
            skipped_samples=self.state.skipped_samples,
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
                result.model_path = self._export_model("model")
                if self.ema is not None:
                    with self.ema_weights():
                        self._export_model("model_ema")
            atomic_save_json(
                {"steps": self.step, "final_loss": self.losses[-1] if self.losses else None,
                 "skipped_batches": self.state.skipped_batches, "skipped_samples": self.state.skipped_samples,
                 "seconds": round(seconds, 3), **peak_memory()},
                self.output_dir / "train_summary.json",
            )
            atomic_save_json({"loss": self.state.losses, "lr": self.state.lrs}, self.output_dir / HISTORY_NAME)
            if cfg.output.report:
                write_report(self.output_dir)
        acc.wait_for_everyone()
        return result

    def _export_model(self, name: str) -> Path:
        """The objective saves what the run trained into a staging directory, which is then
        renamed into place: a crash midway leaves the previous export, never a torn one."""
        staging = Path(tempfile.mkdtemp(prefix=f".export-{name}.", suffix=".tmp", dir=self.output_dir))
        try:
            saved = Path(self.objective.save_trained(staging, name)).relative_to(staging)
            publish_directory(staging / saved.parts[0], self.output_dir / saved.parts[0])
            return self.output_dir / saved
        finally:
            shutil.rmtree(staging, ignore_errors=True)

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
        """Sample ``output.samples_per_prompt`` of each of ``output.sample_prompts`` with a fixed
        seed and save a labelled grid PNG (a row per prompt), with the registered
        ``output.sample_metrics`` of the samples as JSON beside it."""
        from ..plugins import get_registry
        from ..sampling.grid import save_grid

        out = self.config.output
        per_prompt = out.samples_per_prompt
        prompts = [p for p in out.sample_prompts for _ in range(per_prompt)]
        self.model.eval()
        try:
            generator = torch.Generator().manual_seed(out.sample_seed)
            images = self.backbone.sample(
                prompts if self.backbone.conditioning == "text" else None,
                num_samples=len(prompts),
                num_steps=out.sample_steps,
                guidance_scale=out.sample_guidance,
                generator=generator,
            )
        finally:
            self.model.train()
        if self.accelerator.is_main_process:
            text = self.backbone.conditioning == "text"
            save_grid(images, path, columns=per_prompt,
                      row_labels=[f"“{p}”" for p in out.sample_prompts] if text else None,
                      column_labels=[f"seed {out.sample_seed} · {k + 1}" for k in range(per_prompt)],
                      title=f"step {self.step}", renderer=out.sample_renderer)
            if out.sample_metrics:
                metrics = {name: get_registry("metrics").get(name)(images) for name in out.sample_metrics}
                atomic_save_json(metrics, path.with_suffix(".json"))
        return path


def set_epoch(dataset: Dataset, epoch: int) -> None:
    """Tell ``dataset`` and every dataset it wraps (``.dataset``) that has ``set_epoch`` which
    epoch is read next: per-item randomness seeded by (seed, epoch, index) stays the same with
    any number of loader workers and after resume."""
    seen: set[int] = set()
    while dataset is not None and id(dataset) not in seen:
        seen.add(id(dataset))
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        dataset = getattr(dataset, "dataset", None)


def peak_memory() -> dict[str, float]:
    """This process's peak resident memory (and peak CUDA memory when on a GPU), in MiB."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    peak = {"peak_memory_mib": round(rss, 1)}
    if torch.cuda.is_available():
        peak["peak_cuda_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return peak


def train(config: RunConfig, **kwargs: Any) -> TrainResult:
    """Build a :class:`Trainer` for ``config`` and run it (the API behind ``difforge train``)."""
    return Trainer(config, **kwargs).fit()


__all__ = ["TrainResult", "Trainer", "train"]
