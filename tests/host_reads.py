"""Count host reads of tensor values (the CPU stand-in for device syncs) during a block of code.

Shared by the host-sync tests and bench/strategies.py.
"""
from __future__ import annotations

import collections
import contextlib

import torch

READS = ("item", "__bool__", "tolist", "cpu", "__int__", "__float__", "numpy")


@contextlib.contextmanager
def count_reads():
    counts = collections.Counter()
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def wrap(name):
        def read(self, *args, **kwargs):
            counts[name] += 1
            return originals[name](self, *args, **kwargs)
        return read
    for name in READS:
        setattr(torch.Tensor, name, wrap(name))
    try:
        yield counts
    finally:
        for name, method in originals.items():
            setattr(torch.Tensor, name, method)
