"""The training loop, objectives and data plumbing."""

from .data import BUILTIN_DATASETS, EpochBatchSampler, ImageFolderDataset, collate
from .objectives import BUILTIN_OBJECTIVES, DenoisingObjective, Objective
from .trainer import Trainer, TrainResult, build_backbone, build_dataset, train

__all__ = [
    "BUILTIN_DATASETS",
    "BUILTIN_OBJECTIVES",
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
