"""Atomic writes and training checkpoints.

A file is written to a temporary sibling, flushed and fsynced, then renamed over the target;
a checkpoint directory is assembled under a temporary name and renamed into place, so a
crash at any moment leaves either the old state or the new one, never a half-written one.
Tensors are stored as safetensors; the rest as JSON, or for optimizer/scheduler state as
``torch.save`` files that are only ever read back with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
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
#: the kill-point test's switch: the N-th :func:`crash_point` of the process SIGKILLs it
CRASH_AT_ENV = "DIFFORGE_CRASH_AT"
_crash_points_passed = 0


def crash_point(label: str) -> None:
    """A moment a crash must be survivable at (between the writes and renames of a save).
    Normally nothing; with ``DIFFORGE_CRASH_AT=N`` in the environment the N-th crash point the
    process reaches kills it with SIGKILL, and ``DIFFORGE_CRASH_LOG=FILE`` appends each label
    reached to FILE (how the kill-point test finds and hits every such moment)."""
    global _crash_points_passed
    target, log = os.environ.get(CRASH_AT_ENV), os.environ.get("DIFFORGE_CRASH_LOG")
    if target is None and log is None:
        return
    _crash_points_passed += 1
    if log:
        with open(log, "a") as f:
            f.write(f"{_crash_points_passed} {label}\n")
    if target is not None and _crash_points_passed == int(target):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


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
        crash_point(f"before replacing {path.name}")
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
        crash_point(f"after replacing {path.name}")
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


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest(directory: Path) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of every file under ``directory`` (relative POSIX paths)."""
    return {p.relative_to(directory).as_posix(): {"size": p.stat().st_size, "sha256": file_digest(p)}
            for p in sorted(directory.rglob("*")) if p.is_file()}


def checkpoint_problem(path: str | Path) -> str | None:
    """Why the checkpoint ``path`` cannot be trusted (a file missing, resized or changed since
    it was saved, per the manifest in its marker), or ``None`` when it is intact. Checkpoints
    written before manifests were kept are trusted when their marker is readable."""
    path = Path(path)
    marker = path / COMPLETE_MARKER
    try:
        recorded = json.loads(marker.read_text())
    except FileNotFoundError:
        return f"no {COMPLETE_MARKER} (an interrupted save)"
    except (OSError, ValueError) as exc:
        return f"{COMPLETE_MARKER} is unreadable ({exc})".splitlines()[0]
    for name, expected in (recorded.get("files") or {}).items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        size = file.stat().st_size
        if size != expected["size"]:
            return f"{name} has {size} bytes, {expected['size']} when saved"
        if file_digest(file) != expected["sha256"]:
            return f"{name} changed since it was saved (SHA-256 differs)"
    return None


def write_checkpoint_dir(output_dir: str | Path, step: int, fill: Callable[[Path], None],
                         keep_last: int | None, info: dict[str, Any] | None = None) -> Path:
    """Create ``checkpoint-<step>`` atomically: ``fill(tmp_dir)`` writes the files, the marker
    records ``info`` and every file's size and SHA-256 (checked on resume), then the directory is
    renamed into place; older checkpoints beyond ``keep_last`` are removed, oldest first."""
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{CHECKPOINT_PREFIX}{step}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    try:
        fill(tmp)
        atomic_save_json({**(info or {}), "step": step, "files": manifest(tmp)}, tmp / COMPLETE_MARKER)
        publish_directory(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if keep_last:
        for stale in list_checkpoints(root)[:-keep_last]:
            crash_point(f"before pruning {stale.name}")
            _remove_checkpoint(stale)
    return final


def _remove_checkpoint(path: Path) -> None:
    """Delete a checkpoint so that a crash midway never leaves it looking complete: its marker
    goes first (the directory is then skipped as incomplete), then the rest."""
    (path / COMPLETE_MARKER).unlink(missing_ok=True)
    crash_point(f"while pruning {path.name}")
    shutil.rmtree(path, ignore_errors=True)


def publish_directory(tmp: Path, final: Path) -> Path:
    """Rename the finished directory ``tmp`` to ``final``, replacing an existing one so that a
    crash at any moment leaves the old or the new directory in place (an old one moved aside is
    removed when the new one is in place)."""
    root = final.parent
    if final.exists():
        old = root / f".{final.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        crash_point(f"between replacing {final.name}")
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(root)
    crash_point(f"after publishing {final.name}")
    return final


def require_checkpoint(path: str | Path) -> Path:
    """Validate that ``path`` is a complete, intact checkpoint directory."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    if not (path / COMPLETE_MARKER).exists():
        raise CheckpointError(f"{path}: not a complete difforge checkpoint (no {COMPLETE_MARKER})")
    problem = checkpoint_problem(path)
    if problem is not None:
        raise CheckpointError(f"{path}: damaged checkpoint: {problem}")
    return path
