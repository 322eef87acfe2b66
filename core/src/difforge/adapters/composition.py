"""Composition: several named adapters of any types on one model, each with a weight, merged
into the base weights by a strategy and unmerged exactly.

Strategies act on each adapter's *task vector* (its effect on every base weight, found by
merging it alone): ``linear`` (weighted sum; what stacking computes), ``cat`` (for LoRA-family
adapters the same update as stacking the concatenated factors, so equal to ``linear`` in weight
space), ``svd`` (the weighted sum truncated to ``rank`` per matrix), ``ties`` / ``dare_linear`` /
``dare_ties`` / ``magnitude_prune`` (PEFT's merge utilities) and ``orthogonal`` (the plain
sum, after checking that the adapters' updates are near-orthogonal, as Orthogonal Adaptation
intends).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, WeightsError
from ..weights import first_line
from .base import AdapterType
from .tuned_layer import is_adapter_tensor

MERGE_STRATEGIES = ("linear", "cat", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune", "orthogonal")


def _weights_file(path: str | Path) -> Path:
    """``path``, or the (first) ``.safetensors`` file of the directory ``path``."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise CheckpointError(f"adapter {path}: no .safetensors file in this directory")
        return files[0]
    if not path.exists():
        raise CheckpointError(f"adapter {path}: no such file or directory")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"adapter {path}: adapters load only from .safetensors files")
    return path


def adapter_type_of_file(path: str | Path) -> str:
    """The adapter type recorded in a file (or directory) written by difforge; ``lora`` for
    diffusers / kohya LoRA files without difforge metadata."""
    from .peft_tuner import read_safetensors

    _, metadata = read_safetensors(_weights_file(path))
    return metadata.get("difforge_adapter_type", "lora")


def adapter_component_of_file(path: str | Path) -> str:
    """``text_encoder`` for an adapter file whose keys all address a CLIP text encoder (a
    diffusers ``text_encoder.`` prefix or PEFT's ``text_model.`` keys), else ``denoiser``."""
    from ..weights import safetensors_keys

    keys = safetensors_keys(_weights_file(path), what="adapter")
    text = ("text_encoder.", "text_model.")
    return "text_encoder" if keys and all(k.startswith(text) for k in keys) else "denoiser"


