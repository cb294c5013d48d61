"""PreTrainedModel: from_pretrained / save_pretrained as short orchestrators over named steps.

Loading builds the model on the `meta` device (no random init, no memory), then assigns the
checkpoint's memory-mapped tensors directly (a copy only where dtype or device changes).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, ClassVar, Iterable

import torch
from torch import nn

from .configuration_utils import CONFIG_NAME, PretrainedConfig, refuse_remote_code
from .errors import CheckpointError, ConfigError
from .generation.utils import GenerationMixin
from .loading.sources import open_weights
from .loading.hub import resolve_file
from .loading.key_map import KeyMap
from .loading.save import save_folder_atomically
from .loading.weights_writer import is_model_file, write_weights
from .quantization import (QuantizedLinear, canonical_4bit_layers, checkpoint_state, pop_quantization,
                           recorded_settings)
from .quantization.dequantize import dequantize_model

logger = logging.getLogger(__name__)

ATTN_IMPLEMENTATIONS = ("eager", "sdpa")
_IGNORED_UNEXPECTED = ("rotary_emb.inv_freq",)  # buffers older checkpoints saved; recomputed here


class PreTrainedModel(nn.Module, GenerationMixin):
    config_class: ClassVar[type[PretrainedConfig]] = PretrainedConfig
    base_model_prefix: ClassVar[str] = "model"
    main_input_name: ClassVar[str] = "input_ids"
    checkpoint_keys: ClassVar["KeyMap | None"] = None  # the family's checkpoint layout (loading/key_map.py)
    default_attn_implementation: ClassVar[str] = "sdpa"  # when the caller names none (Gemma2: "eager", as 4.45)
    _tied_weights_keys: ClassVar[list[str]] = []
    # Layers that transformers 4.45 holds as something other than nn.Linear, by a part of their name here: "conv1d"
    # (GPT-2's Conv1D) or "parameter" (experts stored as stacked tensors). Quantization packages that swap
    # nn.Linear layers (quanto; bitsandbytes, which takes Conv1D too) leave these alone, as under 4.45.
    reference_layer_kinds: ClassVar[dict[str, str]] = {}

    def __init__(self, config: PretrainedConfig, *inputs: Any, **kwargs: Any):
        super().__init__()
        implementation = config._attn_implementation or self.default_attn_implementation
        if implementation not in ATTN_IMPLEMENTATIONS:
            raise ConfigError(f"attn_implementation: expected one of {ATTN_IMPLEMENTATIONS}, got {implementation!r}")
        config._attn_implementation = implementation
        self.config = config
        self.name_or_path = config.name_or_path
        self.generation_config = self._default_generation_config(config) if self.can_generate() else None

    @staticmethod
    def _default_generation_config(config: PretrainedConfig):
        from .generation.configuration_utils import GenerationConfig
        return GenerationConfig.from_model_config(config)

    # --- small accessors -------------------------------------------------------------------------
    @classmethod
    def can_generate(cls) -> bool:
        return False

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(p for p in self.parameters() if p.is_floating_point()).dtype

    @classmethod
    def key_map(cls, config: PretrainedConfig) -> "KeyMap | None":
        """The checkpoint layout for `config` (families whose layout varies with the config override this)."""
        return cls.checkpoint_keys

    def cache_from_legacy(self, past_key_values) -> "Cache":
        """4.45-style tuple caches (or None) -> a Cache; families with another tuple layout override both."""
        from .cache import DynamicCache
        return DynamicCache.from_legacy_cache(past_key_values)

    def cache_to_legacy(self, cache: "Cache") -> tuple:
        return cache.to_legacy_cache()

    def get_input_embeddings(self) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} has no input embeddings")

    def get_output_embeddings(self) -> nn.Module | None:
        """The LM head (`lm_head`) of a model that has one; None for bare base models."""
        return getattr(self, "lm_head", None)

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    def tie_weights(self) -> None:
        """Share the LM head with the input embeddings when the config asks for it."""
        output = self.get_output_embeddings()
        if output is not None and self.config.tie_word_embeddings and not isinstance(output, QuantizedLinear):
            output.weight = self.get_input_embeddings().weight  # (a quantized head was built from the same blocks)

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        skip = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)} if exclude_embeddings else set()
        unique = {id(p): p for p in self.parameters() if id(p) not in skip}
        return sum(p.numel() for p in unique.values() if p.requires_grad or not only_trainable)

    # --- construction ---------------------------------------------------------------------------
    def _init_weights(self, module: nn.Module) -> None:
        std = getattr(self.config, "initializer_range", 0.02)
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(mean=0.0, std=std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(mean=0.0, std=std)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()

    def post_init(self) -> None:
        """Random initialisation for models built from a config (not from a checkpoint)."""
        self.apply(self._init_weights)
        self.tie_weights()

    @classmethod
    def from_config(cls, config: PretrainedConfig, torch_dtype: torch.dtype | None = None,
                    attn_implementation: str | None = None):
        if attn_implementation is not None:
            config._attn_implementation = attn_implementation
        model = cls(config)
        model.post_init()
        return model.to(torch_dtype) if torch_dtype is not None else model

    _from_config = from_config

    # --- loading ----------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any,
                        config: PretrainedConfig | None = None, torch_dtype: str | torch.dtype | None = None,
                        device_map: str | int | torch.device | dict | None = None, revision: str | None = None,
                        cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                        token: str | bool | None = None, attn_implementation: str | None = None,
                        trust_remote_code: bool = False, **kwargs: Any):
        refuse_remote_code(trust_remote_code)
        for ignored in ("low_cpu_mem_usage", "use_safetensors", "force_download", "resume_download", "proxies"):
            kwargs.pop(ignored, None)  # loading is always low-memory; downloads are huggingface_hub's business
        hub = dict(revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
        quantization = pop_quantization(kwargs)
        tp_plan = kwargs.pop("tp_plan", None)  # "auto": tensor parallel over the process group
        gguf_file = kwargs.pop("gguf_file", None)
        source = open_weights(pretrained_model_name_or_path, gguf_file, quantization.gguf_keep_types, hub)
        overrides = dict(kwargs)  # config fields given here also reach a saved generation config (as 4.45)
        config = _resolve_config(cls, pretrained_model_name_or_path, config or source.config, hub, kwargs,
                                 attn_implementation)
        quantization.check_keep(gguf_file is not None, config)
        dtype = _resolve_dtype(torch_dtype, config, source.stored_dtype)
        device = resolve_device(device_map)
        with torch.device("meta"):
            model = cls(config, *model_args)
        key_map = cls.key_map(config)
        if tp_plan is not None:  # distributed/: shard the meta model in place; read only this rank's slices
            from .distributed import load_tensor_parallel
            tensors, device = load_tensor_parallel(model, tp_plan, pretrained_model_name_or_path, hub, source,
                                                   key_map, quantization, device)
        else:
            tensors = quantization.to_model(model, key_map, source.tensors(), dtype)
        tensors = quantization.stream(model, tensors, dtype, device)  # swaps in quantized linears, if asked
        unexpected = _assign_weights(model, tensors, dtype, device)
        model.tie_weights()
        missing = _materialize_missing(model, dtype, device)
        _report_key_mismatch(cls.__name__, pretrained_model_name_or_path, missing, unexpected)
        model.to(device)  # non-persistent buffers (rotary tables) follow the weights
        quantization.finish(model)
        model.eval()
        if model.can_generate():
            model.generation_config = _load_generation_config(pretrained_model_name_or_path, config, hub,
                                                              overrides)
        return model

    def dequantize(self) -> "PreTrainedModel":
        """A quantized model's linear layers back in full precision, in place (quantization/dequantize.py)."""
        return dequantize_model(self)

    def get_memory_footprint(self, return_buffers: bool = True) -> int:
        """Bytes held by the parameters (and buffers, unless return_buffers=False)."""
        tensors = list(self.parameters()) + (list(self.buffers()) if return_buffers else [])
        return sum(t.nelement() * t.element_size() for t in tensors)

    # --- saving ------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, is_main_process: bool = True,
                        state_dict: dict[str, torch.Tensor] | None = None, safe_serialization: bool = True,
                        max_shard_size: int | str = "5GB", **kwargs: Any) -> None:
        """Write config.json, generation_config.json and (sharded) safetensors, or with safe_serialization=False
        pytorch_model.bin as 4.45 does (plain tensors: what torch.load(weights_only=True) reads). The save is
        staged beside the folder and switched in at once: a save killed at any point leaves the previous model
        whole."""
        if not is_main_process:
            return
        if os.path.isfile(save_directory):
            raise CheckpointError(f"save_directory {str(save_directory)!r} is a file; expected a directory")
        package = recorded_settings(self.config).get("quant_method")
        if package in ("quanto", "hqq"):  # 4.45 calls both not serializable
            raise CheckpointError(f"save_pretrained: formers does not write the layout of {package} layers; save the "
                                  "full-precision model, or quantize with TorchAoConfig to save a quantized one")
        state_dict = self._state_dict_for_saving() if state_dict is None else state_dict
        self.config.architectures = [type(self).__name__]
        self.config.torch_dtype = self.dtype

        def write_payload(folder: Path) -> None:
            write_weights(folder, state_dict, max_shard_size, safe_serialization)
            if self.generation_config is not None:
                self.generation_config.save_pretrained(folder)
            self.config.save_pretrained(folder)  # last: what makes a folder loadable

        save_folder_atomically(save_directory, write_payload, replaces=is_model_file, marker=CONFIG_NAME)

    def _state_dict_for_saving(self) -> dict[str, torch.Tensor]:
        with canonical_4bit_layers(self):
            state = self.state_dict()
        if self.config.tie_word_embeddings and not isinstance(self.get_output_embeddings(), QuantizedLinear):
            for key in self._tied_weights_keys:
                state.pop(key, None)
        state = {k: v.detach() for k, v in state.items()}
        key_map = self.key_map(self.config)
        return state if key_map is None else checkpoint_state(self, state, key_map)


