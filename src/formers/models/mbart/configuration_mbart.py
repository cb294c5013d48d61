"""MBartConfig: BART's fields with mBART's defaults (transformers 4.45)."""
from ..bart.configuration_bart import BartStyleConfig


class MBartConfig(BartStyleConfig):
    model_type = "mbart"
    classifier_dropout: float = 0.0
    forced_eos_token_id: int | None = 2
    decoder_start_token_id: int | None = None
