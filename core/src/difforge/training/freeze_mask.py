"""The freeze-mask file contract: a JSON file whose ``frozen`` list names tensors of the denoiser
that full fine-tuning must leave as they are (``train.freeze_mask``). FreezeAsGuard
(``difforge-guard``) learns such masks; any tool may write one.
"""

from __future__ import annotations

import json
from pathlib import Path


def load_freeze_mask(path: str | Path) -> list[str]:
    """The frozen tensor names of a mask file, with a one-line error for a bad file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        frozen = data["frozen"]
    except FileNotFoundError:
        raise FileNotFoundError(f"train.freeze_mask: no file {path}") from None
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"train.freeze_mask: {path} is not a FreezeAsGuard mask (no 'frozen' list)") from None
    if not isinstance(frozen, list) or not all(isinstance(n, str) for n in frozen):
        raise ValueError(f"train.freeze_mask: {path}: 'frozen' must be a list of tensor names")
    return frozen