def _resolve_config(cls, path, config, hub, kwargs, attn_implementation) -> PretrainedConfig:
    if config is None:
        config = cls.config_class.from_pretrained(path, **hub)
    from .generation.configuration_utils import FIELD_DEFAULTS  # generation fields are config attributes in 4.45
    unknown = [k for k in kwargs if k not in config._fields and not hasattr(config, k) and k not in FIELD_DEFAULTS]
    if unknown:
        raise ConfigError(f"from_pretrained: unexpected arguments {unknown}; expected loading options or "
                          f"fields of {type(config).__name__}")
    for key, value in kwargs.items():  # as transformers: extra kwargs override config fields
        setattr(config, key, value)
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    return config


def _resolve_dtype(torch_dtype, config: PretrainedConfig, stored_dtype) -> torch.dtype:
    """None -> float32 (transformers' default); "auto" -> config.torch_dtype, else the stored dtype."""
    if torch_dtype is None:
        return torch.float32
    if torch_dtype == "auto":
        return config.torch_dtype or stored_dtype() or torch.float32
    if isinstance(torch_dtype, str) and isinstance(getattr(torch, torch_dtype, None), torch.dtype):
        return getattr(torch, torch_dtype)
    if isinstance(torch_dtype, torch.dtype):
        return torch_dtype
    raise ConfigError(f"torch_dtype: expected None, 'auto', a dtype name or a torch.dtype, got {torch_dtype!r}")


