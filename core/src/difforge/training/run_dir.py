"""An output directory belongs to one run.

``run.json`` in ``output.dir`` records the run's id and the hash of its *identity*: the config
without what may change between a run and its resumption (``train.steps``, ``train.resume``, the
``output`` section, ``data.num_workers``). A new run refuses a directory that holds another one
unless told ``output.overwrite``; a resumed run must have the same identity as the run (or the
checkpoint) it continues, and the refusal says which keys differ.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from ..checkpointing import CHECKPOINT_PREFIX, atomic_save_json, atomic_write, list_checkpoints
from ..config import RunConfig, dump_config
from ..errors import CheckpointError, ConfigError

RUN_FILE = "run.json"
#: config keys a resumed run may change without becoming another run
VOLATILE_KEYS = ("train.steps", "train.resume", "output", "data.num_workers")
#: what a run writes into its directory (what ``output.overwrite`` removes, with the checkpoints)
RUN_OUTPUTS = ("run.json", "config.yaml", "train_summary.json", "history.json", "report.html", "samples", "logs",
               "difforge", "adapter", "adapter_ema", "model", "model_ema")


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: data}


def run_identity(config: RunConfig | dict[str, Any]) -> dict[str, Any]:
    """The config keys (flattened, ``section.key``) that make a run this run."""
    data = config.model_dump(mode="json") if isinstance(config, RunConfig) else config
    return {k: v for k, v in _flatten(data).items()
            if not any(k == vol or k.startswith(vol + ".") for vol in VOLATILE_KEYS)}


def identity_hash(identity: dict[str, Any]) -> str:
    """A stable hash of a run identity."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def identity_difference(old: dict[str, Any], new: dict[str, Any], limit: int = 4) -> str:
    """``key: old -> new`` for the first ``limit`` keys that differ (and how many more)."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    shown = "; ".join(f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}" for k in keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def read_run_file(output_dir: Path) -> dict[str, Any] | None:
    """The ``run.json`` of a directory, or ``None``; a damaged one is a one-line error."""
    file = output_dir / RUN_FILE
    if not file.exists():
        return None
    try:
        run = json.loads(file.read_text())
        if not isinstance(run, dict) or "identity" not in run:
            raise ValueError("no identity")
        return run
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{file}: damaged run file ({exc}); move the directory aside or pass --overwrite") from None


def checkpoint_identity(checkpoint: Path) -> dict[str, Any] | None:
    """The run identity a checkpoint was saved under (from its ``config.yaml``), or ``None``."""
    file = checkpoint / "config.yaml"
    if not file.exists():
        return None
    try:
        return run_identity(yaml.safe_load(file.read_text()))
    except (yaml.YAMLError, OSError, AttributeError) as exc:
        raise CheckpointError(f"{file}: unreadable ({exc})".splitlines()[0]) from None


def holds_run(output_dir: Path) -> bool:
    """Whether ``output_dir`` holds something of a run that re-using it would lose or mix: a
    checkpoint or a finished run's outputs (a run that stopped before saving anything leaves
    nothing to lose)."""
    return output_dir.is_dir() and (
        (output_dir / "train_summary.json").exists()
        or any(p.name.startswith(CHECKPOINT_PREFIX) for p in output_dir.iterdir()))


def check_output_dir(config: RunConfig) -> None:
    """Refuse, before anything is loaded or written, a run that would mix with another in
    ``output.dir`` (every process calls it; it only reads)."""
    out = Path(config.output.dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output.dir: {out} is a file, not a directory")
    resume = config.train.resume
    if resume and config.output.overwrite:
        raise ConfigError("--overwrite (output.overwrite) deletes the run that --resume (train.resume) would "
                          "continue; give one of them")
    identity = run_identity(config)
    if resume and resume != "auto":
        saved = checkpoint_identity(Path(resume))
        if saved is not None and saved != identity:
            raise CheckpointError(f"{resume}: this checkpoint belongs to a run with another config: "
                                  f"{identity_difference(saved, identity)}")
    if not holds_run(out) or config.output.overwrite:
        return
    run = read_run_file(out)
    if resume:  # continuing: the directory must hold this same run
        latest = list_checkpoints(out)
        saved = run["identity"] if run else checkpoint_identity(latest[-1]) if latest else None
        if saved is not None and saved != identity:
            raise ConfigError(f"output.dir: {out} holds a run with another config "
                              f"({identity_difference(saved, identity)}); resume it with its own config, pick "
                              "another output.dir, or pass --overwrite")
        return
    what = f"run {run['run_id']}" if run else "a run"
    raise ConfigError(f"output.dir: {out} already holds {what}; resume it with --resume auto, pick another "
                      "output.dir, or pass --overwrite to replace it")


def prepare_output_dir(config: RunConfig) -> dict[str, Any]:
    """This run's record (main process only, after :func:`check_output_dir`): with
    ``output.overwrite`` the previous run's outputs are removed first; a resumed run keeps its
    ``run_id``. Nothing is written until :func:`write_run_files`."""
    out = Path(config.output.dir)
    if config.output.overwrite and holds_run(out):
        remove_run(out)
    run = read_run_file(out) if out.is_dir() else None
    identity = run_identity(config)
    if run is None or run["identity"] != identity:
        run = {"run_id": uuid.uuid4().hex[:12], "identity_hash": identity_hash(identity), "identity": identity,
               "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return run


def write_run_files(config: RunConfig, run: dict[str, Any]) -> None:
    """Write ``run.json`` and the run's ``config.yaml`` into ``output.dir`` (after the first
    step: a run that fails before it leaves the directory as it was)."""
    out = Path(config.output.dir)
    atomic_save_json(run, out / RUN_FILE)
    atomic_write(out / "config.yaml", lambda p: p.write_text(dump_config(config)))


def remove_run(out: Path) -> None:
    """Delete a previous run's outputs from ``out`` (what runs write; other files are left alone)."""
    for entry in out.iterdir():
        if entry.name in RUN_OUTPUTS or entry.name.startswith((CHECKPOINT_PREFIX, f".{CHECKPOINT_PREFIX}")):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


__all__ = ["RUN_FILE", "check_output_dir", "holds_run", "identity_difference", "prepare_output_dir", "run_identity",
           "write_run_files"]
