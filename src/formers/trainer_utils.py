"""Reproducibility and training helpers with transformers' names (`set_seed`, `get_last_checkpoint`,
`TrainOutput`, the NEFTune hook)."""
from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python's `random`, NumPy and torch (CPU and every CUDA device), as transformers 4.45 does.

    With `deterministic=True`, also make torch use deterministic algorithms where they exist.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)  # a no-op without CUDA
    if deterministic:
        torch.use_deterministic_algorithms(True)


# --- training helpers (names as in transformers.trainer_utils) -------------------------------------
PREFIX_CHECKPOINT_DIR = "checkpoint"
TRAINER_STATE_NAME = "trainer_state.json"  # written last: a checkpoint folder without it is incomplete
_CHECKPOINT_RE = re.compile(r"^" + PREFIX_CHECKPOINT_DIR + r"-(\d+)$")


class TrainOutput(NamedTuple):
    global_step: int
    training_loss: float
    metrics: dict[str, Any]


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step number of a `checkpoint-<step>` folder name, else None."""
    match = _CHECKPOINT_RE.match(Path(path).name)
    return int(match.group(1)) if match else None


def sorted_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders in `folder`, oldest step first.

    A folder counts only when it holds trainer_state.json, which the Trainer writes last and only
    inside a temporary folder that is renamed into place, so a save killed midway never shows here.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and checkpoint_step(p) is not None
             and (p / TRAINER_STATE_NAME).is_file()]
    return sorted(found, key=checkpoint_step)


def get_last_checkpoint(folder: str | os.PathLike) -> str | None:
    """The latest complete `checkpoint-<step>` folder in `folder`, or None."""
    checkpoints = sorted_checkpoints(folder)
    return str(checkpoints[-1]) if checkpoints else None


def neftune_post_forward_hook(module, input, output):
    """NEFTune (arXiv:2310.05914): in training mode, add uniform noise of magnitude alpha / sqrt(T * C)
    to the embeddings [B, T, C]; `module.neftune_noise_alpha` holds alpha. Evaluation is untouched."""
    if module.training:
        dims = torch.tensor(output.size(1) * output.size(2))
        magnitude = module.neftune_noise_alpha / torch.sqrt(dims)
        output = output + torch.zeros_like(output).uniform_(-magnitude, magnitude)
    return output


class EvalPrediction:
    """What `compute_metrics` receives: predictions and label ids (numpy), unpackable as a pair."""

    def __init__(self, predictions, label_ids, inputs=None):
        self.predictions, self.label_ids, self.inputs = predictions, label_ids, inputs

    def _fields(self) -> tuple:
        return (self.predictions, self.label_ids) if self.inputs is None else \
            (self.predictions, self.label_ids, self.inputs)

    def __iter__(self):
        return iter(self._fields())

    def __getitem__(self, index: int):
        return self._fields()[index]


class PredictionOutput(NamedTuple):
    """Trainer.predict's result: predictions and label_ids as numpy arrays (or None) and the metrics."""
    predictions: Any
    label_ids: Any
    metrics: dict[str, float] | None
