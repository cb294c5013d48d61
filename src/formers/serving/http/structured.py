"""Structured replies: `response_format` and a forced `tool_choice` become the engine's per-request grammar.

- response_format {"type": "json_object"}: any JSON object; {"type": "json_schema", "json_schema":
  {"name", "schema", "strict"}}: a document valid against the schema (always enforced, `strict` or
  not; no schema means any JSON object). Accepted on /v1/completions too, as an extension.
- tool_choice "required" (a call of any offered tool) or {"type": "function", "function": {"name"}}
  (a call of that tool): the reply is one call, ``{"name": ..., "arguments": <the tool's parameters
  schema>}`` (the JSON of formers.structured.tool_calling), in the model's tool-call format as its chat
  template shows it: inside ``<tool_call>...</tool_call>`` for Hermes / Qwen-style templates, as a bare
  JSON object otherwise (Llama-3 style; with "parameters" for the arguments where the template names
  them so). Both are read back by the same parser as unforced calls (tools.split_reply).
  "auto" and "none" constrain nothing.
- vLLM's extra fields, on both endpoints: `guided_json` (a schema, dict or JSON text), `guided_regex`,
  `guided_choice` (one of the strings), `guided_grammar` (EBNF/GBNF text, start rule `root`).
At most one of these may shape a reply (400 otherwise).

A schema that is not a valid JSON schema, or that the grammar engine cannot compile, is a 400 naming
the parameter; compilation runs off the event loop and fills the engine's cache, so the engine does
not compile it again when the request is added.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

from ...errors import GrammarError, ServingError
from ...structured.compiler import _xgrammar
from ...structured.grammar import Grammar
from ...structured.tool_calling import tool_call_schema
from .errors import bad_request
from .protocol import ChatCompletionRequest, ResponseFormat, SamplingFields
from .state import ServerState

_HERMES_OPEN, _HERMES_CLOSE = "<tool_call>", "</tool_call>"


def response_format_grammar(fmt: ResponseFormat | None) -> Grammar | None:
    """The grammar of an OpenAI response_format (None for text); 400 for a schema that is not one."""
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return Grammar.any_json()
    if fmt.json_schema is None:
        raise bad_request("response_format {'type': 'json_schema'} needs 'json_schema': {'name': ..., 'schema': "
                          "{...}}", param="response_format.json_schema", code="invalid_value")
    schema = fmt.json_schema.json_schema
    if schema is None:
        return Grammar.any_json()
    _check_schema(schema, "response_format.json_schema.schema")
    return Grammar.json_schema(schema)


def _check_schema(schema: dict, param: str) -> None:
    """400 when `schema` breaks its JSON-schema metaschema (when jsonschema is installed)."""
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - the structured extra installs it; the compiler still checks
        return
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as err:
        where = "/".join(str(p) for p in err.path)
        raise bad_request(f"{param} is not a valid JSON schema: {err.message}" + (f" (at {where})" if where else ""),
                          param=param, code="invalid_schema") from None


def forced_tool_grammar(tokenizer: Any, request: ChatCompletionRequest) -> Grammar | None:
    """The grammar of one call of the tool(s) tool_choice forces (None for "auto", "none" or no choice)."""
    choice = request.tool_choice
    if choice is None or choice in ("auto", "none"):
        return None
    if not request.tools:
        raise bad_request("tool_choice 'required' or a named function needs tools", param="tool_choice",
                          code="invalid_value")
    tools = [tool.model_dump(exclude_none=True) for tool in request.tools]
    for tool in tools:
        if "parameters" in tool["function"]:
            _check_schema(tool["function"]["parameters"], "tools.function.parameters")
    name = None if choice == "required" else choice.function.get("name")
    try:
        schema = tool_call_schema(tools, name)
    except GrammarError as err:
        raise bad_request(str(err), param="tool_choice", code="invalid_value") from None
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else json.dumps(
        tokenizer.chat_template)
    if '"parameters"' in template and '"arguments"' not in template:  # Llama-3's {"name", "parameters"}
        schema = _renamed_arguments(schema)
    if _HERMES_OPEN in template and _HERMES_OPEN not in tokenizer.all_special_tokens:
        return _wrapped(schema, f'"{_HERMES_OPEN}" "\\n"?', f'"\\n"? "{_HERMES_CLOSE}"')
    return Grammar.json_schema(schema)


def _renamed_arguments(schema: dict) -> dict:
    options = schema.get("anyOf", [schema])
    for option in options:
        option["properties"]["parameters"] = option["properties"].pop("arguments")
        option["required"] = ["name", "parameters"]
    return schema


def _wrapped(schema: dict, before: str, after: str) -> Grammar:
    """EBNF for `before` JSON-document-of-`schema` `after` (compact JSON, as response formats are)."""
    xgr = _xgrammar()
    try:
        body = xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False)
    except RuntimeError as err:
        raise bad_request(f"tools.function.parameters does not compile: {err}", param="tools.function.parameters",
                          code="invalid_schema") from None
    whole = xgr.Grammar.concat(xgr.Grammar.from_ebnf(f"root ::= {before}"), body,
                               xgr.Grammar.from_ebnf(f"root ::= {after}"))
    return Grammar.ebnf(str(whole))


async def compiled(state: ServerState, grammar: Grammar | None, param: str) -> Grammar | None:
    """`grammar` once the engine's compiler took it (off the event loop); 400 naming `param` if it cannot."""
    if grammar is None:
        return None
    try:
        await asyncio.to_thread(state.grammars.compile, grammar)
    except ServingError as err:
        raise bad_request(str(err).removeprefix("SamplingParams.grammar: "), param=param,
                          code="invalid_schema") from None
    return grammar


