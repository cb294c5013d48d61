"""`get_json_schema(func)`: describe a Python function as a JSON-schema tool for chat templates.

The schema comes from the type hints (argument types, which arguments are required) and a Google-style
docstring (the function description, an `Args:` entry per argument, optionally `Returns:`). An argument
description may end with `(choices: [...])`, which becomes an `enum`. The output has the same structure
and key order as transformers' `get_json_schema`, so templates that `tojson` it render identically.
"""
from __future__ import annotations

import inspect
import json
import re
import sys
import types
from typing import Any, Callable, Literal, Union, get_args, get_origin, get_type_hints

from ..errors import TokenizerError


class TypeHintParsingException(TokenizerError):
    """A type hint cannot be expressed as JSON schema (or is missing)."""


class DocstringParsingException(TokenizerError):
    """The docstring is missing or lacks a description for an argument."""


_BASIC = {int: "integer", float: "number", str: "string", bool: "boolean"}
_SECTION = re.compile(r"Args:|Returns:|Raises:")
_ARG_LINE = re.compile(r"^\s*(\w+):\s*(.*)$")
_CHOICES = re.compile(r"\(choices:\s*(.*?)\)\s*$", re.IGNORECASE)


def _special_class_type(hint: Any) -> str | None:
    torch = sys.modules.get("torch")
    if torch is not None and hint is torch.Tensor:
        return "audio"
    pil = sys.modules.get("PIL.Image")
    if pil is not None and hint is getattr(pil, "Image", None):
        return "image"
    return None


def _schema_for(hint: Any) -> dict:
    origin, args = get_origin(hint), get_args(hint)
    if origin is None:
        if hint is Any:
            return {}
        if hint in _BASIC:
            return {"type": _BASIC[hint]}
        special = _special_class_type(hint)
        return {"type": special or "object"}
    if origin is Union or origin is types.UnionType:
        subs = [_schema_for(a) for a in args if a is not type(None)]
        if len(subs) == 1:
            out = dict(subs[0])
        elif all(isinstance(s.get("type"), str) for s in subs):
            out = {"type": sorted(s["type"] for s in subs)}
        else:
            out = {"anyOf": subs}
        if type(None) in args:
            out["nullable"] = True
        return out
    if origin is list:
        return {"type": "array", "items": _schema_for(args[0])} if args else {"type": "array"}
    if origin is tuple:
        if not args:
            return {"type": "array"}
        if len(args) == 1:
            raise TypeHintParsingException(f"type hint {hint} is a one-element tuple; use the element type or a "
                                           "list[...] instead")
        if ... in args:
            raise TypeHintParsingException(f"type hint {hint}: '...' in tuple hints is not supported; use list[...]")
        return {"type": "array", "prefixItems": [_schema_for(a) for a in args]}
    if origin is dict:
        out = {"type": "object"}
        if len(args) == 2:
            out["additionalProperties"] = _schema_for(args[1])
        return out
    if origin is Literal:
        kinds = sorted({_BASIC.get(type(a), "object") for a in args})
        return {"type": kinds[0] if len(kinds) == 1 else kinds, "enum": list(args)}
    raise TypeHintParsingException(f"cannot express type hint {hint} as JSON schema (custom class or object?)")


def _parameters_schema(func: Callable) -> dict:
    try:
        hints = get_type_hints(func)
    except Exception as exc:
        raise TypeHintParsingException(f"cannot resolve the type hints of {func.__name__}: {exc}") from exc
    required = []
    for name, param in inspect.signature(func).parameters.items():
        if param.annotation is inspect.Parameter.empty:
            raise TypeHintParsingException(f"Argument {name} is missing a type hint in function {func.__name__}")
        if param.default is inspect.Parameter.empty:
            required.append(name)
    schema = {"type": "object", "properties": {name: _schema_for(hint) for name, hint in hints.items()}}
    if required:
        schema["required"] = required
    return schema


def _section(doc: str, header: str, enders: str) -> str | None:
    start = re.search(rf"\n\s*{header}:\n", doc)
    if start is None:
        return None
    rest = doc[start.end():]
    end = re.search(enders, rest)
    return (rest[: end.start()] if end else rest).strip()


def parse_google_format_docstring(docstring: str) -> tuple[str | None, dict[str, str], str | None]:
    """Split a Google-style docstring into (description, {argument: description}, returns text)."""
    first = _SECTION.search(docstring)
    description = (docstring[: first.start()] if first else docstring).strip()
    args_text = _section(docstring, "Args", r"Returns:|Raises:")
    returns = _section(docstring, "Returns", r"Raises:")
    arguments: dict[str, list[str]] = {}
    current = None
    for line in (args_text or "").split("\n"):
        if not line.strip():
            continue
        match = _ARG_LINE.match(line)
        if match:
            current = match.group(1)
            arguments[current] = [match.group(2).strip()]
        elif current is not None:
            arguments[current].append(line.strip())
    joined = {name: " ".join(part for part in parts if part) for name, parts in arguments.items()}
    return description, joined, returns


def get_json_schema(func: Callable) -> dict:
    """JSON schema {"type": "function", "function": {name, description, parameters[, return]}} of `func`."""
    name = getattr(func, "__name__", repr(func))
    doc = inspect.getdoc(func)
    if not doc:
        raise DocstringParsingException(f"Cannot generate JSON schema for {name} because it has no docstring!")
    description, arg_docs, return_doc = parse_google_format_docstring(doc.strip())
    parameters = _parameters_schema(func)
    return_schema = parameters["properties"].pop("return", None)
    if return_schema is not None and return_doc is not None:
        return_schema["description"] = return_doc
    for arg, schema in parameters["properties"].items():
        if arg not in arg_docs:
            raise DocstringParsingException(
                f"Cannot generate JSON schema for {name} because the docstring has no description for the "
                f"argument '{arg}'"
            )
        text = arg_docs[arg]
        choices = _CHOICES.search(text)
        if choices:
            try:
                values = json.loads(choices.group(1))
            except json.JSONDecodeError as exc:
                raise DocstringParsingException(
                    f"{name}: the (choices: ...) of argument '{arg}' is not a JSON list: {choices.group(1)!r}"
                ) from exc
            schema["enum"] = [v.strip() if isinstance(v, str) else v for v in values]
            text = text[: choices.start()].strip()
        schema["description"] = text
    function = {"name": name, "description": description, "parameters": parameters}
    if return_schema is not None:
        function["return"] = return_schema
    return {"type": "function", "function": function}
