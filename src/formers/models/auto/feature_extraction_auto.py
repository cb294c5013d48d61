"""AutoFeatureExtractor: pick the class named by preprocessor_config.json and load it."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...feature_extraction_utils import FEATURE_EXTRACTOR_NAME
from ...loading.hub import resolve_file

# feature_extractor_type (or config.json model_type) -> (module under formers.models, class name)
FEATURE_EXTRACTORS: dict[str, tuple[str, str]] = {
    "WhisperFeatureExtractor": ("whisper", "WhisperFeatureExtractor"),
    "whisper": ("whisper", "WhisperFeatureExtractor"),
}


def feature_extractor_class(name: str):
    """The formers class for a feature_extractor_type / model_type name."""
    import importlib

    if name not in FEATURE_EXTRACTORS:
        raise ConfigError(f"feature_extractor_type {name!r} is not implemented in formers; known: "
                          f"{', '.join(sorted(k for k in FEATURE_EXTRACTORS if k[0].isupper()))}")
    module, cls = FEATURE_EXTRACTORS[name]
    return getattr(importlib.import_module(f"formers.models.{module}"), cls)


class AutoFeatureExtractor:
    def __init__(self) -> None:
        raise OSError("AutoFeatureExtractor is built with AutoFeatureExtractor.from_pretrained(...)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        hub = {k: kwargs[k] for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
        path = resolve_file(pretrained_model_name_or_path, FEATURE_EXTRACTOR_NAME, **hub)
        settings = json.loads(Path(path).read_text(encoding="utf-8"))
        name = settings.get("feature_extractor_type")
        if name is None:
            config = resolve_file(pretrained_model_name_or_path, "config.json", required=False, **hub)
            name = json.loads(Path(config).read_text(encoding="utf-8")).get("model_type") if config else None
        if name is None:
            raise ConfigError(f"{path}: no `feature_extractor_type`, and no config.json `model_type` to infer it")
        return feature_extractor_class(name).from_pretrained(pretrained_model_name_or_path, **kwargs)
