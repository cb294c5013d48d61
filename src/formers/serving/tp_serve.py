"""`formers serve --tensor-parallel-size N`: one model split over N processes of this host.

The `formers serve` process is rank 0: it starts ranks 1..N-1 as subprocesses (`python -m
formers.serving.tp_serve SPEC`, with the environment variables torchrun would set), joins the process group
(gloo on CPU, NCCL with one GPU per rank), loads its shards with tp_plan="auto" and serves HTTP; the others
load theirs and follow its engine step by step (tp_engine.py).

Failure handling, so that nothing hangs: collectives time out after --tp-timeout seconds; rank 0 notices a
dead rank at its next step or heartbeat (a collective fails) or when the rank's process exits (a watchdog
thread), stops the HTTP server and `formers serve` exits with an error naming the rank. A rank that dies
while the others start up ends the start-up at once. The other ranks exit when rank 0 sends STOP (its
shutdown), when a collective with it fails, or when the rank-0 process dies (Linux parent-death signal).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..distributed.group import RankInfo, init_from_env
from ..errors import ConfigError, DistributedError, FormersError


def serve_tensor_parallel(args: argparse.Namespace) -> None:
    """`formers serve` with --tensor-parallel-size > 1 (args: the serve parser's namespace)."""
    import uvicorn

    from ..cli import _engine_config
    from .http import app_for_engine
    from .tp_engine import Channel, LeaderEngine, TensorParallelAsyncEngine

    size = args.tensor_parallel_size
    if size < 1:
        raise ConfigError(f"--tensor-parallel-size: expected an integer >= 1, got {size}")
    if not args.tp_timeout > 0:
        raise ConfigError(f"--tp-timeout: expected a number of seconds > 0, got {args.tp_timeout}")
    spec = {"model": args.model, "dtype": args.dtype, "device": args.device, "backend": _backend(args.device, size),
            "engine": dataclasses.asdict(_engine_config(args)), "timeout_s": args.tp_timeout,
            "seed": int(torch.randint(0, 2**62, (1,))), "world_size": size}
    ranks = Ranks(spec)
    clean = False
    try:
        engine, tokenizer, info = build_rank_engine(spec, rank_env(0, size, ranks.port))
        ranks.started()
        leader = LeaderEngine(engine, Channel(info, args.tp_timeout), heartbeat_s=min(2.0, args.tp_timeout / 4))
        async_engine = TensorParallelAsyncEngine(leader)
        app = app_for_engine(async_engine, tokenizer, args.served_model_name or spec["model"], api_key=args.api_key)
        server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                                               timeout_graceful_shutdown=5))
        leader.on_failure = lambda exc: setattr(server, "should_exit", True)
        ranks.on_lost = leader.fail
        server.run()  # until SIGINT/SIGTERM (re-raised after the graceful shutdown) or a failure
        async_engine.shutdown()  # already done by the app's lifespan, which sent STOP to the other ranks
        if leader.failure is not None:
            raise DistributedError(f"formers serve stopped: {leader.failure}")
        clean = True
    finally:
        ranks.stop(timeout=30.0 if clean else 3.0)
        if clean:  # after a failure, leave the broken group to the process exit (destroying it may wait)
            dist.destroy_process_group()


def _backend(device: str | None, size: int) -> str:
    if device is None or str(device).startswith("cpu"):
        return "gloo"
    if device == "auto" and not torch.cuda.is_available():
        return "gloo"
    if str(device).startswith("cuda") or device == "auto":
        if torch.cuda.device_count() < size:
            raise ConfigError(f"--tensor-parallel-size {size} with --device {device}: NCCL needs one GPU per rank, "
                              f"but {torch.cuda.device_count()} are visible")
        return "nccl"
    raise ConfigError(f"--device: tensor-parallel serving runs on cpu (gloo) or cuda (NCCL), got {device!r}")


def rank_env(rank: int, size: int, port: int) -> dict[str, str]:
    """What torchrun would set for `rank` of a one-host job."""
    return {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(size), "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port)}


def build_rank_engine(spec: dict[str, Any], env: dict[str, str]) -> tuple[Any, Any, RankInfo]:
    """Join the group as the rank `env` names, load its shards and build its LLMEngine (seeded like every
    other rank's, so unseeded requests sample the same tokens everywhere). Returns (engine, tokenizer, info)."""
    from ..cli import _load
    from .engine import EngineConfig, LLMEngine

    os.environ.update(env)
    if spec["backend"] == "gloo" and "OMP_NUM_THREADS" not in os.environ:  # share the cores between the ranks
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // spec["world_size"]))
    info = init_from_env(spec["backend"], spec["timeout_s"])
    names = argparse.Namespace(model=spec["model"], dtype=spec["dtype"], device=spec["device"])
    model, tokenizer = _load(names, tp_plan="auto")
    spec["model"] = names.model  # the bundled model's name when none was given
    torch.manual_seed(spec["seed"])
    return LLMEngine(model, tokenizer, EngineConfig(**spec["engine"])), tokenizer, info


class Ranks:
    """Ranks 1..N-1 as subprocesses of rank 0, watched by a thread (see the module docstring)."""

    def __init__(self, spec: dict[str, Any]):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        source = str(Path(__file__).resolve().parents[2])  # formers importable in the children as here
        path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
        self.procs = [subprocess.Popen([sys.executable, "-m", "formers.serving.tp_serve", json.dumps(spec)],
                                       env={**os.environ, **rank_env(rank, spec["world_size"], self.port),
                                            "PYTHONPATH": path, "FORMERS_TP_PARENT": str(os.getpid())})
                      for rank in range(1, spec["world_size"])]
        self.on_lost: Callable[[DistributedError], None] | None = None
        self._running = False
        self._stopping = threading.Event()
        threading.Thread(target=self._watch, name="formers-tp-watchdog", daemon=True).start()

    def started(self) -> None:
        self._running = True

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            for rank, proc in enumerate(self.procs, start=1):
                code = proc.poll()
                if code is None or self._stopping.is_set():
                    continue
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code} (its output is above)"
                error = DistributedError(f"tensor-parallel rank {rank} of {len(self.procs) + 1} {how}")
                if not self._running:  # rank 0 may be waiting for it in a collective: end the start-up now
                    print(f"formers: error: {error} while the ranks were starting", file=sys.stderr, flush=True)
                    self.stop()
                    os._exit(2)
                if self.on_lost is not None:
                    self.on_lost(error)
                return

    def stop(self, timeout: float = 30.0) -> None:
        """Wait for the ranks to exit (they do after STOP or once the group is broken), then kill stragglers."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _die_with_parent() -> None:
    """Linux: get SIGTERM when rank 0's process dies, however it dies; exit now if it already has."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != os.environ.get("FORMERS_TP_PARENT"):
        sys.exit(2)


def follower_main(spec_json: str) -> int:
    """Ranks > 0: load, then follow rank 0's engine until it stops."""
    from .tp_engine import Channel, follow

    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches every rank; rank 0 decides when to stop
    spec = json.loads(spec_json)
    rank = os.environ.get("RANK", "?")
    try:
        engine, _, info = build_rank_engine(spec, {})
        follow(engine, Channel(info, spec["timeout_s"]))
    except FormersError as exc:
        print(f"formers serve: error on tensor-parallel rank {rank}: {exc}", file=sys.stderr, flush=True)
        return 2
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(follower_main(sys.argv[1]))
