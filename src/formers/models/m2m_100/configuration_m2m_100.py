"""M2M100Config (also NLLB's): BART's fields with M2M100's defaults (transformers 4.45)."""
from ..bart.configuration_bart import BartStyleConfig


class M2M100Config(BartStyleConfig):
    model_type = "m2m_100"
    vocab_size: int = 128112
    attention_dropout: float = 0.1
    activation_function: str = "relu"
    encoder_layerdrop: float = 0.05
    decoder_layerdrop: float = 0.05
    scale_embedding: bool = True
