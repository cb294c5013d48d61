"""MarianConfig: BART's fields with Marian's defaults (transformers 4.45); one shared vocabulary."""
from ...errors import ConfigError
from ..bart.configuration_bart import BartStyleConfig


class MarianConfig(BartStyleConfig):
    model_type = "marian"
    vocab_size: int = 58101
    decoder_vocab_size: int | None = None  # None: vocab_size
    share_encoder_decoder_embeddings: bool = True
    forced_eos_token_id: int | None = 0
    bos_token_id: int | list[int] | None = None
    pad_token_id: int | list[int] | None = 58100
    eos_token_id: int | list[int] | None = 0
    decoder_start_token_id: int | None = 58100

    def __post_init__(self) -> None:
        super().__post_init__()
        self.decoder_vocab_size = self.decoder_vocab_size or self.vocab_size
        if not self.share_encoder_decoder_embeddings:
            raise ConfigError("MarianConfig field 'share_encoder_decoder_embeddings': formers supports only True "
                              "(one vocabulary for source and target)")
