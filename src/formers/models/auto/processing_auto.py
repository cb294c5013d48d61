"""AutoProcessor: the processor of a checkpoint (its class named by preprocessor/tokenizer config or model_type).

A checkpoint with no processor class gets its tokenizer, or else its feature extractor, as transformers does.
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

from ...loading.hub import resolve_file

# processor class / model_type -> module under formers.models holding the processor class
PROCESSORS: dict[str, tuple[str, str]] = {
    "WhisperProcessor": ("whisper", "WhisperProcessor"),
    "whisper": ("whisper", "WhisperProcessor"),
    "Qwen2AudioProcessor": ("qwen2_audio", "Qwen2AudioProcessor"),
    "qwen2_audio": ("qwen2_audio", "Qwen2AudioProcessor"),
}
_CONFIG_FILES = ("preprocessor_config.json", "tokenizer_config.json", "config.json")


def _read(path_or_repo_id, filename: str, hub: dict[str, Any]) -> dict[str, Any]:
    path = resolve_file(path_or_repo_id, filename, required=False, **hub)
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


class AutoProcessor:
    def __init__(self) -> None:
        raise OSError("AutoProcessor is built with AutoProcessor.from_pretrained(...)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        hub = {k: kwargs[k] for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
        configs = [_read(pretrained_model_name_or_path, name, hub) for name in _CONFIG_FILES]
        names = [c.get("processor_class") for c in configs] + [configs[2].get("model_type")]
        for name in names:
            if name in PROCESSORS:
                module, cls_name = PROCESSORS[name]
                processor = getattr(importlib.import_module(f"formers.models.{module}"), cls_name)
                return processor.from_pretrained(pretrained_model_name_or_path, **kwargs)
        if configs[1] or resolve_file(pretrained_model_name_or_path, "tokenizer.json", required=False, **hub):
            from .tokenization_auto import AutoTokenizer
            return AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)
        from .feature_extraction_auto import AutoFeatureExtractor
        return AutoFeatureExtractor.from_pretrained(pretrained_model_name_or_path, **kwargs)
