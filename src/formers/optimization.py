"""Learning-rate schedules with transformers 4.45's names and formulas, as `LambdaLR` multipliers.

Each `_factor_*` function maps a step to a multiplier of the initial learning rate. They are module
functions bound with `functools.partial`, so a scheduler's `state_dict()` holds plain numbers and
checkpoints load with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import math
from enum import Enum
from functools import partial
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau

from .errors import ConfigError


class SchedulerType(str, Enum):
    LINEAR = "linear"
    COSINE = "cosine"
    COSINE_WITH_RESTARTS = "cosine_with_restarts"
    POLYNOMIAL = "polynomial"
    CONSTANT = "constant"
    CONSTANT_WITH_WARMUP = "constant_with_warmup"
    INVERSE_SQRT = "inverse_sqrt"
    REDUCE_ON_PLATEAU = "reduce_lr_on_plateau"
    COSINE_WITH_MIN_LR = "cosine_with_min_lr"
    WARMUP_STABLE_DECAY = "warmup_stable_decay"


def _warmup(step: int, warmup: int) -> float:
    return float(step) / float(max(1, warmup))


def _factor_constant(step: int) -> float:
    return 1.0


def _factor_constant_with_warmup(step: int, *, num_warmup_steps: int) -> float:
    return _warmup(step, num_warmup_steps) if step < num_warmup_steps else 1.0


def _factor_linear(step: int, *, num_warmup_steps: int, num_training_steps: int) -> float:
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    return max(0.0, float(num_training_steps - step) / float(max(1, num_training_steps - num_warmup_steps)))


def _progress(step: int, warmup: int, total: int) -> float:
    return float(step - warmup) / float(max(1, total - warmup))


def _factor_cosine(step: int, *, num_warmup_steps: int, num_training_steps: int, num_cycles: float,
                   min_lr_rate: float = 0.0) -> float:
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    progress = _progress(step, num_warmup_steps, num_training_steps)
    factor = 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress))
    return max(0.0, factor * (1 - min_lr_rate) + min_lr_rate)


def _factor_cosine_hard_restarts(step: int, *, num_warmup_steps: int, num_training_steps: int,
                                 num_cycles: int) -> float:
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    progress = _progress(step, num_warmup_steps, num_training_steps)
    if progress >= 1.0:
        return 0.0
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((float(num_cycles) * progress) % 1.0))))


def _factor_polynomial(step: int, *, num_warmup_steps: int, num_training_steps: int, lr_end: float, power: float,
                       lr_init: float) -> float:
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    if step > num_training_steps:
        return lr_end / lr_init
    remaining = 1 - (step - num_warmup_steps) / (num_training_steps - num_warmup_steps)
    return ((lr_init - lr_end) * remaining**power + lr_end) / lr_init


def _factor_inverse_sqrt(step: int, *, num_warmup_steps: int, timescale: int) -> float:
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    return 1.0 / math.sqrt((step + timescale - num_warmup_steps) / timescale)


def _factor_wsd(step: int, *, num_warmup_steps: int, num_stable_steps: int, num_decay_steps: int, num_cycles: float,
                min_lr_ratio: float) -> float:
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    if step < num_warmup_steps + num_stable_steps:
        return 1.0
    if step < num_warmup_steps + num_stable_steps + num_decay_steps:
        progress = float(step - num_warmup_steps - num_stable_steps) / float(max(1, num_decay_steps))
        value = max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))
        return (1.0 - min_lr_ratio) * value + min_lr_ratio
    return min_lr_ratio


# --- transformers' named constructors ---------------------------------------------------------------
def get_constant_schedule(optimizer: Optimizer, last_epoch: int = -1) -> LambdaLR:
    return LambdaLR(optimizer, _factor_constant, last_epoch=last_epoch)


def get_constant_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int, last_epoch: int = -1) -> LambdaLR:
    return LambdaLR(optimizer, partial(_factor_constant_with_warmup, num_warmup_steps=num_warmup_steps), last_epoch)


def get_linear_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int, num_training_steps: int,
                                    last_epoch: int = -1) -> LambdaLR:
    factor = partial(_factor_linear, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps)
    return LambdaLR(optimizer, factor, last_epoch)


def get_cosine_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int, num_training_steps: int,
                                    num_cycles: float = 0.5, last_epoch: int = -1) -> LambdaLR:
    factor = partial(_factor_cosine, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps,
                     num_cycles=num_cycles)
    return LambdaLR(optimizer, factor, last_epoch)


def get_cosine_with_hard_restarts_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int,
                                                       num_training_steps: int, num_cycles: int = 1,
                                                       last_epoch: int = -1) -> LambdaLR:
    factor = partial(_factor_cosine_hard_restarts, num_warmup_steps=num_warmup_steps,
                     num_training_steps=num_training_steps, num_cycles=num_cycles)
    return LambdaLR(optimizer, factor, last_epoch)


def get_polynomial_decay_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int, num_training_steps: int,
                                              lr_end: float = 1e-7, power: float = 1.0,
                                              last_epoch: int = -1) -> LambdaLR:
    lr_init = optimizer.defaults["lr"]
    if not lr_init > lr_end:
        raise ConfigError(f"polynomial schedule: lr_end ({lr_end}) must be smaller than the initial lr ({lr_init})")
    factor = partial(_factor_polynomial, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps,
                     lr_end=lr_end, power=power, lr_init=lr_init)
    return LambdaLR(optimizer, factor, last_epoch)


def get_inverse_sqrt_schedule(optimizer: Optimizer, num_warmup_steps: int, timescale: int | None = None,
                              last_epoch: int = -1) -> LambdaLR:
    timescale = timescale if timescale is not None else (num_warmup_steps or 10_000)
    factor = partial(_factor_inverse_sqrt, num_warmup_steps=num_warmup_steps, timescale=timescale)
    return LambdaLR(optimizer, factor, last_epoch=last_epoch)


def get_cosine_with_min_lr_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int, num_training_steps: int,
                                                num_cycles: float = 0.5, last_epoch: int = -1,
                                                min_lr: float | None = None,
                                                min_lr_rate: float | None = None) -> LambdaLR:
    if (min_lr is None) == (min_lr_rate is None):
        raise ConfigError("cosine_with_min_lr: set exactly one of `min_lr` or `min_lr_rate` "
                          "(through lr_scheduler_kwargs)")
    if min_lr is not None:
        min_lr_rate = min_lr / optimizer.defaults["lr"]
    factor = partial(_factor_cosine, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps,
                     num_cycles=num_cycles, min_lr_rate=min_lr_rate)
    return LambdaLR(optimizer, factor, last_epoch)


def get_wsd_schedule(optimizer: Optimizer, num_warmup_steps: int, num_stable_steps: int, num_decay_steps: int,
                     min_lr_ratio: float = 0, num_cycles: float = 0.5, last_epoch: int = -1) -> LambdaLR:
    factor = partial(_factor_wsd, num_warmup_steps=num_warmup_steps, num_stable_steps=num_stable_steps,
                     num_decay_steps=num_decay_steps, min_lr_ratio=min_lr_ratio, num_cycles=num_cycles)
    return LambdaLR(optimizer, factor, last_epoch)


def get_reduce_on_plateau_schedule(optimizer: Optimizer, **kwargs: Any) -> ReduceLROnPlateau:
    return ReduceLROnPlateau(optimizer, **kwargs)


TYPE_TO_SCHEDULER_FUNCTION = {
    SchedulerType.LINEAR: get_linear_schedule_with_warmup,
    SchedulerType.COSINE: get_cosine_schedule_with_warmup,
    SchedulerType.COSINE_WITH_RESTARTS: get_cosine_with_hard_restarts_schedule_with_warmup,
    SchedulerType.POLYNOMIAL: get_polynomial_decay_schedule_with_warmup,
    SchedulerType.CONSTANT: get_constant_schedule,
    SchedulerType.CONSTANT_WITH_WARMUP: get_constant_schedule_with_warmup,
    SchedulerType.INVERSE_SQRT: get_inverse_sqrt_schedule,
    SchedulerType.REDUCE_ON_PLATEAU: get_reduce_on_plateau_schedule,
    SchedulerType.COSINE_WITH_MIN_LR: get_cosine_with_min_lr_schedule_with_warmup,
    SchedulerType.WARMUP_STABLE_DECAY: get_wsd_schedule,
}


def get_scheduler(name: str | SchedulerType, optimizer: Optimizer, num_warmup_steps: int | None = None,
                  num_training_steps: int | None = None,
                  scheduler_specific_kwargs: dict[str, Any] | None = None) -> LRScheduler | ReduceLROnPlateau:
    """Build the schedule called `name`; the arguments each one needs are checked by name."""
    try:
        kind = SchedulerType(name)
    except ValueError:
        options = ", ".join(repr(m.value) for m in SchedulerType)
        raise ConfigError(f"get_scheduler: unknown scheduler {name!r}; expected one of {options}") from None
    build = TYPE_TO_SCHEDULER_FUNCTION[kind]
    extra = dict(scheduler_specific_kwargs or {})
    if kind is SchedulerType.CONSTANT:
        return build(optimizer)
    if kind is SchedulerType.REDUCE_ON_PLATEAU:
        return build(optimizer, **extra)
    if num_warmup_steps is None:
        raise ConfigError(f"get_scheduler: {kind.value!r} needs `num_warmup_steps`")
    if kind in (SchedulerType.CONSTANT_WITH_WARMUP, SchedulerType.INVERSE_SQRT):
        return build(optimizer, num_warmup_steps=num_warmup_steps)
    if kind is SchedulerType.WARMUP_STABLE_DECAY:
        return build(optimizer, num_warmup_steps=num_warmup_steps, **extra)
    if num_training_steps is None:
        raise ConfigError(f"get_scheduler: {kind.value!r} needs `num_training_steps`")
    return build(optimizer, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps, **extra)
