"""The serving engine over a tensor-parallel model: every rank runs its own LLMEngine, in lockstep.

Rank 0 owns the HTTP server and the AsyncEngine; the other ranks hold the rest of the model's shards and
must run the very same forward passes. The engine is deterministic (scheduler, block manager, sampler), the
logits are identical on every rank once the LM head's all-gather has joined them, and every rank seeds its
sampling generators the same way, so replaying rank 0's requests on every rank keeps all engines in the
same state without sending a single token back:

    rank 0 (LeaderEngine)                         rank r > 0 (follow)
      add_request / abort / reset_prefix_cache      (waits in a collective, no CPU spent)
        -> run on rank 0's engine, and logged
      step():  send STEP + the log  ------------>   replay the log on its engine
               engine.step()   <== all-reduces ==>  engine.step()  (outputs thrown away)
      idle:    send IDLE (+ the log) every `heartbeat_s` so peers' collective timeouts never fire
      run_everywhere(fn): send CALL + the log + fn ->  replay the log; fn(engine)  (a forward outside
               fn(engine)      <== all-reduces ==>                          the steps: prompt logprobs)
      close(): send STOP  ---------------------->   return

Every message is two all-reduces (a [kind, size] header, then the pickled log) in which the other ranks
add zeros: a round trip, so rank 0 also learns within one heartbeat that a peer has died. A failed
collective raises DistributedError (formers.distributed.group); the leader then refuses all further work
and calls `on_failure` (the server stops and reports it).
"""
from __future__ import annotations

import functools
import logging
import pickle
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ..distributed.group import RankInfo, all_reduce_sum
from ..errors import DistributedError, ServingError
from .async_engine import AsyncEngine

logger = logging.getLogger("formers.serving")

STEP, IDLE, STOP, CALL = 1, 2, 3, 4


class Channel:
    """Rank 0 -> every rank messages (see the module docstring). They always travel over gloo on the CPU:
    under NCCL a side group is made (every rank must build its Channel at the same point), so a rank waiting
    for the next step sleeps in a socket read instead of spinning on a CUDA stream."""

    def __init__(self, info: RankInfo, timeout_s: float):
        self.info = info
        self.group = None if info.backend == "gloo" else \
            dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout_s))

    def send(self, kind: int, events: list[tuple]) -> None:
        """Rank 0: deliver (kind, events) to every other rank."""
        payload = pickle.dumps(events) if events else b""
        all_reduce_sum(torch.tensor([kind, len(payload)]), "the serving step message header", self.group)
        if payload:
            all_reduce_sum(torch.frombuffer(bytearray(payload), dtype=torch.uint8), "the serving step message",
                           self.group)

    def receive(self) -> tuple[int, list[tuple]]:
        """Ranks > 0: wait for rank 0's next message."""
        header = all_reduce_sum(torch.zeros(2, dtype=torch.int64), "the serving step message header", self.group)
        kind, size = header.tolist()
        if not size:
            return kind, []
        data = all_reduce_sum(torch.zeros(size, dtype=torch.uint8), "the serving step message", self.group)
        return kind, pickle.loads(data.numpy().tobytes())


def _apply(engine: Any, event: tuple) -> None:
    name, args, kwargs = event
    getattr(engine, name)(*args, **kwargs)


