"""Options of the OFT adapter."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..lora.config import DEFAULT_TARGET_MODULES


class OftOptions(BaseModel):
    """``W R`` with ``R`` block-diagonal orthogonal (Cayley parametrisation), blocks of
    ``block_size`` (must divide each target's input width); ``coft`` constrains ``R`` near I."""

    model_config = ConfigDict(extra="forbid")

    block_size: int = Field(8, ge=1)
    coft: bool = False
    eps: float = Field(6e-5, gt=0)
    block_share: bool = False
    module_dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))

    def to_peft(self):
        """The equivalent ``peft.OFTConfig``."""
        from peft import OFTConfig

        return OFTConfig(r=0, oft_block_size=self.block_size, coft=self.coft, eps=self.eps,
                         block_share=self.block_share, module_dropout=self.module_dropout,
                         target_modules=list(self.target_modules))
