"""PPAP's expert guiders (Go et al. 2023, "Towards Practical Plug-and-Play Diffusion Models").

A clean classifier fails on noisy inputs, and one network for every noise level is too hard a
task, so PPAP splits the timesteps into ``N`` ranges, ``[t_{i-1}, t_i)``, and gives each its own
expert. The experts share the frozen clean classifier and differ only in a LoRA adapter
(parameter-efficient fine-tuning, PEFT's LoRA on every convolution and the head), and they are
trained without labelled data (data-free knowledge transfer): the diffusion model generates
clean samples ``x0``, the clean classifier labels them (its softmax, the teacher), and expert
``i`` learns to give the same distribution on ``x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε`` for ``t`` in its
range (the KL divergence from the teacher). ``num_experts=1`` is the single noise-aware guider
the paper compares with.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from difforge.plugin_api import WeightsError, atomic_save_json

from .classifier import LatentClassifier

EXPERTS_FILE = "ppap.json"


class PPAPConfig(BaseModel):
    """How the experts are made (``difforge train-guiders`` options)."""

    model_config = ConfigDict(extra="forbid")

    num_experts: int = Field(5, ge=1, description="timestep ranges, one LoRA expert each (1: a single guider)")
    rank: int = Field(8, ge=1, description="LoRA rank of every expert")
    steps: int = Field(300, ge=1, description="distillation steps per expert")
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(2e-3, gt=0)
    temperature: float = Field(1.0, gt=0, description="softmax temperature of the teacher and the student")


class ExpertGuider(nn.Module):
    """A clean classifier with one LoRA expert per timestep range; :meth:`logits` at a timestep
    runs the expert of that range."""

    def __init__(self, classifier: LatentClassifier, boundaries: list[int], rank: int = 8) -> None:
        from peft import LoraConfig, get_peft_model

        super().__init__()
        if sorted(boundaries) != boundaries or boundaries[0] != 0 or len(boundaries) < 2:
            raise ValueError(f"expert boundaries must rise from 0: {boundaries}")
        self.boundaries = list(boundaries)
        self.rank = rank
        self.clean = copy.deepcopy(classifier).eval().requires_grad_(False)
        targets = [name for name, module in classifier.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
        config = LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, init_lora_weights=True)
        self.model = get_peft_model(copy.deepcopy(self.clean), config, adapter_name=self.expert_name(0))
        for i in range(1, self.num_experts):
            self.model.add_adapter(self.expert_name(i), config)

    @property
    def num_experts(self) -> int:
        return len(self.boundaries) - 1

    @staticmethod
    def expert_name(i: int) -> str:
        return f"expert_{i}"

    def expert_of(self, timestep: int) -> int:
        """The index of the expert whose range ``[t_{i-1}, t_i)`` holds ``timestep``."""
        for i in range(self.num_experts):
            if timestep < self.boundaries[i + 1]:
                return i
        return self.num_experts - 1

    def logits(self, x: Tensor, timestep: int | None) -> Tensor:
        """Class logits of noisy inputs ``x`` at ``timestep`` (``None``: clean inputs, the clean classifier)."""
        if timestep is None:
            return self.clean(x)
        self.model.set_adapter(self.expert_name(self.expert_of(timestep)))
        return self.model(x)

    def expert_parameters(self, i: int) -> list[nn.Parameter]:
        """The LoRA parameters of expert ``i`` (what its distillation trains)."""
        name = self.expert_name(i)
        return [p for n, p in self.model.named_parameters() if f".{name}." in n]

    def save_pretrained(self, path: str | Path) -> None:
        """``classifier/`` (diffusers safetensors), ``experts/`` (PEFT safetensors, one folder per
        expert) and ``ppap.json`` (the ranges)."""
        path = Path(path)
        self.clean.save_pretrained(path / "classifier", safe_serialization=True)
        self.model.save_pretrained(path / "experts", selected_adapters=[self.expert_name(i)
                                                                        for i in range(self.num_experts)])
        atomic_save_json({"boundaries": self.boundaries, "rank": self.rank,
                          "experts": [self.expert_name(i) for i in range(self.num_experts)]}, path / EXPERTS_FILE)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> ExpertGuider:
        """The guider saved by :meth:`save_pretrained`; one line naming what is missing."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        path = Path(path)
        if not (path / EXPERTS_FILE).is_file():
            raise WeightsError(f"{path}: not a PPAP guider folder (no {EXPERTS_FILE}; make one with "
                               "`difforge train-guiders`)")
        meta = json.loads((path / EXPERTS_FILE).read_text())
        guider = cls(LatentClassifier.from_pretrained(path / "classifier"), meta["boundaries"], meta["rank"])
        for name in meta["experts"]:
            weights = path / "experts" / name / "adapter_model.safetensors"
            if not weights.is_file():
                raise WeightsError(f"{path}: expert {name!r} has no {weights.relative_to(path)}")
            loaded = set_peft_model_state_dict(guider.model, load_file(weights), adapter_name=name)
            if loaded.unexpected_keys:
                raise WeightsError(f"{weights}: {len(loaded.unexpected_keys)} tensors fit no layer of the "
                                   f"classifier (first: {loaded.unexpected_keys[0]})")
        return guider.eval()


