"""The training loop, objectives and data plumbing."""

from .assembly import build_backbone, build_dataset
from .context import TrainingContext
from .data import EpochBatchSampler, ImageFolderDataset, collate
from .objectives import DenoisingObjective, Objective
from .trainer import Trainer, TrainResult, train

__all__ = [
    "DenoisingObjective",
    "EpochBatchSampler",
    "ImageFolderDataset",
    "Objective",
    "TrainResult",
    "TrainingContext",
    "Trainer",
    "build_backbone",
    "build_dataset",
    "collate",
    "train",
]
