"""AsyncEngine: the LLMEngine step loop in one background thread, fed and read from asyncio.

Only the engine thread touches the LLMEngine (it is not thread-safe): callers send commands (add,
abort) through a queue and the thread runs them between steps, so an abort frees the request's KV
blocks before the next step. Outputs go back to each request's asyncio.Queue on the loop that asked
for it, one `call_soon_threadsafe` per loop per step.

Failure model: an error from `add_request` (bad prompt, queue full) is raised to that caller only; an
error from `step()` fails every request in flight (the batch is one forward, so it cannot be pinned on
one request) and the loop keeps serving new ones. Cancelling the consumer of `generate()` (a client
that disconnected) aborts its request.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

from ..errors import FormersError

logger = logging.getLogger("formers.serving")
_THROUGHPUT_WINDOW_S = 5.0


class EngineDeadError(FormersError, RuntimeError):
    """The AsyncEngine was shut down (or its thread died): it takes no more requests."""


class EngineStepError(FormersError, RuntimeError):
    """LLMEngine.step() raised while this request was in the batch; the request was aborted."""


@dataclass
class _Stream:
    """Where one request's outputs go: a queue living on the caller's event loop."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue


class AsyncEngine:
    """Serve many asyncio callers from one LLMEngine; see the module docstring for the contract."""

    def __init__(self, engine: Any, idle_poll_s: float = 1.0):
        self.engine = engine
        self.idle_poll_s = idle_poll_s
        self._streams: dict[str, _Stream] = {}  # engine thread only
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = False
        self._dead: BaseException | None = None
        self._steps = 0
        self._tokens = 0
        self._recent: collections.deque[tuple[float, int]] = collections.deque()
        self._stats: dict[str, float] = {}
        self._snapshot()
        self._thread = threading.Thread(target=self._run, name="formers-engine-loop", daemon=True)
        self._thread.start()

    # -- caller side (any thread / event loop) -------------------------------------------------
    async def add_request(self, request_id: str, prompt_token_ids: list[int], params: Any,
                          sink: asyncio.Queue) -> None:
        """Add a request whose RequestOutputs (or the exception that ended it) will be put on `sink`, a
        queue of the running event loop; several requests may share one sink. Raises add_request's
        error (e.g. EngineOverloadedError, a bad prompt). The caller must abort() what it stops reading."""
        added: concurrent.futures.Future = concurrent.futures.Future()
        self._submit(("add", request_id, list(prompt_token_ids), params, _Stream(asyncio.get_running_loop(), sink),
                      added))
        try:
            await asyncio.wrap_future(added)
        except asyncio.CancelledError:
            self.abort(request_id)  # it may have been added just before the cancellation landed
            raise

    async def generate(self, request_id: str, prompt_token_ids: list[int], params: Any) -> AsyncIterator[Any]:
        """Yield the request's RequestOutputs until one is finished. Raises add_request's error before
        the first output; closing or cancelling the iterator (a client that went away) aborts it."""
        sink: asyncio.Queue = asyncio.Queue()
        await self.add_request(request_id, prompt_token_ids, params, sink)
        finished = False
        try:
            while not finished:
                item = await sink.get()
                if isinstance(item, BaseException):
                    finished = True  # the engine side already dropped the request
                    raise item
                finished = bool(item.finished)
                yield item
        finally:
            if not finished:
                self.abort(request_id)

    async def call(self, fn: Any) -> Any:
        """`fn(engine)` run on the engine thread between steps (work that needs the model, e.g. scoring a
        prompt); its result or exception comes back here."""
        done: concurrent.futures.Future = concurrent.futures.Future()
        self._submit(("call", fn, done))
        return await asyncio.wrap_future(done)

    def abort(self, request_id: str) -> None:
        """Abort a request (no-op when unknown or finished); its blocks are freed before the next step."""
        if not self._stopping:
            self._submit(("abort", request_id))

    def stats(self) -> dict[str, float]:
        """The engine's stats as of the end of its last step or command (plus steps, tokens, tokens/s)."""
        return dict(self._stats)

    @property
    def is_running(self) -> bool:
        return self._dead is None and not self._stopping and self._thread.is_alive()

    def shutdown(self, timeout: float | None = 30.0) -> None:
        """Stop the loop after the current step; requests still in flight fail with EngineDeadError."""
        self._stopping = True
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _submit(self, command: tuple) -> None:
        if self._stopping or self._dead is not None:
            raise EngineDeadError("the serving engine is shut down and takes no more requests")
        self._commands.put(command)
        self._wake.set()

    # -- engine thread -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stopping:
                self._run_commands()
                if not self.engine.has_unfinished_requests():
                    self._snapshot()
                    self._wake.wait(self.idle_poll_s)
                    self._wake.clear()
                    continue
                self._step()
        except BaseException as exc:  # a bug in this loop itself: fail everyone, refuse new work
            logger.exception("the serving engine loop died")
            self._dead = exc
        finally:
            self._fail_all(EngineDeadError("the serving engine shut down before the request finished"))
            self._refuse_pending_commands()

    def _run_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            if command[0] == "add":
                self._add(*command[1:])
            elif command[0] == "call":
                _call(self.engine, *command[1:])
            elif command[1] in self._streams:  # abort
                del self._streams[command[1]]
                self._abort_quietly(command[1])
                self._snapshot()  # its blocks are free now: show it without waiting for a step

    def _add(self, request_id: str, prompt: list[int], params: Any, stream: _Stream,
             added: concurrent.futures.Future) -> None:
        if not added.set_running_or_notify_cancel():
            return  # the caller went away before the request was added
        if request_id in self._streams:
            added.set_exception(ValueError(f"request_id {request_id!r} is already in flight"))
            return
        try:
            self.engine.add_request(request_id, prompt, params)
        except Exception as exc:
            added.set_exception(exc)
            return
        self._streams[request_id] = stream
        self._snapshot()  # before answering: a caller whose request was added sees it counted
        added.set_result(None)

    def _step(self) -> None:
        try:
            outputs = self.engine.step()
        except Exception as exc:
            logger.exception("LLMEngine.step() failed; failing the %d requests in flight", len(self._streams))
            error = EngineStepError(f"the engine step failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            self._fail_all(error)
            return
        self._steps += 1
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue, Any]]] = {}
        for output in outputs:
            self._tokens += len(output.new_token_ids)
            stream = self._streams.get(output.request_id)
            if stream is None:
                continue  # aborted by its caller in the meantime
            if output.finished:
                del self._streams[output.request_id]
            by_loop.setdefault(stream.loop, []).append((stream.queue, output))
        self._snapshot()  # before delivering: a caller that saw an output sees stats at least this fresh
        self._deliver(by_loop)

    def _deliver(self, by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue, Any]]]) -> None:
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_put_all, items)
            except RuntimeError:  # that event loop is closed: nobody will read these requests
                for _queue, item in items:
                    if not isinstance(item, BaseException) and not item.finished:
                        self._streams.pop(item.request_id, None)
                        self._abort_quietly(item.request_id)

    def _fail_all(self, error: BaseException) -> None:
        streams, self._streams = self._streams, {}
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue, Any]]] = {}
        for request_id, stream in streams.items():
            self._abort_quietly(request_id)
            by_loop.setdefault(stream.loop, []).append((stream.queue, error))
        self._snapshot()
        self._deliver(by_loop)

    def _refuse_pending_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            if command[0] in ("add", "call") and command[-1].set_running_or_notify_cancel():
                command[-1].set_exception(EngineDeadError("the serving engine is shut down"))

    def _abort_quietly(self, request_id: str) -> None:
        try:
            self.engine.abort(request_id)
        except Exception:  # an abort must never take the loop down
            logger.exception("LLMEngine.abort(%r) failed", request_id)

    def _snapshot(self) -> None:
        """Copy the engine's stats for readers on other threads (a dict swap is atomic)."""
        now = time.monotonic()
        self._recent.append((now, self._tokens))
        while len(self._recent) > 2 and now - self._recent[0][0] > _THROUGHPUT_WINDOW_S:
            self._recent.popleft()
        start_time, start_tokens = self._recent[0]
        rate = (self._tokens - start_tokens) / (now - start_time) if now > start_time else 0.0
        stats = dict(self.engine.stats())
        stats.update(engine_steps_total=self._steps, generation_tokens_total=self._tokens,
                     generation_tokens_per_second=rate)
        self._stats = stats


def _call(engine: Any, fn: Any, done: concurrent.futures.Future) -> None:
    if not done.set_running_or_notify_cancel():
        return
    try:
        done.set_result(fn(engine))
    except Exception as exc:
        done.set_exception(exc)


def _put_all(items: list[tuple[asyncio.Queue, Any]]) -> None:
    for target, item in items:
        target.put_nowait(item)
