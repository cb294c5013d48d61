"""Damaging a written checkpoint for the bad-input tests of test_gptq.py and test_awq.py."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from safetensors.torch import load_file, save_file


def edit_checkpoint(folder: Path, state_change: Callable | None = None, config_change: Callable | None = None) -> None:
    """Apply `state_change` to model.safetensors' tensors and `config_change` to config.json's
    quantization_config, in place."""
    if state_change:
        state = load_file(folder / "model.safetensors")
        state_change(state)
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    if config_change:
        config = json.loads((folder / "config.json").read_text())
        config_change(config["quantization_config"])
        (folder / "config.json").write_text(json.dumps(config))
