"""set_seed draws the same random numbers as transformers.set_seed."""
from __future__ import annotations

import random

import numpy as np
import torch
import transformers

from formers.trainer_utils import set_seed


def _draws():
    probs = torch.softmax(torch.arange(50, dtype=torch.float) / 10, dim=-1).expand(4, 50)
    return (torch.multinomial(probs, 1).flatten().tolist(), torch.rand(3).tolist(), random.random(),
            np.random.rand())


def test_same_draws_as_transformers():
    for seed in (0, 42, 1234):
        transformers.set_seed(seed)
        theirs = _draws()
        set_seed(seed)
        assert _draws() == theirs


def test_deterministic_flag():
    previous = torch.are_deterministic_algorithms_enabled()
    try:
        set_seed(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(previous)
