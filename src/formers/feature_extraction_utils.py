"""Feature extractors' shared surface: `BatchFeature` and load/save of preprocessor_config.json.

A feature extractor is plain settings plus a __call__; its settings round-trip through
preprocessor_config.json with transformers' field names, so checkpoints move between the libraries.
"""
from __future__ import annotations

import json
import os
from collections import UserDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError
from .loading.hub import resolve_file

FEATURE_EXTRACTOR_NAME = "preprocessor_config.json"


class BatchFeature(UserDict):
    """A dict of model inputs (input_features, attention_mask, ...) with attribute access."""

    def __init__(self, data: dict[str, Any] | None = None, tensor_type: str | None = None):
        super().__init__(data or {})
        if tensor_type is not None:
            self.convert_to_tensors(tensor_type)

    def __getattr__(self, name: str) -> Any:
        if name != "data" and name in self.data:
            return self.data[name]
        raise AttributeError(name)

    def convert_to_tensors(self, tensor_type: str | None = None) -> BatchFeature:
        """Turn every value into a torch tensor ("pt") or numpy array ("np"), in place."""
        if tensor_type is None:
            return self
        if tensor_type not in ("pt", "np"):
            raise ConfigError(f"return_tensors={tensor_type!r}: formers returns 'pt' (torch) or 'np' (numpy)")
        for key, value in self.data.items():
            array = value if isinstance(value, torch.Tensor) else np.asarray(value)
            if tensor_type == "pt" and not isinstance(array, torch.Tensor):
                array = torch.from_numpy(np.ascontiguousarray(array))
            elif tensor_type == "np" and isinstance(array, torch.Tensor):
                array = array.numpy()
            self.data[key] = array
        return self

    def to(self, *args: Any, **kwargs: Any) -> BatchFeature:
        """Move tensors to a device; a dtype argument casts only floating-point tensors (as transformers)."""
        def move(value: Any) -> Any:
            if not isinstance(value, torch.Tensor):
                return value
            if value.is_floating_point():
                return value.to(*args, **kwargs)
            device = kwargs.get("device", next((a for a in args if not isinstance(a, torch.dtype)), None))
            return value.to(device=device) if device is not None else value
        self.data = {key: move(value) for key, value in self.data.items()}
        return self


class FeatureExtractionMixin:
    """from_pretrained / save_pretrained / to_dict for a feature extractor's settings."""

    # settings computed from others, written to the json for transformers but not read back
    derived_fields: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        settings = {key: value for key, value in vars(self).items() if not key.startswith("_")}
        settings["feature_extractor_type"] = type(self).__name__
        return settings

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> list[str]:
        folder = Path(save_directory)
        if folder.is_file():
            raise ConfigError(f"save_pretrained({str(folder)!r}): expected a folder, got a file")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / FEATURE_EXTRACTOR_NAME
        target.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return [str(target)]

    @classmethod
    def from_dict(cls, settings: dict[str, Any], **overrides: Any):
        settings = {k: v for k, v in {**settings, **overrides}.items()
                    if k not in cls.derived_fields and k not in ("feature_extractor_type", "processor_class")}
        return cls(**settings)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        hub = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
        path = resolve_file(pretrained_model_name_or_path, FEATURE_EXTRACTOR_NAME, **hub)
        try:
            settings = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}: not valid JSON ({error})") from None
        return cls.from_dict(settings, **kwargs)
