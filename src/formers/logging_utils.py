"""Logging for formers: transformers' `utils.logging` surface over the "formers" logger hierarchy, and
warnings that stay out of torch.compile's way.

Every formers module logs under "formers.<area>". The library root logger "formers" is configured on
first use of a function here: one stderr handler, level from FORMERS_VERBOSITY (debug/info/warning/error/
critical) or WARNING, and no propagation to the root logger (so `logging.basicConfig` does not print twice), as
transformers does for "transformers".

A log or `warnings.warn` call inside a traced function breaks torch.compile's graph (fatal under
`fullgraph=True`), so `log_warning` and `warn` say nothing while torch.compile traces.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import warnings

import torch

CRITICAL, FATAL, ERROR, WARNING, WARN, INFO, DEBUG, NOTSET = (
    logging.CRITICAL, logging.FATAL, logging.ERROR, logging.WARNING, logging.WARN, logging.INFO, logging.DEBUG,
    logging.NOTSET)
LIBRARY_NAME = "formers"
_LEVELS = {"detail": DEBUG, "debug": DEBUG, "info": INFO, "warning": WARNING, "error": ERROR, "critical": CRITICAL}
_ENV_VAR = "FORMERS_VERBOSITY"
_EXPLICIT_FORMAT = "[%(levelname)s|%(filename)s:%(lineno)s] %(asctime)s >> %(message)s"

_lock = threading.Lock()
_default_handler: logging.Handler | None = None
_progress_bar_enabled = True


def _root() -> logging.Logger:
    return logging.getLogger(LIBRARY_NAME)


def _env_level() -> int:
    value = os.environ.get(_ENV_VAR)
    if value and value.lower() not in _LEVELS:
        _root().warning("%s=%r is not a verbosity; expected one of %s", _ENV_VAR, value, ", ".join(_LEVELS))
    return _LEVELS.get((value or "warning").lower(), WARNING)


def _configure_root() -> None:
    """Give "formers" its stderr handler and default level once (idempotent, thread-safe)."""
    global _default_handler
    with _lock:
        if _default_handler is not None:
            return
        _default_handler = logging.StreamHandler(sys.stderr)
        _default_handler.flush = sys.stderr.flush
        root = _root()
        root.addHandler(_default_handler)
        root.setLevel(_env_level())
        root.propagate = False


def _reset_root() -> None:
    """Undo `_configure_root` (for tests): remove the handler, level NOTSET, propagate again."""
    global _default_handler
    with _lock:
        root = _root()
        if _default_handler is not None:
            root.removeHandler(_default_handler)
        _default_handler = None
        root.setLevel(NOTSET)
        root.propagate = True


def get_log_levels_dict() -> dict[str, int]:
    """Verbosity names accepted by FORMERS_VERBOSITY, mapped to logging levels."""
    return dict(_LEVELS)


def get_logger(name: str | None = None) -> logging.Logger:
    """The logger `name` (the library root "formers" when None), with the library configured."""
    _configure_root()
    return logging.getLogger(name or LIBRARY_NAME)


def get_verbosity() -> int:
    """The effective level of the "formers" logger (e.g. `formers.logging.WARNING`)."""
    _configure_root()
    return _root().getEffectiveLevel()


def set_verbosity(verbosity: int) -> None:
    """Set the level of the "formers" logger (one of the level constants of this module)."""
    _configure_root()
    _root().setLevel(verbosity)


def set_verbosity_debug() -> None:
    set_verbosity(DEBUG)


def set_verbosity_info() -> None:
    set_verbosity(INFO)


def set_verbosity_warning() -> None:
    set_verbosity(WARNING)


def set_verbosity_error() -> None:
    set_verbosity(ERROR)


def disable_default_handler() -> None:
    """Stop printing through formers' own stderr handler."""
    _configure_root()
    _root().removeHandler(_default_handler)


def enable_default_handler() -> None:
    """Print through formers' own stderr handler again."""
    _configure_root()
    _root().addHandler(_default_handler)


def add_handler(handler: logging.Handler) -> None:
    _configure_root()
    _root().addHandler(handler)


def remove_handler(handler: logging.Handler) -> None:
    _configure_root()
    _root().removeHandler(handler)


def disable_propagation() -> None:
    """Do not pass formers' records on to the root logger (the default)."""
    _configure_root()
    _root().propagate = False


def enable_propagation() -> None:
    """Pass formers' records on to the root logger too (disable the default handler to avoid doubles)."""
    _configure_root()
    _root().propagate = True


def enable_explicit_format() -> None:
    """Prefix every message of formers' handlers with level, file:line and time."""
    _configure_root()
    for handler in _root().handlers:
        handler.setFormatter(logging.Formatter(_EXPLICIT_FORMAT))


def reset_format() -> None:
    """Back to bare messages on formers' handlers."""
    _configure_root()
    for handler in _root().handlers:
        handler.setFormatter(None)


def is_progress_bar_enabled() -> bool:
    return _progress_bar_enabled


def enable_progress_bar() -> None:
    global _progress_bar_enabled
    _progress_bar_enabled = True


def disable_progress_bar() -> None:
    """Ask for no progress bars: `is_progress_bar_enabled()` turns False (the Trainer's bar does not read it yet)."""
    global _progress_bar_enabled
    _progress_bar_enabled = False


def log_warning(logger: logging.Logger, message: str, *args: object) -> None:
    """`logger.warning(message, *args)`, skipped while torch.compile traces."""
    if not torch.compiler.is_compiling():
        logger.warning(message, *args)


def warn(message: str, category: type[Warning] = UserWarning, stacklevel: int = 2) -> None:
    """`warnings.warn`, skipped while torch.compile traces."""
    if not torch.compiler.is_compiling():
        warnings.warn(message, category, stacklevel=stacklevel + 1)


__all__ = [
    "CRITICAL", "FATAL", "ERROR", "WARNING", "WARN", "INFO", "DEBUG", "NOTSET", "get_log_levels_dict", "get_logger",
    "get_verbosity", "set_verbosity", "set_verbosity_debug", "set_verbosity_info", "set_verbosity_warning",
    "set_verbosity_error", "disable_default_handler", "enable_default_handler", "add_handler", "remove_handler",
    "disable_propagation", "enable_propagation", "enable_explicit_format", "reset_format",
    "is_progress_bar_enabled", "enable_progress_bar", "disable_progress_bar", "log_warning", "warn",
]
