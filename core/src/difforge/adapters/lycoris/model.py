"""LoHa and LoKr adapter types (PEFT tuners behind the difforge adapter protocol)."""

from __future__ import annotations

from ..peft_tuner import PeftAdapter
from .config import LohaOptions, LokrOptions


class LohaAdapter(PeftAdapter):
    """LoHa (Hyeon-Woo et al. 2022, FedPara; LyCORIS)."""

    name = "loha"
    options_model = LohaOptions
    peft_type = "LOHA"


class LokrAdapter(PeftAdapter):
    """LoKr (LyCORIS; Kronecker-product low-rank update)."""

    name = "lokr"
    options_model = LokrOptions
    peft_type = "LOKR"
