"""The clean classifier PPAP starts from: a small convolutional classifier of denoiser-space
inputs (VAE latents for a latent model, pixels otherwise), a diffusers ``ModelMixin`` whose
config carries its class names, so it saves and loads as safetensors with ``save_pretrained``
/ ``from_pretrained``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from difforge.plugin_api import UsageError


class LatentClassifier(ModelMixin, ConfigMixin):
    """``(N, C, H, W) -> (N, len(labels))`` logits: two stride-2 stages of 3×3 convolutions,
    global average pooling and a linear head. ``labels`` names the classes."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, in_channels: int = 4, labels: Sequence[str] = (), channels: Sequence[int] = (32, 64)) -> None:
        super().__init__()
        if not labels:
            raise ValueError("LatentClassifier needs the names of its classes (labels)")
        layers: list[nn.Module] = []
        width = in_channels
        for out in channels:
            layers += [nn.Conv2d(width, out, 3, padding=1), nn.SiLU(), nn.Conv2d(out, out, 3, stride=2, padding=1),
                       nn.SiLU()]
            width = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, len(labels))

    @property
    def labels(self) -> list[str]:
        """The class names, in logit order."""
        return list(self.config.labels)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))

    def class_index(self, names: Sequence[str] | str) -> Tensor:
        """Class indices of ``names``; one line naming the unknown class and the known ones."""
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in self.labels]
        if unknown:
            raise UsageError(f"classifier has no class {unknown[0]!r}; its classes: {', '.join(self.labels)}")
        return torch.tensor([self.labels.index(n) for n in names], dtype=torch.long)


def train_classifier(model: LatentClassifier, inputs: Tensor, targets: Tensor, *, steps: int = 600,
                     batch_size: int = 64, learning_rate: float = 2e-3,
                     generator: torch.Generator | None = None) -> list[float]:
    """Fit ``model`` to soft class targets ``(N, classes)`` (rows summing to 1) by cross-entropy
    with AdamW; returns the loss of every step. The clean classifier of PPAP sees clean inputs only."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    model.train()
    losses = []
    for _ in range(steps):
        rows = torch.randint(len(inputs), (batch_size,), generator=generator)
        loss = F.cross_entropy(model(inputs[rows]), targets[rows])  # probability targets
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses

