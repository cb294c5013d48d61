"""transformers 4.45's configs of quantization packages, with 4.45's arguments, defaults, checks and dicts.

`BitsAndBytesConfig` and `QuantoConfig` run through their packages when installed (bitsandbytes.py, quanto.py).
The others (GPTQ, AWQ, AQLM, EETQ, HQQ, FBGEMM FP8, compressed-tensors) are built, checked and written exactly as
4.45 writes them into a config.json, so 4.45 code constructs them and a checkpoint's config reads back; loading
a model with one raises a ConfigError naming the package (config.py `check_quantization_config`).

Where 4.45 checks something only a GPU or the package itself can answer (AWQ's "only available on GPU", the
package versions), formers does not check at construction: loading says what is missing.
"""
from __future__ import annotations

import copy
from typing import Any

import torch

from ..errors import ConfigError
from .config_base import QuantizationConfigMixin


class PackageConfig(QuantizationConfigMixin):
    """A config whose quantization a package (`package`, its import name) carries out."""

    package: str = ""


def _one_of(config: str, field: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{config} {field}: expected one of {list(allowed)}, got {value!r}")


def _of_type(config: str, field: str, value: Any, kind: type | tuple, expected: str) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{config} {field}: expected {expected}, got {value!r}")


BNB_STORAGE_DTYPES = ("float16", "float32", "int8", "uint8", "float64", "bfloat16")


def _bnb_dtype(value: Any, field: str, default: torch.dtype, names: tuple[str, ...] | None = None) -> torch.dtype:
    """None (the default), a torch dtype or its name -> the dtype (4.45's rules for bnb_4bit_*_dtype fields)."""
    if value is None:
        return default
    if isinstance(value, str) and (names is None or value in names) and isinstance(getattr(torch, value, None),
                                                                                     torch.dtype):
        return getattr(torch, value)
    if isinstance(value, torch.dtype):
        return value
    raise ConfigError(f"BitsAndBytesConfig {field}: expected a torch dtype or its name"
                      f"{f' (one of {list(names)})' if names else ''}, got {value!r}")


class BitsAndBytesConfig(PackageConfig):
    """transformers 4.45's bitsandbytes settings: `load_in_8bit=True` (LLM.int8) or `load_in_4bit=True` (fp4/nf4)."""

    quant_method, package = "bitsandbytes", "bitsandbytes"

    def __init__(self, load_in_8bit: bool = False, load_in_4bit: bool = False, llm_int8_threshold: float = 6.0,
                 llm_int8_skip_modules: list[str] | None = None, llm_int8_enable_fp32_cpu_offload: bool = False,
                 llm_int8_has_fp16_weight: bool = False, bnb_4bit_compute_dtype: Any = None,
                 bnb_4bit_quant_type: str = "fp4", bnb_4bit_use_double_quant: bool = False,
                 bnb_4bit_quant_storage: Any = None, **kwargs: Any):
        self.quant_method = type(self).quant_method
        if load_in_8bit and load_in_4bit:
            raise ConfigError("BitsAndBytesConfig: load_in_4bit and load_in_8bit are both True; choose one")
        self._load_in_8bit, self._load_in_4bit = load_in_8bit, load_in_4bit
        self.llm_int8_threshold = llm_int8_threshold
        self.llm_int8_skip_modules = llm_int8_skip_modules
        self.llm_int8_enable_fp32_cpu_offload = llm_int8_enable_fp32_cpu_offload
        self.llm_int8_has_fp16_weight = llm_int8_has_fp16_weight
        self.bnb_4bit_quant_type = bnb_4bit_quant_type
        self.bnb_4bit_use_double_quant = bnb_4bit_use_double_quant
        self.bnb_4bit_compute_dtype = _bnb_dtype(bnb_4bit_compute_dtype, "bnb_4bit_compute_dtype", torch.float32)
        self.bnb_4bit_quant_storage = _bnb_dtype(bnb_4bit_quant_storage, "bnb_4bit_quant_storage", torch.uint8,
                                                 BNB_STORAGE_DTYPES)
        self.post_init()

    def _set_mode(self, field: str, value: bool, other: bool) -> None:
        _of_type("BitsAndBytesConfig", field, value, bool, "a bool")
        if value and other:
            raise ConfigError("BitsAndBytesConfig: load_in_4bit and load_in_8bit are both True; choose one")
        setattr(self, f"_{field}", value)

    @property
    def load_in_4bit(self) -> bool:
        return self._load_in_4bit

    @load_in_4bit.setter
    def load_in_4bit(self, value: bool) -> None:
        self._set_mode("load_in_4bit", value, self.load_in_8bit)

    @property
    def load_in_8bit(self) -> bool:
        return self._load_in_8bit

    @load_in_8bit.setter
    def load_in_8bit(self, value: bool) -> None:
        self._set_mode("load_in_8bit", value, self.load_in_4bit)

    def post_init(self) -> None:
        name = "BitsAndBytesConfig"
        for field in ("load_in_4bit", "load_in_8bit", "llm_int8_enable_fp32_cpu_offload", "llm_int8_has_fp16_weight",
                      "bnb_4bit_use_double_quant"):
            _of_type(name, field, getattr(self, field), bool, "a bool")
        _of_type(name, "llm_int8_threshold", self.llm_int8_threshold, float, "a float")
        if self.llm_int8_skip_modules is not None:
            _of_type(name, "llm_int8_skip_modules", self.llm_int8_skip_modules, list, "a list of module names")
        _one_of(name, "bnb_4bit_quant_type", self.bnb_4bit_quant_type, ("fp4", "nf4"))

    def is_quantizable(self) -> bool:
        return self.load_in_8bit or self.load_in_4bit

    def quantization_method(self) -> str | None:
        if self.load_in_8bit:
            return "llm_int8"
        return self.bnb_4bit_quant_type if self.load_in_4bit else None

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        for field in ("bnb_4bit_compute_dtype", "bnb_4bit_quant_storage"):
            data[field] = str(data[field]).removeprefix("torch.")
        data.update(load_in_4bit=self.load_in_4bit, load_in_8bit=self.load_in_8bit)
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string(use_diff=False)}"


