"""formers' bundled default model: a small Llama trained by formers itself on CPython's own docs.

The files live in `checkpoint/` inside the package (package data) and load by name, with no network:
`AutoModelForCausalLM.from_pretrained("formers/default")`. `recipe.py` reproduces them.
"""
from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_NAME = "formers/default"
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoint"

__all__ = ["DEFAULT_MODEL_NAME", "CHECKPOINT_DIR"]
