"""Start a real gloo process group on 127.0.0.1: one `tp_worker.py` subprocess per rank, given the
environment variables torchrun sets (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

WORKER = Path(__file__).resolve().parent / "tp_worker.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(job: dict, folder: Path, world_size: int = 2, worker: Path = WORKER) -> list[subprocess.Popen]:
    """Write `job` (its "out" set to `folder`) and start `world_size` ranks; returns their processes."""
    job = {"timeout": 30, **job, "out": str(folder)}
    job_file = folder / "job.json"
    job_file.write_text(json.dumps(job))
    port = free_port()
    procs = []
    for rank in range(world_size):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, str(worker), str(job_file)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs: list[subprocess.Popen], folder: Path, timeout: float = 120) -> list[dict]:
    """Wait for every rank (killing all after `timeout`); raise with their stderr if one failed."""
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=timeout))
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise AssertionError(f"rank {procs.index(proc)} did not finish within {timeout} s") from None
    failed = [(i, err) for i, (p, (_, err)) in enumerate(zip(procs, outputs)) if p.returncode != 0]
    if failed:
        raise AssertionError("\n".join(f"rank {i} failed:\n{err[-3000:]}" for i, err in failed))
    return [torch.load(folder / f"rank{rank}.pt", weights_only=False) for rank in range(len(procs))]


def run(job: dict, folder: Path, world_size: int = 2, timeout: float = 120, worker: Path = WORKER) -> list[dict]:
    return finish(start(job, folder, world_size, worker), folder, timeout)


def kill_one_rank(job: dict, folder: Path, group_timeout: float, worker: Path = WORKER) -> tuple[int, str, float]:
    """Start two ranks, wait until both wrote `ready{rank}`, SIGKILL rank 1 and wait for rank 0 to give up.
    Returns rank 0's exit status, its stderr and the seconds it took to exit after the kill."""
    procs = start(job, folder, worker=worker)
    try:
        deadline = time.monotonic() + 90
        while not all((folder / f"ready{r}").exists() for r in range(2)):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
                [p.communicate()[1][-2000:] for p in procs if p.poll() is not None]
            time.sleep(0.1)
        procs[1].kill()
        killed_at = time.monotonic()
        _, err = procs[0].communicate(timeout=group_timeout + 30)
        return procs[0].returncode, err, time.monotonic() - killed_at
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
