"""Activation functions by their config name (`hidden_act`)."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import ConfigError


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def _gelu_new(x: torch.Tensor) -> torch.Tensor:  # GPT-2's formula, spelled out as it was trained
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def _bloom_gelu(x: torch.Tensor) -> torch.Tensor:  # Bloom's tanh GELU with its rounded constant
    return x * 0.5 * (1.0 + torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x)))


def _relu_squared(x: torch.Tensor) -> torch.Tensor:  # Nemotron's "relu2"
    return torch.square(F.relu(x))


ACT2FN: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": F.silu, "swish": F.silu, "gelu": F.gelu, "relu": F.relu,
    "gelu_pytorch_tanh": _gelu_tanh, "gelu_new": _gelu_new, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
    "bloom_gelu": _bloom_gelu, "relu2": _relu_squared,
}


def get_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        return ACT2FN[name]
    except KeyError:
        raise ConfigError(f"config field 'hidden_act': unknown activation {name!r}; "
                          f"expected one of {sorted(ACT2FN)}") from None
