"""Atomic writes.

A save never leaves a folder that loads as a valid but wrong model: every file is written to a
temporary name and renamed into place, and a folder's `config.json` (what makes it loadable) is
removed first and written last, so an interrupted save leaves a folder that refuses to load.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_folder_atomically(folder: str | os.PathLike, marker: str, write_files: Callable[[Path], None]) -> None:
    """Invalidate `folder` by removing `marker`, let `write_files(folder)` write the payload (each file
    atomically), then the caller writes `marker` last."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / marker).unlink(missing_ok=True)
    write_files(folder)
