"""What every handler needs: the engine, the tokenizer, the served model's name and limits, metrics."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, TypeVar

from fastapi import Request

from .errors import APIError, bad_request
from .logprobs import TokenPieces
from .metrics import ServerMetrics
from .runner import SAMPLING_DEFAULTS

T = TypeVar("T")


@dataclass
class ServerState:
    engine: Any                 # AsyncEngine
    tokenizer: Any
    model_name: str
    max_model_len: int
    vocab_size: int
    api_key: str | None = None
    grammars: Any = None        # the engine's SequenceGrammars: compiles (and caches) response formats
    sampling_defaults: dict[str, float] = field(default_factory=lambda: dict(SAMPLING_DEFAULTS))
    created: int = field(default_factory=lambda: int(time.time()))
    metrics: ServerMetrics = field(default_factory=ServerMetrics)

    def __post_init__(self) -> None:
        self.pieces = TokenPieces(self.tokenizer)

    def check_model(self, name: str) -> None:
        if name != self.model_name:
            raise APIError(404, f"The model `{name}` does not exist. This server serves `{self.model_name}`.",
                           param="model", code="model_not_found")

    def check_token_ids(self, ids: list[int], param: str) -> None:
        if any(not 0 <= t < self.vocab_size for t in ids):
            raise bad_request(f"{param} holds token ids outside the vocabulary [0, {self.vocab_size})",
                              param=param, code="invalid_value")


class ClientGone(Exception):
    """The client disconnected before the (non-streaming) answer was ready."""


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and so aborting its engine requests) if the client goes away."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    if task not in done:
        raise ClientGone()
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
