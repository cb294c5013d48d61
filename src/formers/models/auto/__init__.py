from .configuration_auto import AutoConfig
from .modeling_auto import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSpeechSeq2Seq

__all__ = ["AutoConfig", "AutoModel", "AutoModelForCausalLM", "AutoModelForSeq2SeqLM", "AutoModelForSpeechSeq2Seq",
           "AutoTokenizer"]


def __getattr__(name: str):
    if name == "AutoTokenizer":
        from .tokenization_auto import AutoTokenizer
        return AutoTokenizer
    raise AttributeError(name)
