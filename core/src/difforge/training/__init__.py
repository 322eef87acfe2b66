"""The training loop, objectives and data plumbing."""

from .data import EpochBatchSampler, ImageFolderDataset, collate
from .objectives import DenoisingObjective, Objective
from .trainer import Trainer, TrainResult, build_backbone, build_dataset, train

__all__ = [
    "DenoisingObjective",
    "EpochBatchSampler",
    "ImageFolderDataset",
    "Objective",
    "TrainResult",
    "Trainer",
    "build_backbone",
    "build_dataset",
    "collate",
    "train",
]
