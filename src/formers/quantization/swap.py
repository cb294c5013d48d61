"""Putting a quantization package's linear layers in place of a loaded model's (bitsandbytes.py, quanto.py)."""
from __future__ import annotations

from typing import Callable

from torch import nn


def output_head_names(model: nn.Module) -> list[str]:
    """The output head's module name(s): 4.45's quantizers keep the head (and what it is tied to) in full precision."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [name for name, module in model.named_modules() if head is not None and module is head]


def reference_kind(model: nn.Module, name: str) -> str:
    """How transformers 4.45 holds the layer named `name` of this model: "linear" (an nn.Linear), "conv1d" or
    "parameter" (the model class's `reference_layer_kinds`)."""
    kinds = getattr(model, "reference_layer_kinds", {})
    return next((kind for part, kind in kinds.items() if part in name), "linear")


def swap_linears(model: nn.Module, keep: Callable[[str], bool], build: Callable[[str, nn.Linear], nn.Module],
                 reference_kinds: tuple[str, ...] = ("linear",)) -> int:
    """Replace every nn.Linear whose dotted name `keep` does not claim by `build(name, linear)`, in place, where
    transformers 4.45 holds that layer as one of `reference_kinds`; returns how many were replaced."""
    replaced = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and not keep(name) and reference_kind(model, name) in reference_kinds:
            model.set_submodule(name, build(name, module))
            replaced += 1
    return replaced
