"""`generate_tool_call`: a tool call that is guaranteed to parse against the chosen tool's schema.

The chat (with the tools rendered by the model's chat template, as `apply_chat_template(tools=...)`
does) is continued under a JSON-schema grammar: ``{"name": <one of the tools' names>, "arguments":
<that tool's parameters schema>}``, so the reply is always a well-formed call of an offered tool,
in the Llama-3 JSON-call shape that `parse_tool_calls` reads back.
"""
from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from ..errors import GrammarError
from ..tokenization.json_schema import get_json_schema
from .grammar import Grammar


def _as_function(tool: Any) -> dict:
    """A chat-template tool (function, or {"type": "function", "function": {...}} dict) -> its function dict."""
    if inspect.isfunction(tool) or inspect.ismethod(tool):
        return get_json_schema(tool)["function"]
    if isinstance(tool, dict):
        function = tool.get("function", tool)
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return function
    raise GrammarError(f"tools entries must be functions or {{'type': 'function', 'function': {{'name': ...}}}} "
                       f"dicts; got {tool!r}")


def tool_call_schema(tools: list, tool_name: str | None = None) -> dict:
    """The JSON schema of one call of `tool_name` (or of any of `tools` when None)."""
    functions = [_as_function(t) for t in tools]
    if tool_name is not None:
        functions = [f for f in functions if f["name"] == tool_name]
        if not functions:
            raise GrammarError(f"tool_name={tool_name!r} is not among the tools "
                               f"{[_as_function(t)['name'] for t in tools]}")
    if not functions:
        raise GrammarError("tool_call_schema(tools=[]) needs at least one tool")
    options = [{"type": "object",
                "properties": {"name": {"enum": [f["name"]]},
                               "arguments": f.get("parameters") or {"type": "object", "properties": {}}},
                "required": ["name", "arguments"]} for f in functions]
    return options[0] if len(options) == 1 else {"anyOf": options}


def generate_tool_call(model: Any, tokenizer: Any, messages: list[dict], tools: list[Any | Callable],
                       tool_name: str | None = None, **generate_kwargs: Any) -> dict:
    """Continue `messages` (with `tools` offered) with a call of `tool_name` (any offered tool when None).

    Returns ``{"name": str, "arguments": dict}``; the arguments satisfy the tool's parameter schema.
    `generate_kwargs` go to `model.generate` (max_new_tokens, do_sample, ...).
    """
    schema = tool_call_schema(tools, tool_name)
    text = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
    generate_kwargs.setdefault("max_new_tokens", 256)
    out = model.generate(**inputs, grammar=Grammar.json_schema(schema), tokenizer=tokenizer, **generate_kwargs)
    reply = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    try:
        call = json.loads(reply)
    except json.JSONDecodeError as err:
        raise GrammarError(f"the tool call was cut off at max_new_tokens={generate_kwargs['max_new_tokens']} "
                           f"before the grammar closed it: {reply!r}; raise max_new_tokens") from err
    return {"name": call["name"], "arguments": call["arguments"]}
