"""The distributed fields of TrainingArguments, checked and normalised as transformers 4.45 does.

`fsdp` is a space-separated string (or a list, or True for "full_shard") of options:
  full_shard     parameters, gradients and optimizer states sharded; parameters re-gathered per layer
  shard_grad_op  gradients and optimizer states sharded; parameters stay gathered from forward to backward
  offload        parameters, gradients and optimizer states live on the CPU (with full_shard/shard_grad_op)
  auto_wrap      each decoder layer is its own FSDP unit (formers always wraps by layer under FSDP)
`fsdp_config` (a dict, or the path of a JSON file whose keys may carry an `fsdp_` prefix) keys that apply
without accelerate:
  transformer_layer_cls_to_wrap  class names of the FSDP units (default: the family's decoder layer)
  activation_checkpointing       recompute each wrapped layer's activations in backward
  cpu_ram_efficient_loading, sync_module_states, use_orig_params, backward_prefetch, forward_prefetch,
  limit_all_gathers              accepted, no effect: torch's FSDP2 (fully_shard) that formers uses
                                 always keeps the original parameters and schedules its own prefetch;
                                 every rank builds the same weights (same seed or checkpoint)
"""
from __future__ import annotations

import json
from typing import Any

from ..errors import ConfigError

FSDP_OPTIONS = ("full_shard", "shard_grad_op", "offload", "auto_wrap")
UNSUPPORTED_FSDP_OPTIONS = {"no_shard": "use DDP (launch with torchrun and leave fsdp empty)",
                            "hybrid_shard": "formers shards over one process group (full_shard)",
                            "hybrid_shard_zero2": "formers shards over one process group (shard_grad_op)"}
CONFIG_KEYS = ("transformer_layer_cls_to_wrap", "activation_checkpointing", "min_num_params")
NO_EFFECT_KEYS = ("cpu_ram_efficient_loading", "sync_module_states", "use_orig_params", "backward_prefetch",
                  "forward_prefetch", "limit_all_gathers")


def _fsdp_options(value: Any) -> list[str]:
    if value is None or value is False:
        return []
    if value is True:
        return ["full_shard"]
    options = value.split() if isinstance(value, str) else list(value)
    for option in options:
        if option in UNSUPPORTED_FSDP_OPTIONS:
            raise ConfigError(f"TrainingArguments.fsdp: {option!r} is not supported; "
                              f"{UNSUPPORTED_FSDP_OPTIONS[option]}")
        if option not in FSDP_OPTIONS:
            raise ConfigError(f"TrainingArguments.fsdp: unknown option {option!r}; expected some of "
                              f"{', '.join(FSDP_OPTIONS)}")
    if options == ["offload"]:
        raise ConfigError('TrainingArguments.fsdp: "offload" needs "full_shard" or "shard_grad_op" with it, '
                          'e.g. fsdp="full_shard offload"')
    if "full_shard" in options and "shard_grad_op" in options:
        raise ConfigError("TrainingArguments.fsdp: 'full_shard' and 'shard_grad_op' exclude each other")
    if options and not ({"full_shard", "shard_grad_op"} & set(options)):
        options.insert(0, "full_shard")  # "auto_wrap" alone: full sharding, as accelerate's default
    return options


def _fsdp_config(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            with open(value, encoding="utf-8") as handle:
                value = json.load(handle)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"TrainingArguments.fsdp_config={value!r}: cannot read the JSON file ({exc})") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"TrainingArguments.fsdp_config: expected a dict or a JSON file path, got {value!r}")
    config = {(k[len("fsdp_"):] if k.startswith("fsdp_") else k): v for k, v in value.items()}
    unknown = sorted(set(config) - set(CONFIG_KEYS) - set(NO_EFFECT_KEYS))
    if unknown:
        raise ConfigError(f"TrainingArguments.fsdp_config: keys {unknown} are not supported without accelerate; "
                          f"expected some of {', '.join(CONFIG_KEYS + NO_EFFECT_KEYS)}")
    classes = config.get("transformer_layer_cls_to_wrap")
    if isinstance(classes, str):
        config["transformer_layer_cls_to_wrap"] = [classes]
    if config.get("min_num_params", 0) > 0:
        raise ConfigError("TrainingArguments.fsdp_config.min_num_params: size-based wrapping is not supported; "
                          "formers wraps by layer class (transformer_layer_cls_to_wrap)")
    config["min_num_params"] = 0
    if isinstance(config.get("activation_checkpointing"), str):
        config["activation_checkpointing"] = config["activation_checkpointing"].lower() == "true"
    return config


def check_distributed_fields(args) -> None:
    """Normalise `fsdp` to a list of options and `fsdp_config` to a dict; check the ddp_* values."""
    args.fsdp = _fsdp_options(args.fsdp)
    args.fsdp_config = _fsdp_config(args.fsdp_config)
    if args.ddp_backend not in (None, "gloo", "nccl", "mpi", "ccl", "hccl", "cncl", "mccl"):
        raise ConfigError(f"TrainingArguments.ddp_backend={args.ddp_backend!r}: expected a torch.distributed "
                          "backend name such as 'gloo' or 'nccl'")
    if args.ddp_timeout is None or args.ddp_timeout <= 0:
        raise ConfigError(f"TrainingArguments.ddp_timeout: expected seconds > 0, got {args.ddp_timeout!r}")
