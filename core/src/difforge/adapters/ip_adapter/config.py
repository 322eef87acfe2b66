"""Options of the IP-Adapter."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class IpAdapterOptions(BaseModel):
    """``image_embed_dim``: width of the image encoder's embedding (the zoo's tiny CLIP: 64);
    ``num_tokens``: image tokens the projection makes; ``target_modules``: the cross-attention
    layers that get image key/values (diffusers names them ``attn2``)."""

    model_config = ConfigDict(extra="forbid")

    image_embed_dim: int = Field(64, ge=1)
    num_tokens: int = Field(4, ge=1)
    target_modules: list[str] = Field(default_factory=lambda: ["attn2"])