def guided_grammars(request: SamplingFields) -> list[tuple[Grammar, str]]:
    """(grammar, parameter) for each of vLLM's guided_* fields the request sets."""
    found = []
    if request.guided_json is not None:
        schema = request.guided_json
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except json.JSONDecodeError as err:
                raise bad_request(f"guided_json is not JSON: {err}", param="guided_json", code="invalid_schema") \
                    from None
        if not isinstance(schema, dict):
            raise bad_request("guided_json must be a JSON schema object", param="guided_json", code="invalid_schema")
        _check_schema(schema, "guided_json")
        found.append((Grammar.json_schema(schema), "guided_json"))
    if request.guided_regex is not None:
        found.append((Grammar.regex(request.guided_regex), "guided_regex"))
    if request.guided_choice is not None:
        options = " | ".join(json.dumps(choice, ensure_ascii=False) for choice in request.guided_choice)
        found.append((Grammar.ebnf(f"root ::= {options}"), "guided_choice"))
    if request.guided_grammar is not None:
        found.append((Grammar.ebnf(request.guided_grammar), "guided_grammar"))
    return found


async def reply_grammar(state: ServerState, request: SamplingFields) -> Grammar | None:
    """The one grammar a request asks for (a forced tool call, a response_format or a guided_* field),
    compiled; None when the reply is free."""
    fmt = request.response_format
    asked = guided_grammars(request)
    if fmt is not None and fmt.type != "text":
        asked.insert(0, (response_format_grammar(fmt), format_param(fmt)))
    if isinstance(request, ChatCompletionRequest):
        tool_grammar = forced_tool_grammar(state.tokenizer, request)
        if tool_grammar is not None:
            asked.insert(0, (tool_grammar, "tools"))
    if len(asked) > 1:
        names = [param.split(".")[0] for _, param in asked]
        raise bad_request(f"only one of a forced tool_choice, response_format and guided_* may shape the reply; "
                          f"got {names}", param=names[1], code="invalid_value")
    return await compiled(state, *asked[0]) if asked else None


def format_param(fmt: ResponseFormat | None) -> str:
    """The parameter a response_format's compile error names."""
    return "response_format.json_schema.schema" if fmt is not None and fmt.type == "json_schema" else "response_format"
