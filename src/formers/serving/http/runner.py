"""Run the choices of one API request on the AsyncEngine: sampling settings, limits, fan-out, timing.

A request with several prompts and/or `n` > 1 becomes one engine request per choice, all reading from
one queue; choice `i` of `n` gets seed `seed + i` so the choices differ yet repeat across calls. The
prompt is shared, so prefix caching computes it once.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, AsyncIterator

from ...errors import EngineOverloadedError, ServingError
from ..async_engine import EngineDeadError, EngineStepError
from .errors import APIError, bad_request
from .metrics import ServerMetrics
from .protocol import SamplingFields


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def resolve_max_tokens(requested: int | None, prompt_len: int, max_model_len: int, param: str) -> int:
    """The output budget: what was asked for, or all the room the context has left; 400 when it does
    not fit."""
    room = max_model_len - prompt_len
    if room <= 0 or (requested is not None and requested > room):
        asked = prompt_len + (requested or 0)
        raise APIError(400, f"This model's maximum context length is {max_model_len} tokens. However, you "
                            f"requested {asked} tokens ({prompt_len} in the prompt, {requested or 0} for the "
                            f"completion). Please reduce the prompt or the completion length.",
                       param=param, code="context_length_exceeded")
    return room if requested is None else requested


SAMPLING_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}


def sampling_defaults(generation_config: Any) -> dict[str, float]:
    """The sampling settings a request does not set: the model's generation_config.json values where it
    sets them (a checkpoint's recommended repetition_penalty, temperature, ...), else OpenAI's neutral
    ones (as vLLM does)."""
    own = generation_config.to_diff_dict() if generation_config is not None else {}
    return {name: own[name] if own.get(name) is not None else neutral for name, neutral in SAMPLING_DEFAULTS.items()}


def sampling_params(request: SamplingFields, max_tokens: int, vocab_size: int, logprobs: int | None,
                    seed: int | None, defaults: dict[str, float] = SAMPLING_DEFAULTS, grammar: Any = None) -> Any:
    """The engine's SamplingParams for one choice (n is always 1: choices are separate requests);
    `grammar`: the reply's structured-output grammar (http/structured.py), if any."""
    from ..params import SamplingParams

    given = {name: getattr(request, name) for name in SAMPLING_DEFAULTS}
    chosen = {name: defaults[name] if value is None else value for name, value in given.items()}
    chosen["top_k"] = max(int(chosen["top_k"]), 0)  # vLLM's -1 means off, as 0 does here
    bias = {int(t): v for t, v in request.logit_bias.items()} if request.logit_bias else None
    try:
        params = SamplingParams(
            n=1, max_tokens=max_tokens, presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty, logit_bias=bias, seed=seed, stop=request.stop_list(),
            stop_token_ids=list(request.stop_token_ids or []), ignore_eos=request.ignore_eos, logprobs=logprobs,
            grammar=grammar, **chosen)
        params.validate(vocab_size)  # token ids of logit_bias / stop_token_ids against the vocabulary
    except ServingError as exc:
        field = str(exc).split(":", 1)[0].removeprefix("SamplingParams.")
        raise bad_request(str(exc), param=field, code="invalid_value") from None
    return params


def choice_seed(seed: int | None, index: int) -> int | None:
    return None if seed is None else seed + index


def overloaded_error(exc: BaseException) -> APIError | None:
    """429 when the engine's waiting queue is full, 503 when the engine is down."""
    if isinstance(exc, EngineOverloadedError):
        return APIError(429, f"the server is overloaded: {exc}; retry later", code="engine_overloaded",
                        headers={"Retry-After": "1"})
    if isinstance(exc, EngineDeadError):
        return APIError(503, str(exc), code="engine_unavailable")
    if isinstance(exc, EngineStepError):
        return APIError(500, str(exc), code="engine_error", type_="server_error")
    return None


class ChoiceGroup:
    """The engine requests behind one API call; iterate for `(choice index, RequestOutput)` pairs."""

    def __init__(self, engine: Any, metrics: ServerMetrics, base_id: str,
                 jobs: list[tuple[list[int], Any]]):
        self.engine, self.metrics, self.base_id, self.jobs = engine, metrics, base_id, jobs
        self.arrival = time.monotonic()
        self.sink: asyncio.Queue = asyncio.Queue()
        self.request_ids = [f"{base_id}-{i}" for i in range(len(jobs))]
        self.unfinished: set[str] = set()
        self._last_token_time: dict[int, float] = {}

    async def start(self) -> None:
        """Add every choice; if one is refused, abort the others and raise the matching APIError."""
        adds = [self.engine.add_request(rid, prompt, params, self.sink)
                for rid, (prompt, params) in zip(self.request_ids, self.jobs)]
        results = await asyncio.gather(*adds, return_exceptions=True)
        self.unfinished = {rid for rid, r in zip(self.request_ids, results) if not isinstance(r, BaseException)}
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            self.abort()
            raise self._as_api_error(failure)

    def _as_api_error(self, exc: BaseException) -> BaseException:
        mapped = overloaded_error(exc)
        if mapped is not None:
            return mapped
        if isinstance(exc, ValueError):  # the engine refused the prompt or settings
            return bad_request(str(exc))
        return exc

    async def outputs(self) -> AsyncIterator[tuple[int, Any]]:
        """Outputs of all choices as they come; always aborts what it did not read to the end."""
        index = {rid: i for i, rid in enumerate(self.request_ids)}
        try:
            while self.unfinished:
                item = await self.sink.get()
                if isinstance(item, BaseException):
                    raise self._as_api_error(item)
                if item.request_id not in self.unfinished:
                    continue
                if item.finished:
                    self.unfinished.discard(item.request_id)
                    self.metrics.request_finished(item.finish_reason or "unknown")
                self._observe(index[item.request_id], len(item.new_token_ids))
                yield index[item.request_id], item
        finally:
            self.abort()

    def _observe(self, index: int, new_tokens: int) -> None:
        """TTFT for a choice's first token; each later token's share of the gap since the last output."""
        if not new_tokens:
            return
        now = time.monotonic()
        last = self._last_token_time.get(index)
        if last is None:
            self.metrics.ttft.observe(now - self.arrival)
            last, new_tokens = now, new_tokens - 1
        for _ in range(new_tokens):
            self.metrics.itl.observe((now - last) / new_tokens)
        self._last_token_time[index] = now

    def abort(self) -> None:
        for rid in self.unfinished:
            self.engine.abort(rid)
        self.unfinished = set()


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens}}
