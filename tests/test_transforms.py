"""Per-item augmentation (``data.random_flip``) lives in the data, seeded per item."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from difforge.training.data import CorruptSample, collate
from difforge.training.transforms import Augmented, RandomFlip


class Ramps(Dataset):
    """Item i: a (1, 2, 4) ramp pair (chosen, rejected = -chosen) plus a caption."""

    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int):
        if index == 63:
            return CorruptSample("unreadable")
        ramp = torch.arange(8.0).reshape(1, 2, 4) + index
        return {"sample_chosen": ramp, "sample_rejected": -ramp, "caption": f"item {index}"}


def flipped(item, index: int) -> bool:
    return bool(item["sample_chosen"][0, 0, 0] == 3 + index)


def test_flips_half_the_items_pairs_together_and_repeats_per_epoch():
    data = Augmented(Ramps(), [RandomFlip()], seed=3)
    first = [flipped(data[i], i) for i in range(63)]
    assert 20 < sum(first) < 43
    for i in range(63):
        item = data[i]
        assert torch.equal(item["sample_rejected"], -item["sample_chosen"]), i  # the pair flips together
        assert item["caption"] == f"item {i}"
    assert [flipped(data[i], i) for i in range(63)] == first  # an item's draw depends on (seed, epoch, index)
    data.set_epoch(1)
    assert [flipped(data[i], i) for i in range(63)] != first
    assert isinstance(data[63], CorruptSample)
    other_seed = Augmented(Ramps(), [RandomFlip()], seed=4)
    assert [flipped(other_seed[i], i) for i in range(63)] != first


def test_loader_workers_do_not_change_the_augmentation():
    data = Augmented(Ramps(), [RandomFlip()], seed=0)
    data.set_epoch(2)
    batches = [list(DataLoader(data, batch_size=8, collate_fn=collate, num_workers=workers))
               for workers in (0, 2)]
    for a, b in zip(*batches, strict=True):
        assert torch.equal(a["sample_chosen"], b["sample_chosen"])