class QuantoConfig(PackageConfig):
    """transformers 4.45's quanto settings (weights "float8" / "int8" / "int4" / "int2")."""

    quant_method, package = "quanto", "quanto"

    def __init__(self, weights: str = "int8", activations: str | None = None,
                 modules_to_not_convert: list[str] | None = None, **kwargs: Any):
        self.quant_method = type(self).quant_method
        _one_of("QuantoConfig", "weights", weights, ("float8", "int8", "int4", "int2"))
        _one_of("QuantoConfig", "activations", activations, (None, "int8", "float8"))
        self.weights, self.activations, self.modules_to_not_convert = weights, activations, modules_to_not_convert


class GPTQConfig(PackageConfig):
    """transformers 4.45's GPTQ settings (run by optimum + auto-gptq in 4.45; formers records them)."""

    quant_method, package = "gptq", "auto_gptq"

    def __init__(self, bits: int, tokenizer: Any = None, dataset: list[str] | str | None = None, group_size: int = 128,
                 damp_percent: float = 0.1, desc_act: bool = False, sym: bool = True, true_sequential: bool = True,
                 use_cuda_fp16: bool = False, model_seqlen: int | None = None,
                 block_name_to_quantize: str | None = None, module_name_preceding_first_block: list[str] | None = None,
                 batch_size: int = 1, pad_token_id: int | None = None, use_exllama: bool | None = None,
                 max_input_length: int | None = None, exllama_config: dict[str, Any] | None = None,
                 cache_block_outputs: bool = True, modules_in_block_to_quantize: list[list[str]] | None = None,
                 **kwargs: Any):
        self.quant_method = type(self).quant_method
        self.bits, self.tokenizer, self.dataset, self.group_size = bits, tokenizer, dataset, group_size
        self.damp_percent, self.desc_act, self.sym, self.true_sequential = damp_percent, desc_act, sym, true_sequential
        self.use_cuda_fp16, self.model_seqlen = use_cuda_fp16, model_seqlen
        self.block_name_to_quantize = block_name_to_quantize
        self.module_name_preceding_first_block = module_name_preceding_first_block
        self.batch_size, self.pad_token_id = batch_size, pad_token_id
        self.use_exllama, self.max_input_length, self.exllama_config = use_exllama, max_input_length, exllama_config
        disable_exllama = kwargs.pop("disable_exllama", None)  # the older spelling, still in some config.json files
        self.cache_block_outputs = cache_block_outputs
        self.modules_in_block_to_quantize = modules_in_block_to_quantize
        self._check(disable_exllama)

    def _check(self, disable_exllama: bool | None) -> None:
        name = "GPTQConfig"
        _one_of(name, "bits", self.bits, (2, 3, 4, 8))
        if self.group_size != -1 and self.group_size <= 0:
            raise ConfigError(f"{name} group_size: expected a positive number or -1, got {self.group_size!r}")
        if not 0 < self.damp_percent < 1:
            raise ConfigError(f"{name} damp_percent: expected a number between 0 and 1, got {self.damp_percent!r}")
        if isinstance(self.dataset, str):
            _one_of(name, "dataset", self.dataset, ("wikitext2", "c4", "c4-new"))
        elif self.dataset is not None and not isinstance(self.dataset, list):
            raise ConfigError(f"{name} dataset: expected a list of texts or one of ['wikitext2', 'c4', 'c4-new'], "
                              f"got {self.dataset!r}")
        if disable_exllama is not None and self.use_exllama is not None:
            raise ConfigError(f"{name}: pass use_exllama, not both use_exllama and disable_exllama")
        if self.use_exllama is None:
            self.use_exllama = True if disable_exllama is None else not disable_exllama
        if self.exllama_config is None:
            self.exllama_config = {"version": 1}
        elif self.exllama_config.get("version") not in (1, 2):
            raise ConfigError(f"{name} exllama_config: expected a 'version' of 1 or 2, got {self.exllama_config!r}")

    def to_dict_optimum(self) -> dict[str, Any]:
        """The dict optimum's GPTQ quantizer reads (it still spells the flag disable_exllama)."""
        return {**self.to_dict(), "disable_exllama": not self.use_exllama}

    @classmethod
    def from_dict_optimum(cls, config_dict: dict[str, Any]) -> "GPTQConfig":
        data = dict(config_dict)
        if "disable_exllama" in data:
            data["use_exllama"], data["disable_exllama"] = not data["disable_exllama"], None
        return cls(**data)


