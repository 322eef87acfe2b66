"""Reading weight files: safetensors only, every failure one line naming the file.

A truncated or forged file, a zip or pickle renamed ``.safetensors``, and tensors holding NaN or
inf are refused here, before any of their values reach a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor

from .errors import DifforgeError, WeightsError


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first non-empty line."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def read_safetensors(file: str | Path, *, what: str = "weights", check_finite: bool = True,
                     error: type[DifforgeError] = WeightsError) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file. A missing, truncated or non-safetensors file,
    or (with ``check_finite``) a tensor holding NaN/inf, raises ``error`` naming ``what`` and the file."""
    from safetensors import SafetensorError, safe_open

    file = Path(file)
    if not file.is_file():
        raise error(f"{what} {file}: no such file")
    try:
        with safe_open(str(file), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            metadata = dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise error(f"{what} {file}: not a readable safetensors file ({first_line(exc)})") from None
    if check_finite:
        require_finite(tensors.items(), f"{what} {file}", error=error)
    return tensors, metadata


def safetensors_keys(file: str | Path, *, what: str = "weights") -> list[str]:
    """The tensor names of a safetensors file (its header only), or one-line ``WeightsError``."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            return list(f.keys())
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{what} {file}: not a readable safetensors file ({first_line(exc)})") from None


def require_finite(named: Iterable[tuple[str, Tensor]] | Mapping[str, Tensor], source: str, *,
                   error: type[DifforgeError] = WeightsError) -> None:
    """Raise ``error`` naming ``source`` and the first floating tensor holding NaN or inf."""
    items = named.items() if isinstance(named, Mapping) else named
    for name, tensor in items:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise error(f"{source}: tensor {name!r} holds {bad} NaN/inf value(s)")


def require_finite_module(module: torch.nn.Module | None, source: str) -> None:
    """:func:`require_finite` over a module's parameters and buffers."""
    if module is not None:
        require_finite([*module.named_parameters(), *module.named_buffers()], source)


__all__ = ["first_line", "read_safetensors", "require_finite", "require_finite_module", "safetensors_keys"]
