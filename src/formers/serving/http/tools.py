"""Tool calling for chat completions: tools into the chat template, tool calls out of the reply.

Parsing is formers.structured.tool_calls (Hermes `<tool_call>` blocks, Mistral `[TOOL_CALLS]`, Llama-3
JSON). While streaming, text that may be the start of a tool call is held back until the reply ends,
so a client never sees the raw call markup as content.
"""
from __future__ import annotations

import json
import uuid

from ...structured.tool_calls import parse_tool_calls
from .errors import bad_request
from .protocol import ChatCompletionRequest, ChatMessage

_MARKERS = ("<tool_call>", "[TOOL_CALLS]", "<|python_tag|>")
_JSON_STARTS = ("{", "[")


def template_tools(request: ChatCompletionRequest) -> list[dict] | None:
    """The tool schemas for the chat template (OpenAI's {"type": "function", "function": {...}} form),
    restricted to the named one when tool_choice names a function; None when tools are off."""
    if not request.tools_active():
        return None
    tools = [tool.model_dump(exclude_none=True) for tool in request.tools or []]
    choice = request.tool_choice
    if choice is not None and not isinstance(choice, str):
        name = choice.function.get("name")
        tools = [t for t in tools if t["function"]["name"] == name]
        if not tools:
            raise bad_request(f"tool_choice names the function {name!r}, which is not in tools",
                              param="tool_choice")
    return tools


def template_message(message: ChatMessage) -> dict:
    """One message as chat templates expect it: text content; tool-call arguments as dicts."""
    out: dict = {"role": message.role, "content": message.text()}
    if message.name is not None:
        out["name"] = message.name
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        out["tool_calls"] = [{"id": call.id, "type": "function",
                              "function": {"name": call.function.name,
                                           "arguments": _arguments_dict(call.function.arguments)}}
                             for call in message.tool_calls]
    return out


def _arguments_dict(arguments):
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return arguments
    return value if isinstance(value, dict) else arguments


def api_tool_calls(calls: list[dict]) -> list[dict]:
    """Parsed calls in OpenAI's wire form (arguments as a JSON string, a fresh call id each)."""
    return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": call["name"], "arguments": json.dumps(call["arguments"], ensure_ascii=False)}}
            for call in calls]


def split_reply(text: str) -> tuple[str | None, list[dict]]:
    """(content or None, tool calls in wire form) of a finished reply."""
    content, calls = parse_tool_calls(text)
    if not calls:
        return text, []
    return (content or None), api_tool_calls(calls)


class ToolCallStreamGate:
    """Decides, as a reply grows, how much of it is safe to stream as content.

    Text before a tool-call marker streams; from a marker on (or from the start, when the reply opens
    like a JSON call) everything is held until `finish`, which parses the whole reply.
    """

    def __init__(self) -> None:
        self.sent = 0          # characters of the reply already streamed as content
        self.holding = False   # a call (maybe) started: stream nothing more until the end

    def feed(self, text: str) -> str:
        """`text` is the whole reply so far; returns the new content that may go out now."""
        if self.holding:
            return ""
        marker_at = min((i for i in (text.find(m, self.sent) for m in _MARKERS) if i >= 0), default=-1)
        if marker_at >= 0 or (self.sent == 0 and text.lstrip().startswith(_JSON_STARTS)):
            self.holding = True
            safe = marker_at if marker_at >= 0 else self.sent
        else:
            safe = len(text) - _partial_marker_length(text)
            if not text[:safe].strip():
                safe = self.sent  # leading whitespace: wait to see whether a JSON call follows
        delta, self.sent = text[self.sent:safe], max(self.sent, safe)
        return delta

    def finish(self, text: str) -> tuple[str, list[dict]]:
        """(remaining content, tool calls in wire form) once the reply is complete."""
        content, calls = split_reply(text)
        if not calls:
            return text[self.sent:], []
        streamed = text[:self.sent].strip()
        content = content or ""
        rest = content[len(streamed):] if content.startswith(streamed) else ""
        return rest, calls


def _partial_marker_length(text: str) -> int:
    """Length of the longest suffix of `text` that could be the start of a marker."""
    best = 0
    for marker in _MARKERS:
        for size in range(min(len(marker) - 1, len(text)), best, -1):
            if text.endswith(marker[:size]):
                best = size
                break
    return best
