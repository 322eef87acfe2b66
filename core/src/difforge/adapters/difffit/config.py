"""Options of the DiffFit adapter."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: the last layer of each residual branch of diffusers UNets / DiTs: attention output
#: projections, feed-forward outputs, resnet second convolutions, transformer proj_out
DEFAULT_SCALE_TARGETS = ["to_out.0", "ff.net.2", "conv2", "proj_out"]


class DiffFitOptions(BaseModel):
    """``blocks``: module-name prefixes to adapt ("" = the whole model); in them every bias is
    trained, plus norm weights (``train_norms``) and embedding tables (``train_embeddings``);
    a scale factor gamma (one per channel, initialised to 1) is added after each module named
    by ``scale_targets``."""

    model_config = ConfigDict(extra="forbid")

    blocks: list[str] = Field(default_factory=lambda: [""])
    scale_targets: list[str] = Field(default_factory=lambda: list(DEFAULT_SCALE_TARGETS))
    train_norms: bool = True
    train_embeddings: bool = True
