"""Warnings that stay out of torch.compile's way: a log or `warnings.warn` call inside a traced function
breaks the graph (fatal under `fullgraph=True`), so while torch.compile traces, these say nothing."""
from __future__ import annotations

import logging
import warnings

import torch


def log_warning(logger: logging.Logger, message: str, *args: object) -> None:
    """`logger.warning(message, *args)`, skipped while torch.compile traces."""
    if not torch.compiler.is_compiling():
        logger.warning(message, *args)


def warn(message: str, category: type[Warning] = UserWarning, stacklevel: int = 2) -> None:
    """`warnings.warn`, skipped while torch.compile traces."""
    if not torch.compiler.is_compiling():
        warnings.warn(message, category, stacklevel=stacklevel + 1)
