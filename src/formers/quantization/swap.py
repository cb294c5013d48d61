"""Putting a quantization package's linear layers in place of a loaded model's (bitsandbytes.py, quanto.py)."""
from __future__ import annotations

from typing import Callable

from torch import nn


def output_head_names(model: nn.Module) -> list[str]:
    """The output head's module name(s): 4.45's quantizers keep the head (and what it is tied to) in full precision."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [name for name, module in model.named_modules() if head is not None and module is head]


def swap_linears(model: nn.Module, keep: Callable[[str], bool], build: Callable[[nn.Linear], nn.Module]) -> int:
    """Replace every nn.Linear whose dotted name `keep` does not claim by `build(linear)`, in place; returns how
    many were replaced."""
    replaced = 0
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear) or keep(name):
            continue
        model.set_submodule(name, build(module))
        replaced += 1
    return replaced
