"""Atomic writes: of one file, and of a whole saved folder.

A file is written under a temporary name beside its target, flushed, and renamed into place.

A folder save (`save_folder_atomically`, used by `save_pretrained`) never loses the previous save:
the complete new save is written into a hidden sibling folder on the same filesystem, the entries of
the old folder that the save does not replace (tokenizer files, user files, subfolders) are hard-linked
into it, and the staged folder then takes the old one's place in one step (swap.py). A process killed
at any moment leaves the folder holding the old save or the new one, whole; what a killed save leaves
behind is removed by the next save of that folder.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from ..errors import CheckpointError
from .swap import STAGING, fsync_folder, pid_gone, recover_folder, replace_folder, work_path

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` in one rename.

    The path lies in a private hidden folder `.<name>.<pid>-<random>.tmp`, so helper files a writer
    makes next to its output (safetensors writes `.tmpXXXXXX` and renames it) stay in there too; the
    folders of writers that were killed are removed by the next write of the same target.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_temporaries(target)
    private = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}-", suffix=".tmp", dir=target.parent))
    tmp_path = private / target.name
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, target)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _remove_dead_temporaries(target: Path) -> None:
    """Temporaries of `target` left by writers that were killed (their names carry the writer's pid)."""
    prefix = f".{target.name}."
    for leftover in target.parent.iterdir():
        pid = leftover.name[len(prefix):].split("-", 1)[0]
        if not (leftover.name.startswith(prefix) and leftover.name.endswith(".tmp") and pid.isdigit()
                and pid_gone(int(pid))):
            continue
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


_CANNOT_RENAME = (errno.EBUSY, errno.EXDEV)  # a mount point; a folder on another filesystem than its parent


def save_folder_atomically(folder: str | os.PathLike, write_files: Callable[[Path], None],
                           replaces: Callable[[str], bool], marker: str) -> None:
    """Save into `folder` so that it holds either its previous content or the new save, never a mix.

    `write_files(path)` writes the whole save (with `marker`, what makes the folder loadable, last);
    `replaces(name)` says which entries of the old folder belong to the save being replaced (those
    are dropped; everything else is kept). Where no sibling folder can be made (read-only parent) or
    the folder cannot be renamed (a mount point), the files are written in place, `marker` removed
    first and written last, so an interrupted save leaves a folder that refuses to load.
    """
    target = Path(os.path.realpath(folder))
    if target.is_file():
        raise CheckpointError(f"save directory {str(target)!r} is a file; expected a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(target)
    staged = work_path(target, STAGING)
    try:
        staged.mkdir()
    except OSError as error:
        logger.warning("cannot create %s (%s); saving into %s in place, not atomically", staged, error, target)
        return _save_in_place(target, write_files, replaces, marker)
    cwd = _cwd_or_none()
    try:
        if target.is_dir():
            shutil.copymode(target, staged)
            _carry_over(target, staged, replaces)
        write_files(staged)
        fsync_folder(staged, files=True)
        previous = replace_folder(staged, target)
    except OSError as error:
        shutil.rmtree(staged, ignore_errors=True)
        if not os.path.isdir(target) or error.errno not in _CANNOT_RENAME:
            raise
        logger.warning("cannot rename %s (%s); saving into it in place, not atomically", target, error)
        return _save_in_place(target, write_files, replaces, marker)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    if cwd is not None and (cwd == str(target) or cwd.startswith(str(target) + os.sep)):
        os.chdir(cwd)  # our working directory was the old folder: follow the path to the new one
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


def _cwd_or_none() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None


def _carry_over(old: Path, staged: Path, replaces: Callable[[str], bool]) -> None:
    """Hard-link (copy where links fail) every entry of `old` that the new save does not replace."""
    for entry in os.scandir(old):
        if replaces(entry.name) or _is_temp_of_replaced(entry.name, replaces):
            continue
        destination = staged / entry.name
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), destination)
        elif entry.is_dir():
            shutil.copytree(entry.path, destination, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry.path, destination)


def _is_temp_of_replaced(name: str, replaces: Callable[[str], bool]) -> bool:
    """`.config.json.<random>.tmp`: a temporary file a killed in-place write left for a replaced file."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    stem = name[1:-len(".tmp")].rsplit(".", 1)[0]
    return replaces(stem)


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, destination, follow_symlinks=False)


def _save_in_place(target: Path, write_files: Callable[[Path], None], replaces: Callable[[str], bool],
                   marker: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    (target / marker).unlink(missing_ok=True)
    for path in target.iterdir():
        if replaces(path.name) and path.is_file():
            path.unlink()
    write_files(target)