class LeaderEngine:
    """Rank 0's LLMEngine behind the interface AsyncEngine drives (add_request, abort, step,
    has_unfinished_requests, stats; other attributes are the engine's), mirroring it on every rank.
    Like LLMEngine it is driven from one thread; `close` may come from another (it takes the lock)."""

    def __init__(self, engine: Any, channel: Channel, heartbeat_s: float = 2.0,
                 on_failure: Callable[[DistributedError], None] | None = None):
        self.engine, self.channel, self.heartbeat_s, self.on_failure = engine, channel, heartbeat_s, on_failure
        self.failure: DistributedError | None = None
        self._events: list[tuple] = []
        self._lock = threading.Lock()
        self._last_sent = time.monotonic()
        self._closed = False

    def __getattr__(self, name: str) -> Any:  # max_model_len, vocab_size, model, config, ...
        return getattr(self.engine, name)

    def add_request(self, request_id: str, prompt_token_ids: list[int], *args: Any, **kwargs: Any) -> None:
        self._check_alive()
        event = ("add_request", (request_id, [int(t) for t in prompt_token_ids], *args), kwargs)
        try:
            pickle.dumps(event)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # the other ranks could not replay it
            raise ServingError(f"add_request: request {request_id!r} cannot be sent to the other tensor-parallel "
                               f"ranks (its parameters do not pickle: {exc})") from None
        self.engine.add_request(*event[1], **kwargs)  # raises first: a refused request is not replayed
        self._events.append(event)

    def abort(self, request_id: str) -> None:
        self.engine.abort(request_id)
        self._events.append(("abort", (request_id,), {}))

    def reset_prefix_cache(self) -> None:
        self.engine.reset_prefix_cache()
        self._events.append(("reset_prefix_cache", (), {}))

    def stats(self) -> dict[str, Any]:
        return self.engine.stats()

    def has_unfinished_requests(self) -> bool:
        """The engine's answer; while idle, also the heartbeat that keeps the other ranks' waits short."""
        busy = self.engine.has_unfinished_requests()
        if not busy and time.monotonic() - self._last_sent >= self.heartbeat_s:
            with self._lock:
                self._send(IDLE)
        return busy

    def run_everywhere(self, fn: Callable[[Any], Any]) -> Any:
        """fn(engine) on every rank, between steps; rank 0's result. For work on the model outside the
        engine's steps (a forward that rank 0 ran alone would wait forever for the others' shards)."""
        try:
            pickle.dumps(fn)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise ServingError(f"{fn!r} cannot be sent to the other tensor-parallel ranks: {exc}") from None
        with self._lock:
            self._send(CALL, [("call", (fn,), {})])
            try:
                return fn(self.engine)
            except DistributedError as exc:
                self.fail(exc)
                raise

    def step(self) -> list[Any]:
        with self._lock:
            self._send(STEP)
            try:
                return self.engine.step()
            except DistributedError as exc:
                self.fail(exc)
                raise

    def close(self) -> None:
        """Tell the other ranks to stop (after the AsyncEngine's thread has stopped stepping)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True  # first: ranks exiting after STOP are not a failure
            if self.failure is None:
                self.channel.send(STOP, self._events)

    def _check_alive(self) -> None:
        if self.failure is not None:
            raise self.failure
        if self._closed:
            raise ServingError("the tensor-parallel engine is closed")

    def _send(self, kind: int, extra: list[tuple] | None = None) -> None:
        self._check_alive()
        events, self._events = self._events + (extra or []), []
        try:
            self.channel.send(kind, events)
        except DistributedError as exc:
            self.fail(exc)
            raise
        self._last_sent = time.monotonic()

    def fail(self, exc: DistributedError) -> None:
        """Refuse all further work and report `exc` (once); ignored after close()."""
        if self.failure is None and not self._closed:
            self.failure = exc
            logger.error("tensor-parallel serving stops: %s", exc)
            if self.on_failure is not None:
                self.on_failure(exc)


def follow(engine: Any, channel: Channel) -> None:
    """Ranks > 0: replay rank 0's requests and step with it until it sends STOP (or a collective fails,
    which raises DistributedError). A step that raises anything else raised on rank 0 too (same state,
    same inputs): rank 0 fails those requests and aborts them, and so does this rank, via the replayed log."""
    while True:
        kind, events = channel.receive()
        call = events.pop()[1][0] if kind == CALL else None
        for event in events:
            try:
                _apply(engine, event)
            except Exception as exc:
                raise DistributedError(f"tensor-parallel serving: rank {channel.info.rank} could not replay "
                                       f"{event[0]} of rank 0 ({type(exc).__name__}: {exc}); the engines of the "
                                       "ranks differ (another model, tokenizer or engine configuration)") from exc
        if kind == STOP:
            return
        if kind in (STEP, CALL):
            try:
                engine.step() if kind == STEP else call(engine)
            except DistributedError:
                raise
            except Exception:
                logger.exception("%s failed on rank %d (as on rank 0)", "LLMEngine.step()" if kind == STEP else
                                 repr(call), channel.info.rank)
        elif kind != IDLE:
            raise DistributedError(f"tensor-parallel serving: rank {channel.info.rank} got message kind {kind} "
                                   "from rank 0; every rank must run the same formers version")


class TensorParallelAsyncEngine(AsyncEngine):
    """The AsyncEngine over a LeaderEngine: `call` runs on every rank, and shutting it down also stops the
    other ranks."""

    async def call(self, fn: Any) -> Any:
        return await super().call(functools.partial(_run_everywhere, fn=fn))

    def shutdown(self, timeout: float | None = 30.0) -> None:
        super().shutdown(timeout)
        try:
            self.engine.close()
        except DistributedError:
            pass  # the group is already broken: the leader has reported it


def _run_everywhere(leader: LeaderEngine, fn: Callable[[Any], Any]) -> Any:
    return leader.run_everywhere(fn)
