"""`GenerationConfig` (the fields, defaults and json format of transformers 4.45) and `GenerationMode`."""
from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
from enum import Enum
from pathlib import Path
from typing import Any

from ..errors import ConfigError, GenerationError
from ..loading.hub import resolve_file
from .config_checks import EXTRA_OUTPUT_FLAGS, check_field_types, check_values

GENERATION_CONFIG_NAME = "generation_config.json"
# The transformers release whose API and file format we reproduce; written as `transformers_version`.
COMPAT_TRANSFORMERS_VERSION = "4.45.2"
METADATA_FIELDS = ("_from_model_config", "_commit_hash", "_original_object_hash", "transformers_version")


class GenerationMode(str, Enum):
    """The decoding strategy a GenerationConfig selects (values are transformers' strings)."""

    CONTRASTIVE_SEARCH = "contrastive_search"
    GREEDY_SEARCH = "greedy_search"
    SAMPLE = "sample"
    ASSISTED_GENERATION = "assisted_generation"
    DOLA_GENERATION = "dola_generation"
    BEAM_SEARCH = "beam_search"
    BEAM_SAMPLE = "beam_sample"
    CONSTRAINED_BEAM_SEARCH = "constrained_beam_search"
    GROUP_BEAM_SEARCH = "group_beam_search"


# Every field, in transformers' order, with its default. Mutable defaults are deep-copied per instance.
FIELD_DEFAULTS: dict[str, Any] = {
    # length
    "max_length": 20, "max_new_tokens": None, "min_length": 0, "min_new_tokens": None, "early_stopping": False,
    "max_time": None, "stop_strings": None,
    # strategy
    "do_sample": False, "num_beams": 1, "num_beam_groups": 1, "penalty_alpha": None, "dola_layers": None,
    # cache
    "use_cache": True, "cache_implementation": None, "cache_config": None, "return_legacy_cache": None,
    # logits manipulation
    "temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": None, "typical_p": 1.0, "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0, "diversity_penalty": 0.0, "repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0,
    "length_penalty": 1.0, "no_repeat_ngram_size": 0, "bad_words_ids": None, "force_words_ids": None,
    "renormalize_logits": False, "constraints": None, "forced_bos_token_id": None, "forced_eos_token_id": None,
    "remove_invalid_values": False, "exponential_decay_length_penalty": None, "suppress_tokens": None,
    "begin_suppress_tokens": None, "forced_decoder_ids": None, "sequence_bias": None, "token_healing": False,
    "guidance_scale": None, "low_memory": None, "watermarking_config": None,
    # outputs
    "num_return_sequences": 1, "output_attentions": False, "output_hidden_states": False, "output_scores": False,
    "output_logits": None, "return_dict_in_generate": False,
    # special tokens
    "pad_token_id": None, "bos_token_id": None, "eos_token_id": None,
    # encoder-decoder
    "encoder_no_repeat_ngram_size": 0, "decoder_start_token_id": None,
    # assisted generation
    "is_assistant": False, "num_assistant_tokens": 20, "num_assistant_tokens_schedule": "constant",
    "assistant_confidence_threshold": 0.4, "prompt_lookup_num_tokens": None, "max_matching_ngram_size": None,
    # wild card
    "generation_kwargs": {},
    # metadata
    "_from_model_config": False, "_commit_hash": None, "transformers_version": COMPAT_TRANSFORMERS_VERSION,
}
# Set to its default in __init__ but, as in transformers, only overridable through the "extra kwargs" path.
_NOT_CONSTRUCTOR_ARGS = ("is_assistant",)


