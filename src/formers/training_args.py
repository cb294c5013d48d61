"""TrainingArguments: the fields of transformers 4.45 that single-device causal-LM training uses.

Names and defaults are transformers'. Fields for features formers does not have (DeepSpeed, hub
pushing, TPUs) are absent rather than silently ignored. The distributed fields (ddp_*, fsdp, fsdp_config,
local_rank, save_on_each_node) are read by formers.distributed.training; GaLore's (optim="galore_*",
optim_target_modules, optim_args) by formers.trainer_galore. Interval fields (`logging_steps`,
`eval_steps`, `save_steps`) below 1 are fractions of the total steps, as in transformers.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch

from .errors import ConfigError
from .optimization import SchedulerType

logger = logging.getLogger(__name__)


class IntervalStrategy(str, Enum):
    NO = "no"
    STEPS = "steps"
    EPOCH = "epoch"


def _enum(enum_cls: type[Enum], value: Any, name: str) -> Enum:
    try:
        return enum_cls(value)
    except ValueError:
        options = ", ".join(repr(m.value) for m in enum_cls)
        raise ConfigError(f"TrainingArguments.{name}={value!r}: expected one of {options}") from None


@dataclass
class TrainingArguments:
    output_dir: str
    overwrite_output_dir: bool = False
    do_train: bool = False
    do_eval: bool = False
    eval_strategy: IntervalStrategy | str = "no"
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    num_train_epochs: float = 3.0
    max_steps: int = -1
    lr_scheduler_type: SchedulerType | str = "linear"
    lr_scheduler_kwargs: dict[str, Any] = field(default_factory=dict)
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    logging_dir: str | None = None
    logging_strategy: IntervalStrategy | str = "steps"
    logging_first_step: bool = False
    logging_steps: float = 500
    logging_nan_inf_filter: bool = True
    save_strategy: IntervalStrategy | str = "steps"
    save_steps: float = 500
    save_total_limit: int | None = None
    save_safetensors: bool = True
    save_only_model: bool = False
    use_cpu: bool = False
    seed: int = 42
    data_seed: int | None = None
    bf16: bool = False
    fp16: bool = False
    dataloader_drop_last: bool = False
    eval_steps: float | None = None
    dataloader_num_workers: int = 0
    run_name: str | None = None
    disable_tqdm: bool | None = None
    remove_unused_columns: bool = True
    label_names: list[str] | None = None
    load_best_model_at_end: bool = False
    metric_for_best_model: str | None = None
    greater_is_better: bool | None = None
    ignore_data_skip: bool = False
    optim: str = "adamw_torch"
    report_to: str | list[str] | None = None
    dataloader_pin_memory: bool = True
    resume_from_checkpoint: str | None = None
    gradient_checkpointing: bool = False
    include_num_input_tokens_seen: bool = False
    neftune_noise_alpha: float | None = None
    local_rank: int = -1
    ddp_backend: str | None = None
    ddp_timeout: int = 1800
    ddp_find_unused_parameters: bool | None = None
    ddp_bucket_cap_mb: int | None = None
    ddp_broadcast_buffers: bool | None = None
    fsdp: list[str] | str | bool | None = ""
    fsdp_config: dict[str, Any] | str | None = None
    save_on_each_node: bool = False
    optim_target_modules: str | list[str] | None = None
    optim_args: str | None = None
    evaluation_strategy: IntervalStrategy | str | None = None  # deprecated name of eval_strategy

    def __post_init__(self) -> None:
        if self.output_dir is None:
            raise ConfigError("TrainingArguments.output_dir: expected a folder path, got None")
        self.output_dir = os.fspath(os.path.expanduser(self.output_dir))
        if self.logging_dir is None:
            self.logging_dir = self.output_dir
        if self.evaluation_strategy is not None:
            logger.warning("`evaluation_strategy` is deprecated; use `eval_strategy`")
            self.eval_strategy = self.evaluation_strategy
            self.evaluation_strategy = None
        self.eval_strategy = _enum(IntervalStrategy, self.eval_strategy, "eval_strategy")
        self.logging_strategy = _enum(IntervalStrategy, self.logging_strategy, "logging_strategy")
        self.save_strategy = _enum(IntervalStrategy, self.save_strategy, "save_strategy")
        self.lr_scheduler_type = _enum(SchedulerType, self.lr_scheduler_type, "lr_scheduler_type")
        if self.do_eval is False and self.eval_strategy is not IntervalStrategy.NO:
            self.do_eval = True
        if self.eval_strategy is IntervalStrategy.STEPS and not self.eval_steps:
            if self.logging_steps <= 0:
                raise ConfigError("TrainingArguments.eval_steps: eval_strategy='steps' needs eval_steps or "
                                  "logging_steps > 0")
            self.eval_steps = self.logging_steps
        self._check_values()
        from .distributed.training_options import check_distributed_fields
        check_distributed_fields(self)
        self._check_best_model()
        if self.run_name is None:
            self.run_name = self.output_dir
        if self.disable_tqdm is None:
            self.disable_tqdm = logger.getEffectiveLevel() > logging.WARNING
        self._check_report_to()

    def _check_values(self) -> None:
        positive = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"TrainingArguments.{name}: expected a positive int, got {getattr(self, name)!r}")
        for name in ("logging_steps", "save_steps", "eval_steps"):
            value = getattr(self, name)
            if value is None:
                continue
            if value < 0 or (value > 1 and value != int(value)):
                raise ConfigError(f"TrainingArguments.{name}: expected a positive int, or a float in (0, 1) "
                                  f"meaning a fraction of the total steps; got {value!r}")
            if getattr(self, name.replace("_steps", "_strategy")) is IntervalStrategy.STEPS and value == 0:
                raise ConfigError(f"TrainingArguments.{name}: must be > 0 when its strategy is 'steps'")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ConfigError(f"TrainingArguments.warmup_ratio: expected a value in [0, 1], got {self.warmup_ratio}")
        if self.warmup_steps < 0:
            raise ConfigError(f"TrainingArguments.warmup_steps: expected >= 0, got {self.warmup_steps}")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ConfigError("TrainingArguments: set max_steps > 0 or num_train_epochs > 0")
        if self.bf16 and self.fp16:
            raise ConfigError("TrainingArguments: bf16 and fp16 are both True; pick one")
        if self.fp16 and self.device.type != "cuda":
            raise ConfigError("TrainingArguments.fp16: float16 mixed precision needs a CUDA device; use bf16 on CPU")
        from .trainer_galore import GALORE_OPTIMIZERS
        if self.optim not in ("adamw_torch", "adamw_hf", "adamw_torch_fused", *GALORE_OPTIMIZERS):
            raise ConfigError(f"TrainingArguments.optim={self.optim!r}: formers implements 'adamw_torch' "
                              f"(and its aliases 'adamw_hf', 'adamw_torch_fused') and GaLore's "
                              f"{', '.join(repr(n) for n in GALORE_OPTIMIZERS)}")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ConfigError(f"TrainingArguments.save_total_limit: expected None or >= 1, got {self.save_total_limit}")

    def _check_best_model(self) -> None:
        if not self.load_best_model_at_end:
            return
        if self.eval_strategy != self.save_strategy:
            raise ConfigError(f"TrainingArguments.load_best_model_at_end needs matching eval and save strategies, "
                              f"got eval_strategy={self.eval_strategy.value!r}, save_strategy={self.save_strategy.value!r}")
        if self.eval_strategy is IntervalStrategy.STEPS and self.save_steps % self.eval_steps != 0:
            raise ConfigError(f"TrainingArguments.save_steps={self.save_steps} must be a multiple of "
                              f"eval_steps={self.eval_steps} for load_best_model_at_end")
        if self.metric_for_best_model is None:
            self.metric_for_best_model = "loss"
        if self.greater_is_better is None:
            self.greater_is_better = not self.metric_for_best_model.endswith("loss")

    def _check_report_to(self) -> None:
        targets = [self.report_to] if isinstance(self.report_to, str) else list(self.report_to or [])
        integrations = [t for t in targets if t not in ("none", "all")]
        if integrations:
            logger.warning("report_to=%s: formers has no experiment-tracker integrations; metrics go to the "
                           "JSON-lines log in output_dir only", integrations)
        self.report_to = []

    # --- derived values ----------------------------------------------------------------------------
    @property
    def train_batch_size(self) -> int:
        return self.per_device_train_batch_size

    @property
    def eval_batch_size(self) -> int:
        return self.per_device_eval_batch_size

    @property
    def device(self) -> torch.device:
        """The CPU, or this process's GPU (cuda:LOCAL_RANK when launched by torchrun)."""
        if not torch.cuda.is_available() or self.use_cpu:
            return torch.device("cpu")
        local = self.local_process_index
        return torch.device("cuda", local) if local >= 0 and os.environ.get("WORLD_SIZE") else torch.device("cuda")

    @property
    def world_size(self) -> int:
        """Processes in the training job: the process group's size, else torchrun's WORLD_SIZE, else 1."""
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size()
        return int(os.environ.get("WORLD_SIZE", "1"))

    @property
    def process_index(self) -> int:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank()
        return int(os.environ.get("RANK", "0"))

    @property
    def local_process_index(self) -> int:
        return self.local_rank if self.local_rank != -1 else int(os.environ.get("LOCAL_RANK", "0"))

    @property
    def should_save(self) -> bool:
        """Whether this process writes checkpoint files (rank 0, or each node's first with save_on_each_node)."""
        return self.process_index == 0 or (self.save_on_each_node and self.local_process_index == 0)

    @property
    def n_gpu(self) -> int:
        return 1 if self.device.type == "cuda" else 0

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The mixed-precision compute dtype, or None for full precision."""
        return torch.bfloat16 if self.bf16 else torch.float16 if self.fp16 else None

    def get_warmup_steps(self, num_training_steps: int) -> int:
        """warmup_steps wins when set; otherwise ceil(warmup_ratio * total steps), as transformers."""
        return self.warmup_steps if self.warmup_steps > 0 else math.ceil(num_training_steps * self.warmup_ratio)

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            out[item.name] = value.value if isinstance(value, Enum) else value
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
