"""The IP-Adapter type: per cross-attention layer an image key/value pair (initialised from
the layer's text key/value, as in the paper), and one shared image projection (diffusers'
``ImageProjection``: linear to ``num_tokens`` tokens + LayerNorm).

Image prompts are the per-call input ``ip_adapter_image_embeds`` (the name diffusers' pipelines
use), passed in the ``extra`` mapping of :meth:`difforge.Backbone.predict` / ``sample``; the
unconditional half of a classifier-free-guidance batch gets a zero embedding, as in the
reference implementation. Without an image the layers compute exactly
the base model. It adds attention, so it cannot be merged into the weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layer_adapter import LayerAdapter, module_matches
from ..tuned_layer import Tuner, base_module_names
from .config import IpAdapterOptions

PROJECTIONS = "ip_adapter_projections"


class IpAttentionTuner(Tuner):
    """Image key/value projections for one diffusers ``Attention`` (cross-attention) layer."""

    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        self.to_k_ip = nn.Linear(attention.to_k.in_features, attention.to_k.out_features, bias=False)
        self.to_v_ip = nn.Linear(attention.to_v.in_features, attention.to_v.out_features, bias=False)
        with torch.no_grad():
            self.to_k_ip.weight.copy_(_weight(attention.to_k))
            self.to_v_ip.weight.copy_(_weight(attention.to_v))
        self.tokens: Tensor | None = None  # (B, T, cross_dim) image tokens, bound for one forward pass

    def edit_output_given(self, output, args, kwargs, module, scale):
        if self.tokens is None or scale == 0:
            return output
        hidden = args[0] if args else kwargs["hidden_states"]
        tokens = self.tokens
        if tokens.shape[0] != hidden.shape[0]:
            raise ValueError(f"ip-adapter: {tokens.shape[0]} image embeddings for a batch of {hidden.shape[0]}")
        heads = module.heads
        q = module.to_q(hidden)
        k, v = self.to_k_ip(tokens.to(q.dtype)), self.to_v_ip(tokens.to(q.dtype))
        split = lambda x: x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)  # noqa: E731
        attended = F.scaled_dot_product_attention(split(q), split(k), split(v))
        attended = attended.transpose(1, 2).reshape(hidden.shape[0], hidden.shape[1], -1)
        # to_out is affine: to_out(text + s * image) = to_out(text) + s * W_out image
        return output + scale * F.linear(attended, _weight(module.to_out[0])) / module.rescale_output_factor


def _weight(linear: nn.Module) -> Tensor:
    while hasattr(linear, "base_layer"):
        linear = linear.base_layer
    return linear.weight


class IpAdapter(LayerAdapter):
    """IP-Adapter: decoupled cross-attention for image prompts."""

    name = "ip-adapter"
    options_model = IpAdapterOptions
    tuner_types = (IpAttentionTuner,)
    mergeable = False
    #: CLIP image embeddings (N, image_embed_dim) prompting the batch
    input_names = frozenset({"ip_adapter_image_embeds"})

    def build_tuners(self, model, options: IpAdapterOptions):
        return {name: IpAttentionTuner(module) for name, module in base_module_names(model).items()
                if module_matches(name, options.target_modules) and hasattr(module, "to_k")
                and getattr(module, "is_cross_attention", True)}

    def inject(self, model, adapter_name, **options) -> None:
        from diffusers.models.embeddings import ImageProjection

        super().inject(model, adapter_name, **options)
        opts = self.options(model, adapter_name)
        tuner = next(iter(self._layers(model, adapter_name).values())).tuners[adapter_name]
        if not hasattr(model, PROJECTIONS):
            model.add_module(PROJECTIONS, nn.ModuleDict())
        getattr(model, PROJECTIONS)[adapter_name] = ImageProjection(
            image_embed_dim=opts.image_embed_dim, cross_attention_dim=tuner.to_k_ip.in_features,
            num_image_text_embeds=opts.num_tokens).to(next(model.parameters()).device)

    def projection(self, model: nn.Module, adapter_name: str) -> nn.Module:
        """The image projection of one adapter."""
        return getattr(model, PROJECTIONS)[adapter_name]

    def bind_inputs(self, model: nn.Module, adapter_name: str, inputs: Mapping[str, Any] | None) -> None:
        """Project ``ip_adapter_image_embeds`` (N, image_embed_dim) to the tokens this forward pass
        attends to; without them the layers compute the text-only base model."""
        image_embeds = (inputs or {}).get("ip_adapter_image_embeds")
        tokens = None
        if image_embeds is not None:
            expected = self.options(model, adapter_name).image_embed_dim
            if image_embeds.dim() != 2 or image_embeds.shape[1] != expected:
                raise ValueError(f"ip-adapter {adapter_name!r}: ip_adapter_image_embeds must be (N, {expected}), "
                                 f"got {tuple(image_embeds.shape)}")
            tokens = self.projection(model, adapter_name)(image_embeds)
        self.set_on_tuners(model, adapter_name, tokens=tokens)

    def null_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """A zero image embedding: the unconditional image prompt of the reference implementation."""
        return {"ip_adapter_image_embeds": torch.zeros_like(inputs["ip_adapter_image_embeds"])}

    def trainable_parameters(self, model, adapter_name):
        projection = self.projection(model, adapter_name)
        return super().trainable_parameters(model, adapter_name) + list(projection.parameters())

    def state_dict(self, model, adapter_name):
        state = super().state_dict(model, adapter_name)
        state.update({f"{PROJECTIONS}.{k}": v for k, v in self.projection(model, adapter_name).state_dict().items()})
        return state

    def load_state_dict(self, model, adapter_name, state):
        prefix = f"{PROJECTIONS}."
        self.projection(model, adapter_name).load_state_dict(
            {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        super().load_state_dict(model, adapter_name, {k: v for k, v in state.items() if not k.startswith(prefix)})
