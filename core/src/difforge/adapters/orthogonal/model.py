"""The Orthogonal Adaptation adapter type: PEFT LoRA with a frozen, orthogonal ``lora_A``.
Files are plain diffusers-layout LoRA files, so they load anywhere LoRA loads."""

from __future__ import annotations

import zlib

import torch
from torch import nn

from ..lora.model import LoraAdapter
from ..peft_tuner import tuner_layers
from .config import OrthogonalOptions

KIND = "orthogonal"


def orthogonal_basis(size: int, seed: int, layer_name: str) -> torch.Tensor:
    """A random ``size x size`` orthogonal matrix, the same for every concept that uses ``seed``."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(layer_name.encode()))
    q, r = torch.linalg.qr(torch.randn(size, size, generator=g, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()


class OrthogonalAdapter(LoraAdapter):
    """Orthogonal Adaptation: only ``lora_B`` trains; ``lora_A`` is this concept's basis rows."""

    name = KIND
    options_model = OrthogonalOptions

    def _owns(self, config) -> bool:
        return getattr(config, "_difforge_kind", None) == KIND

    def _peft_config(self, options: OrthogonalOptions):
        config = options.to_peft()
        config._difforge_kind = KIND
        return config

    def _after_inject(self, model: nn.Module, adapter_name: str, options: OrthogonalOptions) -> None:
        model.peft_config[adapter_name]._difforge_kind = KIND
        self._set_bases(model, adapter_name, options)

    @torch.no_grad()
    def _set_bases(self, model: nn.Module, adapter_name: str, opts: OrthogonalOptions) -> None:
        names = {id(m): n for n, m in model.named_modules()}
        for layer in tuner_layers(model, adapter_name):
            down = layer.lora_A[adapter_name]
            width = down.weight[0].numel()
            lo, hi = opts.slot * opts.rank, (opts.slot + 1) * opts.rank
            if hi > width:
                raise ValueError(f"orthogonal: {names[id(layer)]} has input width {width}, room for "
                                 f"{width // opts.rank} slots of rank {opts.rank}; slot {opts.slot} does not fit")
            basis = orthogonal_basis(width, opts.basis_seed, names[id(layer)])
            down.weight.copy_(basis[lo:hi].reshape(down.weight.shape))
            down.weight.requires_grad_(False)

    def trainable_parameters(self, model, adapter_name) -> list[nn.Parameter]:
        return [layer.lora_B[adapter_name].weight for layer in tuner_layers(model, adapter_name)]

    def _inject_loaded(self, config, model, adapter_name, state, file) -> None:
        config._difforge_kind = KIND
        super()._inject_loaded(config, model, adapter_name, state, file)
        model.peft_config[adapter_name]._difforge_kind = KIND
        for layer in tuner_layers(model, adapter_name):
            layer.lora_A[adapter_name].weight.requires_grad_(False)