def expert_boundaries(num_experts: int, num_train_timesteps: int = 1000) -> list[int]:
    """``N + 1`` boundaries splitting ``[0, T)`` into equal timestep ranges (the paper's split)."""
    return [round(i * num_train_timesteps / num_experts) for i in range(num_experts + 1)]


@torch.no_grad()
def generate_clean_samples(backbone, count: int, *, num_steps: int = 25, batch_size: int = 64,
                           generator: torch.Generator | None = None) -> Tensor:
    """``count`` samples of the diffusion model in denoiser space, with the empty prompt for a
    text model: the unlabelled data of the data-free transfer."""
    batches = []
    for start in range(0, count, batch_size):
        n = min(batch_size, count - start)
        prompts = [""] * n if backbone.conditioning == "text" else None
        batches.append(backbone.sample(prompts, num_samples=n, num_steps=num_steps, generator=generator,
                                       decode=False))
    return torch.cat(batches)


def distill_experts(classifier: LatentClassifier, clean: Tensor, alphas_cumprod: Tensor,
                    config: PPAPConfig | None = None, generator: torch.Generator | None = None) -> ExpertGuider:
    """PPAP's data-free transfer: the experts of ``config.num_experts`` equal timestep ranges
    learn the clean classifier's soft labels of the clean samples ``clean`` from their noised
    versions (``alphas_cumprod``: the model's ᾱ_t); returns the guider."""
    config = config or PPAPConfig()
    classifier = classifier.eval()
    guider = ExpertGuider(classifier, expert_boundaries(config.num_experts, len(alphas_cumprod)), config.rank)
    with torch.no_grad():
        teacher = torch.softmax(guider.logits(clean, None) / config.temperature, dim=-1)
    alphas_cumprod = alphas_cumprod.float()
    for i in range(guider.num_experts):
        low, high = guider.boundaries[i], guider.boundaries[i + 1]
        guider.model.set_adapter(guider.expert_name(i))
        parameters = guider.expert_parameters(i)
        optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=0.0)
        for _ in range(config.steps):
            rows = torch.randint(len(clean), (config.batch_size,), generator=generator)
            t = torch.randint(low, high, (config.batch_size,), generator=generator)
            noise = torch.randn(clean[rows].shape, generator=generator)
            alpha = alphas_cumprod[t].view(-1, 1, 1, 1)
            noisy = alpha.sqrt() * clean[rows] + (1 - alpha).sqrt() * noise
            loss = F.cross_entropy(guider.model(noisy) / config.temperature, teacher[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return guider.eval()


@torch.no_grad()
def expert_agreement(guider: ExpertGuider, clean: Tensor, alphas_cumprod: Tensor, boundaries: list[int] | None = None,
                     generator: torch.Generator | None = None) -> list[dict[str, float]]:
    """Per timestep range (``boundaries``, default the guider's own), how often the guider (the
    expert of each row's timestep) and the clean classifier, each given the noised samples, pick
    the class the clean classifier picks on the clean samples ``clean``."""
    boundaries = boundaries or guider.boundaries
    labels = guider.logits(clean, None).argmax(-1)
    rows = []
    for low, high in zip(boundaries[:-1], boundaries[1:], strict=True):
        t = torch.randint(low, high, (len(clean),), generator=generator)
        alpha = alphas_cumprod.float()[t].view(-1, 1, 1, 1)
        noisy = alpha.sqrt() * clean + (1 - alpha).sqrt() * torch.randn(clean.shape, generator=generator)
        experts = torch.tensor([guider.expert_of(int(v)) for v in t])
        picked = torch.empty_like(labels)
        for i in experts.unique().tolist():
            guider.model.set_adapter(guider.expert_name(i))
            picked[experts == i] = guider.model(noisy[experts == i]).argmax(-1)
        rows.append({"timesteps": [low, high], "guider": float((picked == labels).float().mean()),
                     "clean classifier": float((guider.clean(noisy).argmax(-1) == labels).float().mean())})
    return rows