AWQ_FUSING_KEYS = ("hidden_size", "num_attention_heads", "num_key_value_heads", "mlp", "attention", "layernorm",
                   "use_alibi")


class AwqConfig(PackageConfig):
    """transformers 4.45's AWQ settings (run by autoawq on a GPU in 4.45; formers reads AWQ checkpoints itself,
    awq.py, and takes one passed with such a checkpoint as loading options)."""

    quant_method, package = "awq", "awq"

    def __init__(self, bits: int = 4, group_size: int = 128, zero_point: bool = True, version: str = "gemm",
                 backend: str = "autoawq", do_fuse: bool | None = None, fuse_max_seq_len: int | None = None,
                 modules_to_fuse: dict | None = None, modules_to_not_convert: list[str] | None = None,
                 exllama_config: dict[str, int] | None = None, **kwargs: Any):
        name = "AwqConfig"
        self.quant_method = type(self).quant_method
        self.bits, self.group_size, self.zero_point = bits, group_size, zero_point
        _one_of(name, "backend", backend, ("autoawq", "llm-awq"))
        version = version.lower() if isinstance(version, str) else version
        _one_of(name, "version", version, ("gemm", "gemv", "exllama"))
        self.version, self.backend = version, backend
        self.fuse_max_seq_len, self.modules_to_not_convert = fuse_max_seq_len, modules_to_not_convert
        self.exllama_config, self.modules_to_fuse = exllama_config, modules_to_fuse
        self.do_fuse = bool(modules_to_fuse) if do_fuse is None else do_fuse
        if self.do_fuse and fuse_max_seq_len is None:
            raise ConfigError(f"{name}: do_fuse needs fuse_max_seq_len (the longest sequence the fused modules take)")
        if self.do_fuse and modules_to_fuse is not None and not all(key in modules_to_fuse for key in AWQ_FUSING_KEYS):
            raise ConfigError(f"{name} modules_to_fuse: expected the keys {list(AWQ_FUSING_KEYS)}, got "
                              f"{sorted(modules_to_fuse)}")
        if version == "exllama":
            if exllama_config is None:
                self.exllama_config = {"version": 2, "max_input_len": 2048, "max_batch_size": 8}
            elif exllama_config.get("version") not in (1, 2):
                raise ConfigError(f"{name} exllama_config: expected a 'version' of 1 or 2, got {exllama_config!r}")


