"""Parse the tool calls a chat model wrote back into `(content, calls)`.

Three output conventions are recognised, tried in this order:

- Hermes / Qwen2 / many fine-tunes: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks
  (any number, anywhere in the text); the content is the text outside the blocks.
- Mistral: ``[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]``; the content is the text before
  the marker.
- Llama 3.1 JSON tool calling: the whole reply (optionally after ``<|python_tag|>``) is one JSON object
  ``{"name": ..., "parameters": {...}}`` (or several separated by ``;``, or a JSON list of them).

Each call comes back as ``{"name": str, "arguments": dict}``; arguments given as a JSON string (as some
models and the OpenAI wire format do) are decoded. A block whose JSON does not parse, or that lacks a
name, is not a call: it stays in the content, so a caller never loses text the model wrote.
"""
from __future__ import annotations

import json
import re
from typing import Any

from ..errors import GrammarError

_HERMES_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
_MISTRAL_MARKER = "[TOOL_CALLS]"
_PYTHON_TAG = "<|python_tag|>"
_DECODER = json.JSONDecoder()


def _as_call(obj: Any) -> dict | None:
    """`{"name", "arguments"}` from one decoded JSON value, or None when it is not a tool call."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    return {"name": obj["name"], "arguments": args}


def _calls_from_json_value(value: Any) -> list[dict] | None:
    """Calls from an object or a list of objects; None unless every element is a call."""
    items = value if isinstance(value, list) else [value]
    calls = [_as_call(item) for item in items]
    if not calls or any(call is None for call in calls):
        return None
    return calls  # type: ignore[return-value]


def _parse_hermes(text: str) -> tuple[str, list[dict]] | None:
    if "<tool_call>" not in text:
        return None
    calls: list[dict] = []
    kept: list[str] = []
    last = 0
    for match in _HERMES_BLOCK.finditer(text):
        try:
            found = _calls_from_json_value(json.loads(match.group(1)))
        except json.JSONDecodeError:
            found = None
        if found is None:
            continue  # malformed block: leave it in the content
        kept.append(text[last:match.start()])
        last = match.end()
        calls.extend(found)
    if not calls:
        return None
    kept.append(text[last:])
    return "".join(kept).strip(), calls


def _parse_mistral(text: str) -> tuple[str, list[dict]] | None:
    at = text.find(_MISTRAL_MARKER)
    if at < 0:
        return None
    rest = text[at + len(_MISTRAL_MARKER):].lstrip()
    try:
        value, _end = _DECODER.raw_decode(rest)
    except json.JSONDecodeError:
        return None
    calls = _calls_from_json_value(value)
    return None if calls is None else (text[:at].strip(), calls)


def _parse_llama3_json(text: str) -> tuple[str, list[dict]] | None:
    body = text.strip()
    if body.startswith(_PYTHON_TAG):
        body = body[len(_PYTHON_TAG):].lstrip()
    if not body.startswith(("{", "[")):
        return None
    calls: list[dict] = []
    pos = 0
    while pos < len(body):  # one value, or several separated by ';'
        try:
            value, pos = _DECODER.raw_decode(body, pos)
        except json.JSONDecodeError:
            return None
        found = _calls_from_json_value(value)
        if found is None:
            return None
        calls.extend(found)
        while pos < len(body) and (body[pos].isspace() or body[pos] == ";"):
            pos += 1
    return "", calls


def parse_tool_calls(text: str) -> tuple[str, list[dict]]:
    """Split a model reply into its content and its tool calls (Hermes, Mistral or Llama-3 JSON format).

    Returns ``(text, [])`` when the reply holds no well-formed call.
    """
    if not isinstance(text, str):
        raise GrammarError(f"parse_tool_calls(text=...) expects a str, got {type(text).__name__}")
    for parse in (_parse_hermes, _parse_mistral, _parse_llama3_json):
        parsed = parse(text)
        if parsed is not None:
            return parsed
    return text, []
