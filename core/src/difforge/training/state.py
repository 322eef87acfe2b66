"""The state of a run that a checkpoint holds, and the files that hold it.

A checkpoint is everything exact resume needs: the trained tensors (and an adapter's
non-parameter state), EMA, optimizer, LR schedule, grad scaler, every RNG of every process, the
loop's counters and losses, and the objective's own state. It is written atomically
(:func:`~difforge.checkpointing.write_checkpoint_dir`); tensors go to safetensors, the rest to
JSON or to ``torch.save`` files read back weights-only.
"""

from __future__ import annotations

import json
import pickle
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpointing import (
    atomic_save_json,
    atomic_save_safetensors,
    atomic_torch_save,
    atomic_write,
    checkpoint_problem,
    list_checkpoints,
    require_checkpoint,
    torch_load_safe,
    write_checkpoint_dir,
)
from ..config import RunConfig, dump_config
from ..errors import CheckpointError, DifforgeError, TrainingError
from ..weights import first_line, read_safetensors
from .assembly import TrainedParts


@dataclass
class LoopState:
    """The loop's counters: optimizer steps, micro-batches read (the data position), skipped
    batches and samples, and the loss and learning rate of every optimizer step."""

    step: int = 0
    micro_step: int = 0
    skipped_batches: int = 0
    skipped_samples: int = 0
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random stream of this process: Python's, NumPy's, torch's (CPU and CUDA) and the run's generator."""
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


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    """Restore what :func:`rng_state` returned."""
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


class Checkpointer:
    """Writes and restores ``checkpoint-<step>`` directories of one run."""

    def __init__(self, config: RunConfig, accelerator, generator: torch.Generator, trained: TrainedParts, ema,
                 objective, optimizer, lr_scheduler) -> None:
        self.config, self.accelerator, self.generator = config, accelerator, generator
        self.trained, self.ema, self.objective = trained, ema, objective
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self.output_dir = Path(config.output.dir)
        self.run_info: dict[str, Any] = {}  # the run id and identity hash, recorded in every checkpoint

    def _gather(self, value: Any) -> list[Any]:
        """One value per process (an on-policy round and the RNGs are per process)."""
        if self.accelerator.num_processes == 1:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])

    def save(self, state: LoopState) -> Path:
        """Write ``checkpoint-<step>`` atomically and prune old ones (every process must call it)."""
        acc, cfg = self.accelerator, self.config
        rng_states = self._gather(rng_state(self.generator))
        objective_states = self._gather(split_objective_state(self.objective.state_dict()))
        path = self.output_dir / f"checkpoint-{state.step}"
        if acc.is_main_process:
            def fill(tmp: Path) -> None:
                atomic_save_safetensors(self.trained.named, tmp / "trainable.safetensors")
                if self.trained.adapters is not None:  # index sets and masks that are not parameters
                    adapter_state = self.trained.adapters.state_dict(cfg.adapter.name)
                    atomic_save_safetensors({k: v.detach().cpu().contiguous() for k, v in adapter_state.items()},
                                            tmp / "adapter_state.safetensors")
                if self.ema is not None:
                    ema = dict(zip(self.trained.named, self.ema.shadow_params, strict=True))
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
                for rank, rng in enumerate(rng_states):
                    atomic_torch_save(rng, tmp / f"rng-{rank}.pt")
                atomic_save_json({**asdict(state), "num_processes": acc.num_processes}, tmp / "trainer_state.json")
                atomic_write(tmp / "config.yaml", lambda p: p.write_text(dump_config(cfg)))

            write_checkpoint_dir(self.output_dir, state.step, fill, cfg.output.keep_last, info=self.run_info)
        acc.wait_for_everyone()
        return path

    def resume(self, resume: str | None, state: LoopState) -> LoopState:
        """The loop state after ``train.resume``: unchanged for ``None``; for a path, that
        checkpoint (which must be intact); for ``auto``, the newest intact checkpoint of the run,
        a damaged one being reported on stderr and kept (``CheckpointError`` when every one is
        damaged; a fresh start when there is none)."""
        if not resume:
            return state
        if resume != "auto":
            self.load(resume, state)
            return state
        checkpoints = list_checkpoints(self.output_dir)
        for path in reversed(checkpoints):
            problem = checkpoint_problem(path)
            if problem is None:
                try:
                    self._restore(path, state)  # checked just above: hash each file once
                    return state
                except CheckpointError as exc:
                    problem = str(exc)
            state = LoopState()
            if self.accelerator.is_main_process:
                print(f"difforge: {path.name} is damaged ({problem}); trying the checkpoint before it",
                      file=sys.stderr, flush=True)
        if checkpoints:
            raise CheckpointError(f"{self.output_dir}: no intact checkpoint to resume from (each is damaged; "
                                  "see above)")
        return state

    def load(self, path: str | Path, state: LoopState) -> None:
        """Restore everything :meth:`save` wrote into the run's parts and ``state`` (exact resume);
        a damaged or unreadable file is a one-line :class:`CheckpointError` naming it."""
        self._restore(require_checkpoint(path), state)

    def _restore(self, path: Path, state: LoopState) -> None:
        try:
            self._load(path, state)
        except DifforgeError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError, TypeError, pickle.UnpicklingError) as exc:
            raise CheckpointError(f"{path}: cannot be restored ({first_line(exc)})") from None

    def _load(self, path: Path, state: LoopState) -> None:
        def load_file(file: str) -> dict[str, torch.Tensor]:
            return read_safetensors(file, what="checkpoint file", error=CheckpointError)[0]

        acc = self.accelerator
        saved = json.loads((path / "trainer_state.json").read_text())
        if saved["num_processes"] != acc.num_processes:
            raise TrainingError(
                f"{path}: saved with {saved['num_processes']} processes, resuming with {acc.num_processes}")
        adapters = self.trained.adapters
        if adapters is not None and (path / "adapter_state.safetensors").exists():
            adapters.load_state_dict(self.config.adapter.name, load_file(str(path / "adapter_state.safetensors")))
        weights = load_file(str(path / "trainable.safetensors"))
        missing = [n for n in self.trained.named if n not in weights]
        if missing:
            raise TrainingError(f"{path}: checkpoint lacks {len(missing)} trained tensors, e.g. {missing[0]}")
        with torch.no_grad():
            for name, param in self.trained.named.items():
                param.copy_(weights[name])
        if self.ema is not None and (path / "ema.safetensors").exists():
            ema = load_file(str(path / "ema.safetensors"))
            self.ema.shadow_params = [ema[n].to(acc.device) for n in self.trained.named]
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
        set_rng_state(torch_load_safe(path / f"rng-{acc.process_index}.pt"), self.generator)
        state.step, state.micro_step = saved["step"], saved["micro_step"]
        state.skipped_batches, state.skipped_samples = saved["skipped_batches"], saved["skipped_samples"]
        state.losses = list(saved["losses"])
        state.lrs = list(saved.get("lrs", []))  # absent from checkpoints written before it was kept


__all__ = ["Checkpointer", "LoopState", "rng_state", "set_rng_state", "split_objective_state"]
