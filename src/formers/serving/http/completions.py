"""POST /v1/completions: text (or token-id) prompts in, `text_completion` objects or SSE chunks out."""
from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

from fastapi import Request
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse

from ...errors import ServingError
from ..prompt_logprobs import prompt_logprobs
from .errors import APIError, bad_request
from .logprobs import completion_logprobs, echo_logprobs, merge_completion_logprobs
from .protocol import CompletionRequest
from .runner import (
    ChoiceGroup,
    choice_seed,
    new_id,
    resolve_max_tokens,
    sampling_params,
    usage,
)
from .state import ServerState, until_disconnect
from .structured import reply_grammar


def _prompt_ids(state: ServerState, prompt: Any) -> list[int]:
    if isinstance(prompt, str):
        return list(state.tokenizer(prompt)["input_ids"])
    state.check_token_ids(prompt, "prompt")
    return list(prompt)


def _jobs(state: ServerState, request: CompletionRequest, prompts: list[list[int]],
          grammar: Any) -> list[tuple[list[int], Any]]:
    jobs = []
    for ids in prompts:
        max_tokens = resolve_max_tokens(request.max_tokens, len(ids), state.max_model_len, "max_tokens")
        for i in range(request.n):
            params = sampling_params(request, max_tokens, state.vocab_size, request.logprobs,
                                     choice_seed(request.seed, i), state.sampling_defaults, grammar)
            jobs.append((ids, params))
    return jobs


async def create_completion(state: ServerState, request: CompletionRequest, http_request: Request):
    state.check_model(request.model)
    if request.suffix:
        raise bad_request("suffix is not supported", param="suffix")
    if request.best_of is not None and request.best_of != request.n:
        raise bad_request("best_of other than n is not supported", param="best_of")
    prompts = [_prompt_ids(state, p) for p in request.prompts()]
    grammar = await reply_grammar(state, request)
    jobs = _jobs(state, request, prompts, grammar)
    echo = _Echo([state.tokenizer.decode(ids) if request.echo else "" for ids in prompts],
                 await _prompt_logprobs(state, request, prompts))
    group = ChoiceGroup(state.engine, state.metrics, new_id("cmpl"), jobs)
    await group.start()
    if request.stream:
        return EventSourceResponse(_stream(state, request, group, prompts, echo))
    choices = await until_disconnect(http_request, _collect(state, request, group, prompts, echo))
    return JSONResponse(choices)


@dataclass
class _Echo:
    """What `echo` puts before each prompt's choices: its text and, with logprobs, its tokens' logprobs."""

    texts: list[str]
    logprobs: list[dict | None]

    def logprobs_of(self, prompt: int) -> dict | None:
        """A fresh copy (choices of one prompt extend theirs separately)."""
        part = self.logprobs[prompt]
        return None if part is None else merge_completion_logprobs(None, part)


async def _prompt_logprobs(state: ServerState, request: CompletionRequest, prompts: list[list[int]]) -> list:
    """Per prompt: its logprobs in the completions shape when echo and logprobs are both asked, else None."""
    if not request.echo or request.logprobs is None:
        return [None] * len(prompts)
    parts = []
    for ids in prompts:
        try:
            scored = await state.engine.call(functools.partial(prompt_logprobs, prompt=ids, top=request.logprobs))
        except ServingError as exc:
            raise bad_request(str(exc), param="echo") from None
        parts.append(echo_logprobs(state.pieces, ids, scored))
    return parts


def _header(state: ServerState, group: ChoiceGroup, obj: str = "text_completion") -> dict:
    return {"id": group.base_id, "object": obj, "created": int(time.time()), "model": state.model_name}


async def _collect(state: ServerState, request: CompletionRequest, group: ChoiceGroup,
                   prompts: list[list[int]], echo: _Echo) -> dict:
    n = request.n
    echo_texts = echo.texts
    finals: dict[int, Any] = {}
    logprobs: dict[int, dict | None] = {i: echo.logprobs_of(i // n) for i in range(len(prompts) * n)
                                        if echo.logprobs[i // n] is not None}
    offsets = {i: len(echo_texts[i // n]) for i in range(len(prompts) * n)}
    async for index, output in group.outputs():
        if request.logprobs is not None and output.new_logprobs:
            part = completion_logprobs(state.pieces, output.new_logprobs, offsets[index])
            offsets[index] += sum(len(t) for t in part["tokens"])
            logprobs[index] = merge_completion_logprobs(logprobs.get(index), part)
        if output.finished:
            finals[index] = output
    choices = [{"index": i, "text": echo_texts[i // n] + finals[i].text,
                "logprobs": logprobs.get(i, _empty_logprobs()) if request.logprobs is not None else None,
                "finish_reason": finals[i].finish_reason} for i in sorted(finals)]
    return {**_header(state, group), "choices": choices, "usage": _usage(finals, prompts, n)}


def _empty_logprobs() -> dict:
    return {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}


def _usage(finals: dict[int, Any], prompts: list[list[int]], n: int) -> dict:
    """Each prompt counts once, however many choices it has."""
    generated = sum(len(out.token_ids) for out in finals.values())
    cached = sum(finals[p * n].cached_prompt_tokens or 0 for p in range(len(prompts)) if p * n in finals)
    return usage(sum(len(ids) for ids in prompts), generated, cached)


async def _stream(state: ServerState, request: CompletionRequest, group: ChoiceGroup,
                  prompts: list[list[int]], echo: _Echo) -> AsyncIterator[str]:
    n = request.n
    echo_texts = echo.texts
    pending_logprobs = {i: echo.logprobs_of(i // n) for i in range(len(prompts) * n)
                        if echo.logprobs[i // n] is not None}
    header = _header(state, group)
    usage_null = {"usage": None} if request.include_usage() else {}
    pending_echo = {i: echo_texts[i // n] for i in range(len(prompts) * n) if echo_texts[i // n]}
    offsets = {i: len(echo_texts[i // n]) for i in range(len(prompts) * n)}
    finals: dict[int, Any] = {}
    try:
        async for index, output in group.outputs():
            text = pending_echo.pop(index, "") + output.new_text
            logprobs = None
            if request.logprobs is not None and output.new_logprobs:
                logprobs = completion_logprobs(state.pieces, output.new_logprobs, offsets[index])
                offsets[index] += sum(len(t) for t in logprobs["tokens"])
            if index in pending_logprobs:  # the prompt's, in the chunk that echoes it
                head = pending_logprobs.pop(index)
                logprobs = head if logprobs is None else merge_completion_logprobs(head, logprobs)
            if output.finished:
                finals[index] = output
            if text or logprobs or output.finished:
                choice = {"index": index, "text": text, "logprobs": logprobs,
                          "finish_reason": output.finish_reason if output.finished else None}
                yield json.dumps({**header, "choices": [choice], **usage_null})
        if request.include_usage():
            yield json.dumps({**header, "choices": [], "usage": _usage(finals, prompts, n)})
    except APIError as exc:
        state.metrics.request_failed(exc.status)
        yield json.dumps(exc.body())
    finally:
        group.abort()  # a client that went away: free its blocks now, not when the generator is collected
    yield "[DONE]"