class WatermarkingConfig:
    """Arguments of watermark generation (https://arxiv.org/abs/2306.04634), held by `GenerationConfig`."""

    def __init__(self, greenlist_ratio: float = 0.25, bias: float = 2.0, hashing_key: int = 15485863,
                 seeding_scheme: str = "lefthash", context_width: int = 1):
        self.greenlist_ratio = greenlist_ratio
        self.bias = bias
        self.hashing_key = hashing_key
        self.seeding_scheme = seeding_scheme
        self.context_width = context_width

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> "WatermarkingConfig":
        config = cls(**config_dict)
        config.update(**kwargs)
        return config

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.__dict__)

    def to_json_string(self) -> str:
        return json.dumps(self.__dict__, indent=2) + "\n"

    def update(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            if hasattr(self, key):
                setattr(self, key, value)

    def validate(self) -> None:
        if self.seeding_scheme not in ("selfhash", "lefthash"):
            raise ConfigError(f"`watermarking_config.seeding_scheme` must be 'selfhash' or 'lefthash', got "
                              f"{self.seeding_scheme!r}")
        if not 0.0 <= self.greenlist_ratio <= 1.0:
            raise ConfigError(f"`watermarking_config.greenlist_ratio` must be in [0, 1], got {self.greenlist_ratio}")
        if not self.context_width >= 1:
            raise ConfigError(f"`watermarking_config.context_width` must be a positive integer, got "
                              f"{self.context_width}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WatermarkingConfig) and self.__dict__ == other.__dict__

    def __repr__(self) -> str:
        return f"{self.__class__.__name__} {self.to_json_string()}"


def _json_ready(obj: Any) -> Any:
    """Turn config objects into json types: dict keys to str, nested configs to dicts, dtypes to names."""
    if isinstance(obj, dict):
        out = {str(k): _json_ready(v) for k, v in obj.items()}
        if out.get("torch_dtype") is not None and not isinstance(out["torch_dtype"], str):
            out["torch_dtype"] = str(out["torch_dtype"]).split(".")[-1]
        return out
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if hasattr(obj, "to_dict") and not isinstance(obj, type):
        return _json_ready(obj.to_dict())
    return obj


class GenerationConfig:
    """Parameters of `generate()`; fields, defaults, validation and json files match transformers 4.45."""

    extra_output_flags = EXTRA_OUTPUT_FLAGS

    def __init__(self, **kwargs: Any):
        for name, default in FIELD_DEFAULTS.items():
            if name in _NOT_CONSTRUCTOR_ARGS:
                value = default
            else:
                value = kwargs.pop(name) if name in kwargs else copy.deepcopy(default)
            setattr(self, name, value)
        if isinstance(self.watermarking_config, dict):
            self.watermarking_config = WatermarkingConfig.from_dict(self.watermarking_config)
        # Unknown keys become attributes, except when built from a model config (which holds unrelated fields).
        if not self._from_model_config:
            for key, value in kwargs.items():
                setattr(self, key, value)
        self.validate(is_init=True)

    # -- comparison / display -------------------------------------------------------------------------
    def __hash__(self) -> int:
        return hash(self.to_json_string(ignore_metadata=True))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GenerationConfig):
            return False
        return (self.to_json_string(use_diff=False, ignore_metadata=True)
                == other.to_json_string(use_diff=False, ignore_metadata=True))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__} {self.to_json_string(ignore_metadata=True)}"

    # -- semantics ------------------------------------------------------------------------------------
    def get_generation_mode(self, assistant_model: Any = None) -> GenerationMode:
        """The decoding strategy these parameters select (assisted/DoLa extend greedy and sample only)."""
        if self.constraints is not None or self.force_words_ids is not None:
            mode = GenerationMode.CONSTRAINED_BEAM_SEARCH
        elif self.num_beams == 1:
            if self.do_sample is False:
                contrastive = (self.top_k is not None and self.top_k > 1
                               and self.penalty_alpha is not None and self.penalty_alpha > 0)
                mode = GenerationMode.CONTRASTIVE_SEARCH if contrastive else GenerationMode.GREEDY_SEARCH
            else:
                mode = GenerationMode.SAMPLE
        elif self.num_beam_groups > 1:
            mode = GenerationMode.GROUP_BEAM_SEARCH
        elif self.do_sample is True:
            mode = GenerationMode.BEAM_SAMPLE
        else:
            mode = GenerationMode.BEAM_SEARCH
        simple = (GenerationMode.GREEDY_SEARCH, GenerationMode.SAMPLE)
        if assistant_model is not None or self.prompt_lookup_num_tokens is not None:
            if mode not in simple:
                raise GenerationError(f"assisted generation (`assistant_model` / `prompt_lookup_num_tokens`) "
                                      f"supports greedy search and sampling only, not {mode.value}")
            mode = GenerationMode.ASSISTED_GENERATION
        if self.dola_layers is not None:
            if mode not in simple:
                raise GenerationError(f"DoLa decoding (`dola_layers`) supports greedy search and sampling only, "
                                      f"not {mode.value}")
            mode = GenerationMode.DOLA_GENERATION
        return mode

    def validate(self, is_init: bool = False) -> None:
        """Raise ConfigError for invalid fields or combinations; warn (UserWarning) for ignored flags."""
        check_field_types(self)
        check_values(self, is_init=is_init)

    def update(self, **kwargs: Any) -> dict[str, Any]:
        """Set the attributes that exist, validate, and return the kwargs that were not used."""
        used = [key for key in kwargs if hasattr(self, key)]
        for key in used:
            setattr(self, key, kwargs[key])
        self.validate()
        return {key: value for key, value in kwargs.items() if key not in used}

    # -- dict / json ----------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any):
        """Build from a dict; kwargs override it. With `return_unused_kwargs=True` returns (config, unused)."""
        return_unused_kwargs = kwargs.pop("return_unused_kwargs", False)
        kwargs.pop("_from_auto", None)
        kwargs.pop("_from_pipeline", None)
        if "_commit_hash" in kwargs and "_commit_hash" in config_dict:
            kwargs["_commit_hash"] = config_dict["_commit_hash"]
        config = cls(**{**config_dict, **kwargs})
        unused = config.update(**kwargs)
        return (config, unused) if return_unused_kwargs else config

    def to_dict(self) -> dict[str, Any]:
        """All attributes (metadata included, `_commit_hash` excluded) as a dict."""
        out = copy.deepcopy(self.__dict__)
        out.pop("_commit_hash", None)
        out.pop("_original_object_hash", None)
        out["transformers_version"] = COMPAT_TRANSFORMERS_VERSION
        if isinstance(out.get("watermarking_config"), WatermarkingConfig):
            out["watermarking_config"] = out["watermarking_config"].to_dict()
        return out

    def to_diff_dict(self) -> dict[str, Any]:
        """Only the attributes that differ from `GenerationConfig()` (plus `transformers_version`)."""
        defaults = _default_dict()
        return {key: value for key, value in self.to_dict().items()
                if key not in defaults or key == "transformers_version" or value != defaults[key]}

    def to_json_string(self, use_diff: bool = True, ignore_metadata: bool = False) -> str:
        """Serialize to indented, key-sorted JSON (only non-default fields when `use_diff`)."""
        config_dict = self.to_diff_dict() if use_diff else self.to_dict()
        if ignore_metadata:
            for field in METADATA_FIELDS:
                config_dict.pop(field, None)
        return json.dumps(_json_ready(config_dict), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike, use_diff: bool = True) -> None:
        """Write `to_json_string(use_diff)` to `json_file_path` atomically (temp file + rename)."""
        _atomic_write(Path(json_file_path), self.to_json_string(use_diff=use_diff))

    # -- files ----------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, config_file_name: str | os.PathLike | None = None,
                        push_to_hub: bool = False, **kwargs: Any) -> None:
        """Validate (refusing on any warning or error, as transformers does) and write the json file."""
        if push_to_hub:
            raise ConfigError("`push_to_hub=True` is not supported by formers' GenerationConfig.save_pretrained")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self.validate()
            if caught:
                raise ConfigError(str([str(w.message) for w in caught]))
        except ValueError as exc:
            raise ConfigError("the generation config is invalid (validate() raised or warned); fix it before "
                              f"saving.\n\nThrown during validation:\n{exc}") from exc
        directory = Path(save_directory)
        if directory.is_file():
            raise ConfigError(f"`save_directory` ({str(directory)!r}) must be a directory, not a file")
        directory.mkdir(parents=True, exist_ok=True)
        self.to_json_file(directory / (config_file_name or GENERATION_CONFIG_NAME), use_diff=True)

    @classmethod
    def from_pretrained(cls, pretrained_model_name: str | os.PathLike,
                        config_file_name: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                        force_download: bool = False, local_files_only: bool = False, token: str | bool | None = None,
                        revision: str | None = None, **kwargs: Any):
        """Load `generation_config.json` (or `config_file_name`) from a folder or hub repo; kwargs override it."""
        filename = str(config_file_name or GENERATION_CONFIG_NAME)
        subfolder = kwargs.pop("subfolder", "")
        for ignored in ("resume_download", "proxies", "_from_pipeline", "_from_auto"):
            kwargs.pop(ignored, None)
        if kwargs.get("use_auth_token") is not None:
            token = kwargs.pop("use_auth_token")
        kwargs.pop("use_auth_token", None)
        commit_hash = kwargs.pop("_commit_hash", None)
        if subfolder:
            filename = f"{subfolder}/{filename}"
        path = resolve_file(pretrained_model_name, filename, revision=revision, cache_dir=cache_dir,
                            local_files_only=local_files_only, token=token)
        config_dict = _read_json(path)
        config_dict["_commit_hash"] = commit_hash
        loaded = cls.from_dict(config_dict, **kwargs)
        config = loaded[0] if isinstance(loaded, tuple) else loaded
        config._original_object_hash = hash(config)  # lets generate() tell whether the user modified it
        return loaded

    @classmethod
    def from_model_config(cls, model_config: Any) -> "GenerationConfig":
        """Build from a model config's generation-related attributes (bos/eos/pad/decoder_start ids, ...)."""
        config_dict = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(vars(model_config))
        config_dict.pop("_from_model_config", None)
        config_dict = {key: value for key, value in config_dict.items() if value is not None}
        config = cls.from_dict(config_dict, return_unused_kwargs=False, _from_model_config=True)
        # Some composite models keep generation attributes on the decoder: use them where still unset.
        decoder = model_config.get_text_config(decoder=True) if hasattr(model_config, "get_text_config") else None
        if decoder is not None and decoder is not model_config:
            defaults = _default_dict()
            decoder_dict = decoder.to_dict() if hasattr(decoder, "to_dict") else dict(vars(decoder))
            for attr in config.to_dict():
                if attr in decoder_dict and attr in defaults and getattr(config, attr) == defaults[attr]:
                    setattr(config, attr, decoder_dict[attr])
        if config.return_dict_in_generate is False and any(
                getattr(config, flag, False) for flag in EXTRA_OUTPUT_FLAGS):
            config.return_dict_in_generate = True
        config._original_object_hash = hash(config)
        return config


def _default_dict() -> dict[str, Any]:
    out = copy.deepcopy(FIELD_DEFAULTS)
    out.pop("_commit_hash")
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{str(path)!r} is not a valid JSON file: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{str(path)!r} must hold a JSON object, got {type(data).__name__}")
    return data


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
