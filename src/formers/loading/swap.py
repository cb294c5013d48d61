"""Put a fully written folder in place of another in one step, so a reader sees the old or the new one.

On Linux, `renameat2(RENAME_EXCHANGE)` swaps two directory entries atomically: at every instant the
target path names a complete folder. Where that call is missing or the filesystem refuses it, the old
folder is renamed aside first (`.<name>.formers-previous-<pid>-<hex>`) and the new one renamed in;
between those two renames the target is briefly absent, and `recover_folder` (run by the next save)
renames the kept previous version back if a process died there.

Work folders carry the writer's pid in their names, so a later save removes only those of processes
that are gone (a killed save), never those of a save running in parallel.
"""
from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
import sys
from pathlib import Path

STAGING = "formers-staging"
PREVIOUS = "formers-previous"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTTY)


def _load_renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # libc without renameat2 (glibc < 2.28, some musl builds)
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()


def exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths atomically; False when this platform or filesystem cannot."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


def work_path(target: Path, kind: str) -> Path:
    """A fresh hidden sibling of `target` (same filesystem) named after it, the kind and this pid."""
    return target.with_name(f".{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def _work_folders(target: Path, kind: str) -> list[Path]:
    prefix = f".{target.name}.{kind}-"
    if not target.parent.is_dir():
        return []
    return [p for p in target.parent.iterdir() if p.name.startswith(prefix)]


def _owner_gone(path: Path) -> bool:
    """Whether the process named in a work folder's name has ended (or is this one)."""
    try:
        return pid_gone(int(path.name.rsplit("-", 2)[-2]))
    except ValueError:
        return True


def pid_gone(pid: int) -> bool:
    """Whether process `pid` has ended, or is this one. Off POSIX (no harmless probe) always True."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def recover_folder(target: Path) -> None:
    """Before a new save of `target`: if a save died between its two renames (target absent), put the
    kept previous version back; then remove the work folders that killed saves left behind."""
    kept = [p for p in _work_folders(target, PREVIOUS) if _owner_gone(p)]
    if not os.path.lexists(target) and kept:
        newest = max(kept, key=lambda p: p.stat().st_mtime)
        os.rename(newest, target)
        kept.remove(newest)
    for path in kept + [p for p in _work_folders(target, STAGING) if _owner_gone(p)]:
        shutil.rmtree(path, ignore_errors=True)


def replace_folder(staged: Path, target: Path) -> Path | None:
    """Make the complete folder `staged` appear at `target`. Returns where the previous folder now is
    (for the caller to delete), or None when there was none."""
    if not os.path.lexists(target):
        os.rename(staged, target)
        fsync_folder(target.parent)
        return None
    if exchange(staged, target):
        fsync_folder(target.parent)
        return staged
    aside = work_path(target, PREVIOUS)
    os.rename(target, aside)
    try:
        os.rename(staged, target)
    except BaseException:
        os.rename(aside, target)
        raise
    fsync_folder(target.parent)
    return aside


def fsync_folder(folder: Path, files: bool = False) -> None:
    """Flush a folder's entries (and, with `files`, its regular files) to disk; a no-op where the OS
    cannot open folders (Windows)."""
    if files:
        for path in folder.iterdir():
            if path.is_file() and not path.is_symlink():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
