"""model_type -> family package (imported on first use), and aliases for checkpoints that name the
same architecture differently."""
from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import UnknownModelTypeError

FAMILIES: dict[str, str] = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2"}
ALIASES: dict[str, str] = {}


def family(model_type: str) -> ModuleType:
    """The family package for `model_type`; it exposes CONFIG_CLASS and MODEL_CLASSES by task."""
    name = FAMILIES.get(ALIASES.get(model_type, model_type))
    if name is None:
        raise UnknownModelTypeError(
            f"model_type {model_type!r} is not supported by formers; supported: {sorted(FAMILIES)}"
        )
    return importlib.import_module(f"formers.models.{name}")


def model_class(model_type: str, task: str) -> type:
    classes = family(model_type).MODEL_CLASSES
    if task not in classes:
        raise UnknownModelTypeError(f"model_type {model_type!r} has no {task!r} model in formers; "
                                    f"available: {sorted(classes)}")
    return classes[task]
