"""AutoModel / AutoModelForCausalLM / AutoModelForSeq2SeqLM: pick the family class from the config's model_type."""
from __future__ import annotations

import os
from typing import Any, ClassVar

from ...configuration_utils import PretrainedConfig, refuse_remote_code
from ..registry import model_class
from .configuration_auto import AutoConfig

_HUB_ARGS = ("revision", "cache_dir", "local_files_only", "token", "gguf_file")


class _AutoModel:
    task: ClassVar[str]

    def __init__(self) -> None:
        raise EnvironmentError(f"{type(self).__name__} is built with from_pretrained() or from_config()")

    @classmethod
    def from_config(cls, config: PretrainedConfig, **kwargs: Any):
        return model_class(config.model_type, cls.task).from_config(config, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any,
                        config: PretrainedConfig | None = None, trust_remote_code: bool = False, **kwargs: Any):
        refuse_remote_code(trust_remote_code)
        if config is None:
            hub = {k: kwargs[k] for k in _HUB_ARGS if k in kwargs}
            config = AutoConfig.from_pretrained(pretrained_model_name_or_path, **hub)
        target = model_class(config.model_type, cls.task)
        return target.from_pretrained(pretrained_model_name_or_path, *model_args, config=config, **kwargs)


class AutoModel(_AutoModel):
    task = "base"


class AutoModelForCausalLM(_AutoModel):
    task = "causal_lm"


class AutoModelForSeq2SeqLM(_AutoModel):
    task = "seq2seq_lm"


class AutoModelForSpeechSeq2Seq(_AutoModel):
    task = "speech_seq2seq"
