"""Per-item augmentation: transforms applied where the data is read, not in the loop.

A transform is a callable ``transform(item, generator) -> item`` over one dataset item (the
dict a dataset returns) that draws its randomness from ``generator`` only. :class:`Augmented`
applies a list of them with a generator seeded by ``(seed, epoch, index)``: an item is
augmented the same way in a straight and in a resumed run, on any rank and with any number of
loader workers, and augmentation draws nothing from the loop's own random stream. A domain
whose augmentation is part of its data (a dataset that draws random control masks, say) does it
in its own ``__getitem__`` the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .data import CorruptSample, is_sample_key

Transform = Callable[[dict[str, Any], torch.Generator], dict[str, Any]]


class RandomFlip:
    """Flip an item's samples along ``dims`` with probability ``p``: the horizontal flip of
    image training (``data.random_flip``; the last axis is an image's or a video frame's width).
    Every sample tensor of the item flips together, so a preference pair stays a pair."""

    def __init__(self, dims: Sequence[int] = (-1,), p: float = 0.5) -> None:
        self.dims, self.p = tuple(dims), p

    def __call__(self, item: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        if float(torch.rand((), generator=generator)) >= self.p:
            return item
        return {k: v.flip(self.dims) if is_sample_key(k) and isinstance(v, torch.Tensor) else v
                for k, v in item.items()}


class Augmented(Dataset):
    """``dataset`` with ``transforms`` applied to every item, each item's draws seeded by
    ``(seed, epoch, index)``; the loop calls :meth:`set_epoch` before each epoch's loader."""

    def __init__(self, dataset: Dataset, transforms: Sequence[Transform], seed: int) -> None:
        self.dataset, self.transforms, self.seed, self.epoch = dataset, list(transforms), seed, 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose items are read next."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        item = self.dataset[index]
        if isinstance(item, CorruptSample):
            return item
        state = np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(2, dtype=np.uint32)
        generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        for transform in self.transforms:
            item = transform(item, generator)
        return item


__all__ = ["Augmented", "RandomFlip", "Transform"]