class AdapterSet:
    """The named adapters attached to one model, each with its type and weight."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.types: dict[str, AdapterType] = {}
        self.weights: dict[str, float] = {}
        self._strategy_originals: dict[str, Tensor] | None = None

    @staticmethod
    def _type(kind: str | AdapterType) -> AdapterType:
        if isinstance(kind, AdapterType):
            return kind
        from ..plugins import get_registry

        return get_registry("adapters").get(kind)

    def _groups(self) -> list[tuple[AdapterType, list[str]]]:
        groups: dict[int, tuple[AdapterType, list[str]]] = {}
        for name, adapter_type in self.types.items():
            groups.setdefault(id(adapter_type), (adapter_type, []))[1].append(name)
        return list(groups.values())

    def add(self, kind: str | AdapterType, name: str = "default", weight: float = 1.0, **options: Any) -> AdapterType:
        """Inject a new adapter of type ``kind`` called ``name``."""
        if name in self.types:
            raise ValueError(f"an adapter called {name!r} is already attached")
        adapter_type = self._type(kind)
        adapter_type.inject(self.model, name, **options)
        self.types[name], self.weights[name] = adapter_type, weight
        self._apply()
        return adapter_type

    def load(self, path: str | Path, name: str = "default", weight: float = 1.0,
             kind: str | AdapterType | None = None) -> AdapterType:
        """Load an adapter file written by :meth:`save` (or a diffusers / kohya LoRA) as ``name``;
        the type is read from the file unless ``kind`` is given."""
        if name in self.types:
            raise ValueError(f"an adapter called {name!r} is already attached")
        adapter_type = self._type(kind if kind is not None else adapter_type_of_file(path))
        try:
            adapter_type.load(self.model, path, name)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:  # the file does not fit this model
            message = first_line(exc)
            raise WeightsError(message if message.startswith(f"adapter {path}") or str(path) in message
                               else f"adapter {path}: {message}") from None
        self.types[name], self.weights[name] = adapter_type, weight
        self._apply()
        return adapter_type

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Set per-adapter weights; adapters not named keep theirs; weight 0 keeps it loaded but inert."""
        unknown = set(weights) - set(self.types)
        if unknown:
            raise ValueError(f"unknown adapter(s) {sorted(unknown)}; have {sorted(self.types)}")
        self.weights.update(weights)
        self._apply()

    def _apply(self) -> None:
        for adapter_type, names in self._groups():
            adapter_type.activate(self.model, names, [self.weights[n] for n in names])

    def enable(self) -> None:
        """Re-enable every adapter."""
        for adapter_type, _ in self._groups():
            adapter_type.set_enabled(self.model, True)

    def disable(self) -> None:
        """Disable every adapter: the model computes exactly its base function."""
        for adapter_type, _ in self._groups():
            adapter_type.set_enabled(self.model, False)

    @contextmanager
    def disabled(self):
        """Context manager: inside it the model is its base (the frozen reference of
        preference optimisation), without keeping a second copy of the weights."""
        self.disable()
        try:
            yield self.model
        finally:
            self.enable()

    # -- merging ----------------------------------------------------------------------------
    def merge(self, names: list[str] | None = None, strategy: str = "linear", **options: Any) -> None:
        """Fold the named (default: all) adapters into the base weights at their weights, combined
        by ``strategy`` (see :data:`MERGE_STRATEGIES`); :meth:`unmerge` restores the base exactly."""
        names = list(names or self.types)
        unknown = [n for n in names if n not in self.types]
        if unknown:
            raise ValueError(f"unknown adapter(s) {unknown}; have {sorted(self.types)}")
        for n in names:
            if not self.types[n].mergeable:
                raise ValueError(f"adapter {n!r} ({self.types[n].name}) cannot be merged into the weights")
        if strategy not in MERGE_STRATEGIES:
            raise ValueError(f"unknown merge strategy {strategy!r}; known: {', '.join(MERGE_STRATEGIES)}")
        if strategy in ("linear", "cat"):
            for adapter_type, group in self._groups():  # in attach order: inner wrappers first
                chosen = [n for n in group if n in names]
                if chosen:
                    adapter_type.merge(self.model, chosen)
            return
        self._merge_task_vectors(names, strategy, **options)

    def task_vector(self, name: str) -> dict[str, Tensor]:
        """Adapter ``name``'s change to each base weight at weight 1 (merged alone, then unmerged)."""
        adapter_type = self.types[name]
        base = _weights(self.model)
        saved = dict(self.weights)
        self._apply_only(name)
        adapter_type.merge(self.model, [name])
        merged = _weights(self.model)
        adapter_type.unmerge(self.model)
        self.weights = saved
        self._apply()
        return {k: merged[k] - base[k] for k in base if not torch.equal(merged[k], base[k])}

    def _apply_only(self, name: str) -> None:
        self.weights = {n: (1.0 if n == name else 0.0) for n in self.types}
        self._apply()

    @torch.no_grad()
    def _merge_task_vectors(self, names: list[str], strategy: str, rank: int = 8, density: float = 0.5,
                            majority_sign_method: str = "total", max_cosine: float = 0.1) -> None:
        from peft.utils import merge_utils

        vectors = [self.task_vector(n) for n in names]
        weights = torch.tensor([self.weights[n] for n in names])
        keys = sorted(set().union(*vectors))
        params = _weight_params(self.model)
        if strategy == "orthogonal":
            for key in keys:
                mats = [v[key].reshape(v[key].shape[0], -1) for v in vectors if key in v]
                for i in range(len(mats)):
                    for j in range(i + 1, len(mats)):
                        cos = (mats[i] * mats[j]).sum() / (mats[i].norm() * mats[j].norm() + 1e-12)
                        if abs(float(cos)) > max_cosine:
                            raise ValueError(f"orthogonal merge: updates of {key} overlap (cosine {float(cos):.2f} "
                                             f"> {max_cosine}); were the adapters trained with distinct slots?")
        self._strategy_originals = {k: params[k].detach().clone() for k in keys}
        for key in keys:
            stacked = torch.stack([v.get(key, torch.zeros_like(params[key])) for v in vectors])
            if strategy == "orthogonal":
                delta = (weights.reshape(-1, *[1] * (stacked.dim() - 1)) * stacked).sum(0)
            elif strategy == "svd":
                total = (weights.reshape(-1, *[1] * (stacked.dim() - 1)) * stacked).sum(0)
                delta = _truncate(total, rank)
            elif strategy == "ties":
                delta = merge_utils.ties(stacked, weights, density, majority_sign_method)
            elif strategy == "dare_linear":
                delta = merge_utils.dare_linear(stacked, weights, density)
            elif strategy == "dare_ties":
                delta = merge_utils.dare_ties(stacked, weights, density, majority_sign_method)
            else:  # magnitude_prune
                delta = merge_utils.magnitude_prune(stacked, weights, density)
            params[key].add_(delta.to(params[key].dtype))
        self.disable()

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore the base weights after :meth:`merge`."""
        if self._strategy_originals is not None:
            params = _weight_params(self.model)
            for key, value in self._strategy_originals.items():
                params[key].copy_(value)
            self._strategy_originals = None
            self.enable()
        for adapter_type, _ in reversed(self._groups()):  # outer wrappers first
            adapter_type.unmerge(self.model)

    # -- state ------------------------------------------------------------------------------
    def save(self, name: str, path: str | Path) -> Path:
        """Save one adapter (safetensors, atomically)."""
        return self.types[name].save(self.model, name, path)

    def state_dict(self, name: str) -> dict[str, Tensor]:
        """All tensors of adapter ``name`` (trainable and not)."""
        return self.types[name].state_dict(self.model, name)

    def load_state_dict(self, name: str, state: dict[str, Tensor]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.types[name].load_state_dict(self.model, name, state)

    def trainable_parameters(self, name: str) -> list[nn.Parameter]:
        """Parameters of adapter ``name``."""
        return self.types[name].trainable_parameters(self.model, name)

    def num_trainable(self, name: str) -> int:
        """Trainable scalars of adapter ``name``."""
        return self.types[name].num_trainable(self.model, name)

    def regularization(self) -> Tensor | None:
        """The sum of the adapters' loss penalties (None when none has one)."""
        terms = [t for n, at in self.types.items() if (t := at.regularization(self.model, n)) is not None]
        return torch.stack(terms).sum() if terms else None

    def on_step_end(self, step: int, total_steps: int) -> list[nn.Parameter]:
        """Let each adapter act after an optimizer step; returns parameters to reset in the optimizer."""
        reset: list[nn.Parameter] = []
        for name, adapter_type in self.types.items():
            reset += adapter_type.on_step_end(self.model, name, step, total_steps)
        return reset


def _weight_params(model: nn.Module) -> dict[str, nn.Parameter]:
    """Base weights by a wrapper-free name (adapter tensors excluded)."""
    out = {}
    for name, param in model.named_parameters():
        if is_adapter_tensor(name):
            continue
        out[name.replace(".base_layer", "")] = param
    return out


def _weights(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in _weight_params(model).items()}


def _truncate(matrix: Tensor, rank: int) -> Tensor:
    """Best rank-``rank`` approximation of a weight-shaped update (as out x rest)."""
    if matrix.dim() < 2:
        return matrix
    flat = matrix.reshape(matrix.shape[0], -1)
    u, s, vh = torch.linalg.svd(flat, full_matrices=False)
    r = min(rank, s.numel())
    return ((u[:, :r] * s[:r]) @ vh[:r]).reshape(matrix.shape)
