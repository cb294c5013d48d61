"""POST /v1/chat/completions: messages rendered by the model's chat template (tools included), the
reply as a `chat.completion` or `chat.completion.chunk` SSE stream, tool calls parsed out of it."""
from __future__ import annotations

import json
import time
from typing import Any, AsyncIterator

from fastapi import Request
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse

from ...errors import FormersError
from .errors import APIError, bad_request
from .logprobs import chat_logprobs
from .protocol import ChatCompletionRequest
from .runner import ChoiceGroup, choice_seed, new_id, resolve_max_tokens, sampling_params, usage
from .state import ServerState, until_disconnect
from .structured import reply_grammar
from .tools import ToolCallStreamGate, split_reply, template_message, template_tools


def _prompt_ids(state: ServerState, request: ChatCompletionRequest) -> list[int]:
    if state.tokenizer.chat_template is None:
        raise bad_request(f"the model {state.model_name!r} has no chat template; use /v1/completions",
                          param="messages", code="no_chat_template")
    messages = [template_message(m) for m in request.messages]
    try:
        return list(state.tokenizer.apply_chat_template(messages, tools=template_tools(request), tokenize=True,
                                                        add_generation_prompt=request.add_generation_prompt))
    except FormersError as exc:
        raise bad_request(f"the chat template could not render the messages: {exc}", param="messages") from None


def _engine_logprobs(request: ChatCompletionRequest) -> int | None:
    if request.top_logprobs is not None and not request.logprobs:
        raise bad_request("top_logprobs needs logprobs=true", param="top_logprobs")
    return (request.top_logprobs or 0) if request.logprobs else None


async def create_chat_completion(state: ServerState, request: ChatCompletionRequest, http_request: Request):
    state.check_model(request.model)
    ids = _prompt_ids(state, request)
    grammar = await reply_grammar(state, request)
    max_tokens = resolve_max_tokens(request.output_limit(), len(ids), state.max_model_len,
                                    "max_completion_tokens" if request.max_completion_tokens else "max_tokens")
    logprobs = _engine_logprobs(request)
    jobs = [(ids, sampling_params(request, max_tokens, state.vocab_size, logprobs, choice_seed(request.seed, i),
                                  state.sampling_defaults, grammar)) for i in range(request.n)]
    group = ChoiceGroup(state.engine, state.metrics, new_id("chatcmpl"), jobs)
    await group.start()
    if request.stream:
        return EventSourceResponse(_stream(state, request, group, len(ids)))
    return JSONResponse(await until_disconnect(http_request, _collect(state, request, group, len(ids))))


def _header(state: ServerState, group: ChoiceGroup, obj: str) -> dict:
    return {"id": group.base_id, "object": obj, "created": int(time.time()), "model": state.model_name}


def _usage(finals: dict[int, Any], prompt_len: int) -> dict:
    cached = finals[0].cached_prompt_tokens if 0 in finals else 0
    return usage(prompt_len, sum(len(out.token_ids) for out in finals.values()), cached or 0)


async def _collect(state: ServerState, request: ChatCompletionRequest, group: ChoiceGroup, prompt_len: int) -> dict:
    finals: dict[int, Any] = {}
    logprobs: dict[int, list] = {i: [] for i in range(request.n)}
    async for index, output in group.outputs():
        if request.logprobs and output.new_logprobs:
            logprobs[index] += chat_logprobs(state.pieces, output.new_logprobs)
        if output.finished:
            finals[index] = output
    choices = []
    for i in sorted(finals):
        content, calls = split_reply(finals[i].text) if request.tools_active() else (finals[i].text, [])
        message: dict = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        choices.append({"index": i, "message": message,
                        "logprobs": {"content": logprobs[i]} if request.logprobs else None,
                        "finish_reason": "tool_calls" if calls else finals[i].finish_reason})
    return {**_header(state, group, "chat.completion"), "choices": choices, "usage": _usage(finals, prompt_len)}


async def _stream(state: ServerState, request: ChatCompletionRequest, group: ChoiceGroup,
                  prompt_len: int) -> AsyncIterator[str]:
    header = _header(state, group, "chat.completion.chunk")
    usage_null = {"usage": None} if request.include_usage() else {}

    def chunk(index: int, delta: dict, finish_reason: str | None = None, logprobs: list | None = None) -> str:
        choice = {"index": index, "delta": delta, "logprobs": None if logprobs is None else {"content": logprobs},
                  "finish_reason": finish_reason}
        return json.dumps({**header, "choices": [choice], **usage_null})

    gates = {i: ToolCallStreamGate() for i in range(request.n)} if request.tools_active() else {}
    finals: dict[int, Any] = {}
    try:
        for i in range(request.n):
            yield chunk(i, {"role": "assistant", "content": ""})
        async for index, output in group.outputs():
            gate = gates.get(index)
            text = gate.feed(output.text) if gate else output.new_text
            logprobs = chat_logprobs(state.pieces, output.new_logprobs) if request.logprobs and output.new_logprobs \
                else None
            if text or logprobs:
                yield chunk(index, {"content": text}, logprobs=logprobs)
            if output.finished:
                finals[index] = output
                yield _final_chunk(chunk, index, output, gate)
        if request.include_usage():
            yield json.dumps({**header, "choices": [], "usage": _usage(finals, prompt_len)})
    except APIError as exc:
        state.metrics.request_failed(exc.status)
        yield json.dumps(exc.body())
    finally:
        group.abort()  # a client that went away: free its blocks now, not when the generator is collected
    yield "[DONE]"


def _final_chunk(chunk, index: int, output: Any, gate: ToolCallStreamGate | None) -> str:
    if gate is None:
        return chunk(index, {}, output.finish_reason)
    rest, calls = gate.finish(output.text)
    delta: dict = {"content": rest} if rest else {}
    if calls:
        delta["tool_calls"] = [{"index": k, **call} for k, call in enumerate(calls)]
    return chunk(index, delta, "tool_calls" if calls else output.finish_reason)
