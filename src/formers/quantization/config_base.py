"""What every quantization config shares with transformers 4.45's `QuantizationConfigMixin`: building from a
config.json's `quantization_config` dict, writing it back (dict, JSON string, JSON file), `update`, `dict(config)`.

A config keeps its settings as public attributes, so `to_dict()` is a copy of them; subclasses whose 4.45
dict differs (bitsandbytes' dtype names, HQQ's parameter groups) override `to_dict`. `quant_method` is the
string 4.45 writes ("bitsandbytes", "gptq", ...): 4.45 keeps a str enum, which compares and serialises the same.
"""
from __future__ import annotations

import copy
import json
import os
from typing import Any, Iterator


class QuantizationConfigMixin:
    """Base of the quantization configs (4.45's name and methods)."""

    quant_method: str = ""

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], return_unused_kwargs: bool = False, **kwargs: Any) -> Any:
        """The config a dict describes; `kwargs` naming an attribute override it, the rest come back when
        `return_unused_kwargs` is set."""
        return cls(**config_dict).with_overrides(return_unused_kwargs, **kwargs)

    def with_overrides(self, return_unused_kwargs: bool = False, **kwargs: Any) -> Any:
        """`from_dict`'s last step: the attributes `kwargs` name set; the config (and the other entries)."""
        unused = self.update(**kwargs)
        return (self, unused) if return_unused_kwargs else self

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.__dict__)

    def to_diff_dict(self) -> dict[str, Any]:
        """The settings that differ from the class's defaults (all of them where the class needs arguments)."""
        try:
            defaults = type(self)().to_dict()
        except TypeError:  # a required argument (GPTQConfig's bits, TorchAoConfig's quant_type)
            return self.to_dict()
        return {key: value for key, value in self.to_dict().items() if defaults.get(key, object()) != value}

    def to_json_string(self, use_diff: bool = True) -> str:
        data = self.to_diff_dict() if use_diff else self.to_dict()
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike) -> None:
        with open(json_file_path, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    def update(self, **kwargs: Any) -> dict[str, Any]:
        """Set the attributes `kwargs` name; returns the entries that name none."""
        for key in [key for key in kwargs if hasattr(self, key)]:
            setattr(self, key, kwargs[key])
        return {key: value for key, value in kwargs.items() if not hasattr(self, key)}

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        yield from copy.deepcopy(self.__dict__).items()

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"
