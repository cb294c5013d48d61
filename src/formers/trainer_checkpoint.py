"""Trainer checkpoints: write a `checkpoint-<step>` folder atomically, read it back, rotate old ones.

A checkpoint is written into `tmp-checkpoint-<step>` (a name `get_last_checkpoint` never matches),
trainer_state.json last, flushed, then switched into place in one step (an atomic exchange when a
`checkpoint-<step>` is saved again, see loading/swap.py). Rotation renames a checkpoint out of the
`checkpoint-<step>` names before deleting it. So a process killed at any point leaves only complete
checkpoints under checkpoint names, plus `tmp-checkpoint-*` leftovers that the next save removes.
Everything is read back with `torch.load(weights_only=True)`: no pickled code.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .errors import CheckpointError
from .loading.swap import fsync_folder, recover_folder, replace_folder
from .trainer_utils import PREFIX_CHECKPOINT_DIR, TRAINER_STATE_NAME, sorted_checkpoints

OPTIMIZER_NAME = "optimizer.pt"
SCHEDULER_NAME = "scheduler.pt"
RNG_STATE_NAME = "rng_state.pth"
TRAINING_ARGS_NAME = "training_args.json"
TMP_PREFIX = "tmp-" + PREFIX_CHECKPOINT_DIR


def write_checkpoint(output_dir: str | os.PathLike, step: int, write_payload: Callable[[Path], None],
                     write_state: Callable[[Path], None]) -> Path:
    """Write `checkpoint-<step>`: payload files, then the trainer state, then one rename."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in output_dir.glob(f"{TMP_PREFIX}-*"):  # left by a save that was killed
        shutil.rmtree(stale, ignore_errors=True)
    final = output_dir / f"{PREFIX_CHECKPOINT_DIR}-{step}"
    tmp = output_dir / f"{TMP_PREFIX}-{step}"
    recover_folder(final)
    tmp.mkdir()
    write_payload(tmp)
    write_state(tmp)
    fsync_folder(tmp, files=True)
    previous = replace_folder(tmp, final)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    return final


def rotate_checkpoints(output_dir: str | os.PathLike, save_total_limit: int | None, keep: str | None = None) -> None:
    """Delete the oldest complete checkpoints beyond `save_total_limit`, never `keep` (the best one)
    nor the newest."""
    if save_total_limit is None:
        return
    checkpoints = sorted_checkpoints(output_dir)
    limit = save_total_limit + (1 if keep is not None and save_total_limit == 1 else 0)
    excess = len(checkpoints) - limit
    newest = checkpoints[-1] if checkpoints else None
    for path in checkpoints:
        if excess <= 0:
            break
        if path == newest or (keep is not None and path == Path(keep)):
            continue
        doomed = path.with_name(f"{TMP_PREFIX}-removed-{path.name}")  # no longer a checkpoint, then gone
        shutil.rmtree(doomed, ignore_errors=True)  # left by a rotation that was killed
        os.replace(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        excess -= 1


# --- random number generator states -----------------------------------------------------------------
def capture_rng_state() -> dict:
    """Python, NumPy, torch CPU (and CUDA) generator states, as tensors and plain values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
             "cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    random.setstate(_as_tuples(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def load_file(folder: str | os.PathLike, name: str, map_location: torch.device | str = "cpu", required: bool = True):
    """torch.load(weights_only=True) of `folder/name`, with an error naming the file."""
    path = Path(folder) / name
    if not path.is_file():
        if required:
            raise CheckpointError(f"checkpoint {str(folder)!r} has no {name}; cannot resume from it")
        return None
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several unrelated types for bad files
        raise CheckpointError(f"{path}: cannot load ({type(exc).__name__}: {exc})") from exc


def state_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / TRAINER_STATE_NAME