class AqlmConfig(PackageConfig):
    """transformers 4.45's AQLM (additive quantization) settings."""

    quant_method, package = "aqlm", "aqlm"

    def __init__(self, in_group_size: int = 8, out_group_size: int = 1, num_codebooks: int = 1,
                 nbits_per_codebook: int = 16, linear_weights_not_to_quantize: list[str] | None = None,
                 **kwargs: Any):
        self.quant_method = type(self).quant_method
        for field, value in (("in_group_size", in_group_size), ("out_group_size", out_group_size),
                             ("num_codebooks", num_codebooks), ("nbits_per_codebook", nbits_per_codebook)):
            _of_type("AqlmConfig", field, value, int, "an int")
        if linear_weights_not_to_quantize is not None:
            _of_type("AqlmConfig", "linear_weights_not_to_quantize", linear_weights_not_to_quantize, list,
                     "a list of weight names")
        self.in_group_size, self.out_group_size = in_group_size, out_group_size
        self.num_codebooks, self.nbits_per_codebook = num_codebooks, nbits_per_codebook
        self.linear_weights_not_to_quantize = linear_weights_not_to_quantize or []


class EetqConfig(PackageConfig):
    """transformers 4.45's EETQ settings (int8 weights only)."""

    quant_method, package = "eetq", "eetq"

    def __init__(self, weights: str = "int8", modules_to_not_convert: list[str] | None = None, **kwargs: Any):
        self.quant_method = type(self).quant_method
        _one_of("EetqConfig", "weights", weights, ("int8",))
        self.weights, self.modules_to_not_convert = weights, modules_to_not_convert


class FbgemmFp8Config(PackageConfig):
    """transformers 4.45's FBGEMM float8 settings."""

    quant_method, package = "fbgemm_fp8", "fbgemm_gpu"

    def __init__(self, activation_scale_ub: float = 1200.0, modules_to_not_convert: list[str] | None = None,
                 **kwargs: Any):
        self.quant_method = type(self).quant_method
        self.activation_scale_ub, self.modules_to_not_convert = activation_scale_ub, modules_to_not_convert


def _hqq_parameters(nbits: int, group_size: int | None, quant_zero: bool, quant_scale: bool, offload_meta: bool,
                    view_as_float: bool, axis: int) -> dict[str, Any]:
    """hqq's BaseQuantizeConfig dict (hqq 0.2.x layout, which 4.45's HqqConfig stores and saves)."""
    if nbits not in (1, 2, 3, 4, 8):
        raise ConfigError(f"HqqConfig nbits: expected one of [1, 2, 3, 4, 8], got {nbits!r}")
    if group_size is not None and group_size % 8:
        raise ConfigError(f"HqqConfig group_size: expected a multiple of 8, got {group_size!r}")
    if offload_meta:
        quant_scale = quant_zero
    meta = {"nbits": 8, "channel_wise": True, "group_size": 128, "optimize": False}
    zero = meta if offload_meta else {"nbits": 8, "channel_wise": False, "group_size": None, "optimize": False}
    return {"weight_quant_params": {"nbits": nbits, "channel_wise": True, "group_size": group_size, "optimize": True,
                                    "round_zero": nbits == 4, "axis": axis, "view_as_float": view_as_float},
            "scale_quant_params": dict(meta) if quant_scale else None,
            "zero_quant_params": dict(zero) if quant_zero else None, "offload_meta": offload_meta}


