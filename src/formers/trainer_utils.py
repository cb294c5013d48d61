"""Reproducibility helpers with transformers' names."""
from __future__ import annotations

import random

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