def resolve_device(device_map) -> torch.device:
    """device_map None/"cpu"/"cuda"/index/device or {"": device} -> one torch.device. accelerate's strategies
    ("auto", "balanced", "balanced_low_0", "sequential") put the whole model on the first GPU when there
    is one, else on the CPU: formers does not split a model across devices."""
    if isinstance(device_map, dict):
        devices = set(device_map.values())
        if len(devices) != 1:
            raise ConfigError(f"device_map: only single-device maps are supported, got {device_map}")
        device_map = devices.pop()
    if device_map is None:
        return torch.device("cpu")
    if device_map in ("auto", "balanced", "balanced_low_0", "sequential"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device_map, int):
        return torch.device("cuda", device_map)
    try:
        return torch.device(device_map)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device_map: expected None, 'auto', 'sequential', 'cpu', 'cuda', a device index or a "
                          f"{{'': device}} dict, got {device_map!r}") from None


def _assign_weights(model: nn.Module, tensors: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype,
                    device: torch.device) -> list[str]:
    """Put each checkpoint tensor in place of the meta tensor it names; return unexpected keys."""
    expected = {name: t for name, t in model.state_dict(keep_vars=True).items()}
    prefix = model.base_model_prefix + "."
    unexpected = []
    for key, tensor in tensors:
        name = key if key in expected else (key[len(prefix):] if key.startswith(prefix) else prefix + key)
        if name not in expected:
            if not key.endswith(_IGNORED_UNEXPECTED):
                unexpected.append(key)
            continue
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(f"checkpoint tensor {key!r} has shape {tuple(tensor.shape)}; "
                                  f"{type(model).__name__} expects {tuple(expected[name].shape)}")
        target_dtype = dtype if tensor.is_floating_point() else tensor.dtype
        _set_tensor(model, name, tensor.to(device=device, dtype=target_dtype))
    return unexpected


