"""Options of a LoRA adapter."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: attention projections of diffusers UNets and transformers, the usual LoRA targets
DEFAULT_TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
#: attention projections of a CLIP text encoder (diffusers' text-encoder LoRA targets)
TEXT_ENCODER_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "out_proj"]


class LoraOptions(BaseModel):
    """``rank``/``alpha`` set the update ``(alpha / rank) * B A``; ``target_modules`` are module
    names (or suffixes) to adapt; ``use_dora`` turns on DoRA's magnitude/direction split."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(4, ge=1)
    alpha: float | None = Field(None, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))
    init: str = "gaussian"
    use_dora: bool = False

    def to_peft(self):
        """The equivalent ``peft.LoraConfig``."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha if self.alpha is not None else self.rank,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            init_lora_weights=self.init if self.init != "default" else True,
            use_dora=self.use_dora,
        )


class DoraOptions(LoraOptions):
    """LoRA options; DoRA always splits magnitude and direction."""

    use_dora: bool = True

    def to_peft(self):
        """The equivalent ``peft.LoraConfig`` with ``use_dora=True``."""
        config = super().to_peft()
        config.use_dora = True
        return config