class HqqConfig(PackageConfig):
    """transformers 4.45's HQQ settings; like 4.45 its dict is hqq's quantizer parameters (`quant_config`)."""

    quant_method, package = "hqq", "hqq"

    def __init__(self, nbits: int = 4, group_size: int = 64, quant_zero: bool = True, quant_scale: bool = False,
                 offload_meta: bool = False, view_as_float: bool = False, axis: int = 0,
                 dynamic_config: dict | None = None, skip_modules: list[str] = ["lm_head"], **kwargs: Any):  # noqa: B006
        _one_of("HqqConfig", "axis", axis, (0, 1))
        if dynamic_config is not None:  # per-layer settings: {"self_attn.q_proj": {"nbits": 4, ...}, ...}
            self.quant_config = {key: _hqq_parameters(**{**dict(nbits=4, group_size=64, quant_zero=False,
                                                                quant_scale=False, offload_meta=False,
                                                                view_as_float=False, axis=1), **settings})
                                 for key, settings in dynamic_config.items()}
        else:
            self.quant_config = _hqq_parameters(nbits, group_size, quant_zero, quant_scale, offload_meta,
                                                view_as_float, axis)
        self.quant_method = type(self).quant_method
        self.skip_modules = skip_modules

    def to_dict(self) -> dict[str, Any]:
        return self.quant_config

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], return_unused_kwargs: bool = False, **kwargs: Any) -> Any:
        """Also reads the dict `to_dict` writes (hqq's parameters, whole or per layer), which 4.45 cannot."""
        data = {key: value for key, value in config_dict.items() if key != "quant_method"}
        if not _is_hqq_dict(data):
            return super().from_dict(config_dict, return_unused_kwargs, **kwargs)
        config = cls()
        config.quant_config = copy.deepcopy(data)
        return config.with_overrides(return_unused_kwargs, **kwargs)


class CompressedTensorsConfig(PackageConfig):
    """transformers 4.45's compressed-tensors settings, kept as the dicts a config.json holds (4.45 parses them
    with the compressed_tensors package, which formers does not need to record them)."""

    quant_method, package = "compressed-tensors", "compressed_tensors"

    def __init__(self, config_groups: dict | None = None, format: str = "dense",
                 quantization_status: str = "initialized", kv_cache_scheme: dict | None = None,
                 global_compression_ratio: float | None = None, ignore: list[str] | None = None,
                 sparsity_config: dict | None = None, quant_method: str = "compressed-tensors", **kwargs: Any):
        self.quantization_config = None if not config_groups else {
            "config_groups": config_groups, "quant_method": quant_method, "format": format,
            "quantization_status": quantization_status, "kv_cache_scheme": kv_cache_scheme,
            "global_compression_ratio": global_compression_ratio, "ignore": ignore, **kwargs}
        self.sparsity_config = sparsity_config or None
        self.quant_method = type(self).quant_method

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], return_unused_kwargs: bool = False, **kwargs: Any) -> Any:
        if "quantization_config" in config_dict:  # the nested form to_dict writes
            config_dict = dict(sparsity_config=config_dict.get("sparsity_config"),
                               **config_dict["quantization_config"])
        return super().from_dict(config_dict, return_unused_kwargs, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {"quantization_config": self.quantization_config, "sparsity_config": self.sparsity_config}


PACKAGE_CONFIGS = {cls.quant_method: cls for cls in (BitsAndBytesConfig, QuantoConfig, GPTQConfig, AwqConfig,
                                                     AqlmConfig, EetqConfig, HqqConfig, FbgemmFp8Config,
                                                     CompressedTensorsConfig)}


def _is_hqq_dict(data: dict[str, Any]) -> bool:
    return "weight_quant_params" in data or bool(data) and all(
        isinstance(value, dict) and "weight_quant_params" in value for value in data.values())


def quant_method_of(data: dict[str, Any]) -> str | None:
    """The method a config.json's `quantization_config` names; the dicts 4.45 writes for HQQ (hqq's parameters)
    and compressed-tensors (nested under "quantization_config") carry it elsewhere or not at all."""
    if "quant_method" in data:
        return data["quant_method"]
    if _is_hqq_dict(data):
        return HqqConfig.quant_method
    nested = data.get("quantization_config")
    return nested.get("quant_method") if isinstance(nested, dict) else None


def recorded_settings(model_config: Any) -> dict[str, Any]:
    """The quantization a model's config records, as a dict that names its "quant_method" ({} for none): 4.45 keeps
    the config object there (formers too), a config.json holds its dict."""
    value = getattr(model_config, "quantization_config", None)
    if not value:
        return {}
    if isinstance(value, dict):
        return {**value, "quant_method": quant_method_of(value)}
    return {**value.to_dict(), "quant_method": value.quant_method}


def package_config(value: Any) -> PackageConfig | None:
    """A 4.45 package config (BitsAndBytesConfig, QuantoConfig, ...) given as the object or as its dict (a
    config.json's `quantization_config`), else None."""
    if isinstance(value, dict) and quant_method_of(value) in PACKAGE_CONFIGS:
        return PACKAGE_CONFIGS[quant_method_of(value)].from_dict(value)
    return value if isinstance(value, PackageConfig) else None