def _set_tensor(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name)
    if leaf in module._parameters:
        module._parameters[leaf] = nn.Parameter(tensor, requires_grad=tensor.is_floating_point())
    else:
        module._buffers[leaf] = tensor


def _materialize_missing(model: "PreTrainedModel", dtype: torch.dtype, device: torch.device) -> list[str]:
    """Weights the checkpoint lacked are allocated and randomly initialised (transformers warns likewise);
    weights loaded into the same module keep their loaded values."""
    missing = [name for name, t in model.state_dict(keep_vars=True).items() if t.is_meta]
    by_module: dict[str, list[str]] = {}
    for name in missing:
        module_name, _, leaf = name.rpartition(".")
        current = model.get_submodule(module_name)._parameters.get(leaf)
        _set_tensor(model, name, torch.empty(current.shape, dtype=dtype, device=device))
        by_module.setdefault(module_name, []).append(leaf)
    for module_name, leaves in by_module.items():
        module = model.get_submodule(module_name)
        loaded = {k: v.detach().clone() for k, v in module.named_parameters(recurse=False) if k not in leaves}
        model._init_weights(module)
        with torch.no_grad():
            for key, value in loaded.items():
                getattr(module, key).copy_(value)
    model.tie_weights()
    return missing


def _report_key_mismatch(cls_name: str, path, missing: list[str], unexpected: list[str]) -> None:
    if unexpected:
        logger.warning("Some weights of the checkpoint at %s were not used when initializing %s: %s",
                       path, cls_name, unexpected)
    if missing:
        logger.warning("Some weights of %s were not initialized from the checkpoint at %s and are newly "
                       "initialized: %s", cls_name, path, missing)


def _load_generation_config(path, config: PretrainedConfig, hub: dict, overrides: dict):
    from .generation.configuration_utils import FIELD_DEFAULTS, GenerationConfig
    if resolve_file(path, "generation_config.json", required=False, **hub) is not None:
        loaded = GenerationConfig.from_pretrained(path, **hub)
        changed = {key for key in overrides.keys() & FIELD_DEFAULTS.keys() if overrides[key] != FIELD_DEFAULTS[key]}
        if changed and loaded._from_model_config:  # 4.45's generate() then rebuilds it from the model config
            return GenerationConfig.from_model_config(config)
        for key in changed:  # e.g. from_pretrained(..., forced_bos_token_id=0) in BART's docs
            setattr(loaded, key, overrides[key])
        return loaded
    return GenerationConfig.from_model_config(config)
