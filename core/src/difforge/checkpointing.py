"""Atomic writes and training checkpoints.

A file is written to a temporary sibling, flushed and fsynced, then renamed over the target;
a checkpoint directory is assembled under a temporary name and renamed into place, so a
crash at any moment leaves either the old state or the new one, never a half-written one.
Tensors are stored as safetensors; the rest as JSON, or for optimizer/scheduler state as
``torch.save`` files that are only ever read back with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .errors import CheckpointError

CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "difforge_checkpoint.json"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then atomically rename the temp file to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)
    return path


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path,
                            metadata: dict[str, str] | None = None) -> Path:
    """Save tensors as safetensors, atomically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=metadata))


def atomic_save_json(obj: Any, path: str | Path) -> Path:
    """Save JSON, atomically."""
    return atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, sort_keys=True)))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically (only for tensors and plain containers: read back weights-only)."""
    return atomic_write(path, lambda p: torch.save(obj, p))


def torch_load_safe(path: str | Path) -> Any:
    """Load a file written by :func:`atomic_torch_save`, refusing anything but weights."""
    return torch.load(path, map_location="cpu", weights_only=True)


def checkpoint_step(path: Path) -> int | None:
    """The step number of a checkpoint directory name, or ``None``."""
    match = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d+)", path.name)
    return int(match.group(1)) if match else None


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints under ``output_dir``, oldest first."""
    root = Path(output_dir)
    if not root.exists():
        return []
    found = [
        p for p in root.iterdir()
        if p.is_dir() and checkpoint_step(p) is not None and (p / COMPLETE_MARKER).exists()
    ]
    return sorted(found, key=lambda p: checkpoint_step(p))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint, or ``None``."""
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def write_checkpoint_dir(output_dir: str | Path, step: int, fill: Callable[[Path], None],
                         keep_last: int | None) -> Path:
    """Create ``checkpoint-<step>`` atomically: ``fill(tmp_dir)`` writes the files, then the
    directory is renamed into place; older checkpoints beyond ``keep_last`` are removed."""
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{CHECKPOINT_PREFIX}{step}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    try:
        fill(tmp)
        atomic_save_json({"step": step}, tmp / COMPLETE_MARKER)
        if final.exists():
            old = root / f".{final.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if keep_last:
        for stale in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def require_checkpoint(path: str | Path) -> Path:
    """Validate that ``path`` is a complete checkpoint directory."""
    path = Path(path)
    if not (path / COMPLETE_MARKER).exists():
        raise CheckpointError(f"{path}: not a complete difforge checkpoint (no {COMPLETE_MARKER})")
    return path
