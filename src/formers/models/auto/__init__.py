from .configuration_auto import AutoConfig
from .modeling_auto import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM

__all__ = ["AutoConfig", "AutoModel", "AutoModelForCausalLM", "AutoModelForSeq2SeqLM", "AutoTokenizer"]


def __getattr__(name: str):
    if name == "AutoTokenizer":
        from .tokenization_auto import AutoTokenizer
        return AutoTokenizer
    raise AttributeError(name)
