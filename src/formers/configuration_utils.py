"""PretrainedConfig: declared fields with transformers' names and defaults, json round-trip.

A family config declares its fields as annotated class attributes (``hidden_size: int = 4096``).
Values are type-checked on construction; unknown keys are kept as attributes (as transformers
does) and written back on save; `attribute_map` aliases old names onto declared ones.
"""
from __future__ import annotations

import copy
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

import torch

from .errors import ConfigError, UnsafeCheckpointError
from .loading.hub import resolve_file
from .loading.save import atomic_write_text

CONFIG_NAME = "config.json"
FORMERS_VERSION = "0.1.0"


def _type_name(expected: Any) -> str:
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(expected))
    if expected is type(None):
        return "null"
    return getattr(expected, "__name__", str(expected))


def _matches(value: Any, expected: Any) -> bool:
    origin = typing.get_origin(expected)
    if expected is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(expected) or (Any,)
        return isinstance(value, (list, tuple)) and all(_matches(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, origin or expected)


def check_field(owner: str, name: str, value: Any, expected: Any) -> None:
    """Raise ConfigError naming `owner`'s field `name` when `value` is not of the `expected` type."""
    if not _matches(value, expected):
        raise ConfigError(
            f"{owner} field {name!r}: expected {_type_name(expected)}, got {type(value).__name__} ({value!r})"
        )


class PretrainedConfig:
    """Base of every model config; subclasses declare fields as annotated class attributes."""

    model_type: ClassVar[str] = ""
    attribute_map: ClassVar[dict[str, str]] = {}
    _fields: ClassVar[dict[str, Any]] = {}

    # Fields every transformers config carries.
    return_dict: bool = True
    output_hidden_states: bool = False
    output_attentions: bool = False
    torch_dtype: Any = None
    tie_word_embeddings: bool = True
    is_encoder_decoder: bool = False
    is_decoder: bool = False
    architectures: list[str] | None = None
    bos_token_id: int | list[int] | None = None
    pad_token_id: int | list[int] | None = None
    eos_token_id: int | list[int] | None = None
    sep_token_id: int | None = None
    decoder_start_token_id: int | None = None
    tokenizer_class: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._fields = _declared_fields(cls)

    def __init__(self, **kwargs: Any) -> None:
        owner = f"{type(self).__name__}"
        kwargs = {self.attribute_map.get(k, k): v for k, v in kwargs.items()}
        kwargs.pop("model_type", None)
        kwargs.pop("transformers_version", None)
        kwargs.pop("formers_version", None)
        attn_implementation = kwargs.pop("attn_implementation", kwargs.pop("_attn_implementation", None))
        name_or_path = kwargs.pop("_name_or_path", kwargs.pop("name_or_path", ""))
        for name, expected in self._fields.items():
            value = kwargs.pop(name) if name in kwargs else copy.deepcopy(getattr(type(self), name))
            if name == "torch_dtype":
                value = _parse_dtype(owner, value)
            else:
                check_field(owner, name, value, expected)
            object.__setattr__(self, name, value)
        for name, value in kwargs.items():  # unknown keys are kept, as transformers does
            object.__setattr__(self, name, value)
        self._attn_implementation = attn_implementation
        self._name_or_path = str(name_or_path)
        self.__post_init__()

    def __post_init__(self) -> None:
        """Hook for families: compute derived values and validate cross-field constraints."""

    # --- attribute aliases -------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        mapped = type(self).attribute_map.get(name)
        if mapped is not None:
            return getattr(self, mapped)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, type(self).attribute_map.get(name, name), value)

    # --- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field and kept unknown key, json-ready (torch dtypes as strings)."""
        out = {k: copy.deepcopy(v) for k, v in vars(self).items() if not k.startswith("_")}
        if hasattr(out.get("quantization_config"), "to_dict"):  # a quantization config object, as 4.45 keeps it
            out["quantization_config"] = out["quantization_config"].to_dict()
        if isinstance(out.get("torch_dtype"), torch.dtype):
            out["torch_dtype"] = str(out["torch_dtype"]).removeprefix("torch.")
        out["model_type"] = self.model_type
        return out

    def to_diff_dict(self) -> dict[str, Any]:
        """What config.json holds: family fields, base fields that differ from their defaults, extras."""
        base_defaults = {name: getattr(PretrainedConfig, name) for name in PretrainedConfig._fields}
        return {k: v for k, v in self.to_dict().items()
                if k not in base_defaults or v != base_defaults[k] or k == "tie_word_embeddings"}

    def to_json_string(self, use_diff: bool = True) -> str:
        data = self.to_diff_dict() if use_diff else self.to_dict()
        data["formers_version"] = FORMERS_VERSION
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike, use_diff: bool = True) -> None:
        atomic_write_text(json_file_path, self.to_json_string(use_diff=use_diff))

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        if os.path.isfile(save_directory):
            raise ConfigError(f"save_directory {str(save_directory)!r} is a file; expected a directory")
        self.to_json_file(Path(save_directory) / CONFIG_NAME)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any):
        return_unused_kwargs = kwargs.pop("return_unused_kwargs", False)
        config = cls(**config_dict)
        unused = {}
        for key, value in kwargs.items():
            if key in cls._fields or key in cls.attribute_map or hasattr(config, key):
                setattr(config, key, value)
            elif key in ("attn_implementation",):
                config._attn_implementation = value
            else:
                unused[key] = value
        return (config, unused) if return_unused_kwargs else config

    @classmethod
    def from_json_file(cls, json_file: str | os.PathLike):
        return cls(**read_json(json_file))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *, revision: str | None = None,
                        cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                        token: str | bool | None = None, trust_remote_code: bool = False, **kwargs: Any):
        refuse_remote_code(trust_remote_code)
        path = resolve_file(pretrained_model_name_or_path, CONFIG_NAME, revision=revision, cache_dir=cache_dir,
                            local_files_only=local_files_only, token=token)
        data = read_json(path)
        if cls.model_type and data.get("model_type", cls.model_type) != cls.model_type:
            raise ConfigError(f"{path}: field 'model_type' is {data.get('model_type')!r}; "
                              f"{cls.__name__} expects {cls.model_type!r}")
        data.setdefault("_name_or_path", str(pretrained_model_name_or_path))
        try:
            return cls.from_dict(data, **kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def update(self, config_dict: dict[str, Any]) -> None:
        for key, value in config_dict.items():
            setattr(self, key, value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PretrainedConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string(use_diff=False)}"

    @property
    def name_or_path(self) -> str:
        return self._name_or_path

    @property
    def use_return_dict(self) -> bool:
        return self.return_dict


def _declared_fields(cls: type) -> dict[str, Any]:
    """Annotated fields along the MRO; re-annotating an inherited field as ClassVar un-declares it (a
    family whose transformers config lacks a field its parent family has, as Gemma2 lacks `hidden_act`)."""
    fields: dict[str, Any] = {}
    for klass in reversed(cls.__mro__[:-1]):  # object declares nothing
        hints = typing.get_type_hints(klass)
        for name in vars(klass).get("__annotations__", {}):
            if typing.get_origin(hints[name]) is ClassVar:
                fields.pop(name, None)
            else:
                fields[name] = hints[name]
    return fields


PretrainedConfig._fields = _declared_fields(PretrainedConfig)


def _parse_dtype(owner: str, value: Any) -> torch.dtype | None:
    if value is None or isinstance(value, torch.dtype):
        return value
    if isinstance(value, str) and isinstance(getattr(torch, value, None), torch.dtype):
        return getattr(torch, value)
    raise ConfigError(f"{owner} field 'torch_dtype': expected a torch dtype name such as 'float32', got {value!r}")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a json object file; errors name the file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    return data


def refuse_remote_code(trust_remote_code: bool) -> None:
    if trust_remote_code:
        raise UnsafeCheckpointError(
            "trust_remote_code=True is not supported: formers never executes code shipped with a checkpoint; "
            "use a model_type that formers implements"
        )
