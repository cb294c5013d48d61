"""AutoConfig: read config.json and build the family config its `model_type` names."""
from __future__ import annotations

import os
from typing import Any

from ...configuration_utils import CONFIG_NAME, PretrainedConfig, read_json, refuse_remote_code
from ...errors import ConfigError
from ...loading.hub import resolve_file
from ..registry import family


class AutoConfig:
    def __init__(self) -> None:
        raise EnvironmentError("AutoConfig is built with AutoConfig.from_pretrained() or AutoConfig.for_model()")

    @staticmethod
    def for_model(model_type: str, *args: Any, **kwargs: Any) -> PretrainedConfig:
        return family(model_type).CONFIG_CLASS(*args, **kwargs)

    @staticmethod
    def from_pretrained(pretrained_model_name_or_path: str | os.PathLike, *, revision: str | None = None,
                        cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                        token: str | bool | None = None, trust_remote_code: bool = False,
                        **kwargs: Any) -> PretrainedConfig:
        refuse_remote_code(trust_remote_code)
        if kwargs.get("gguf_file") is not None:  # the config is the GGUF file's metadata
            from ...gguf import gguf_config, open_gguf
            gguf = open_gguf(pretrained_model_name_or_path, kwargs.pop("gguf_file"), revision=revision,
                             cache_dir=cache_dir, local_files_only=local_files_only, token=token)
            return gguf_config(gguf, **kwargs)
        path = resolve_file(pretrained_model_name_or_path, CONFIG_NAME, revision=revision, cache_dir=cache_dir,
                            local_files_only=local_files_only, token=token)
        data = read_json(path)
        if "model_type" not in data:
            raise ConfigError(f"{path}: field 'model_type' is missing; expected e.g. 'llama'")
        data.setdefault("_name_or_path", str(pretrained_model_name_or_path))
        config_class = family(data["model_type"]).CONFIG_CLASS
        try:
            return config_class.from_dict(data, **kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
