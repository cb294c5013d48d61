"""`Grammar`: what a constrained generation must produce, in one normalised, hashable form.

Accepted spellings (`Grammar.from_spec`):

- a `Grammar` (returned as is);
- a JSON schema: a dict, a pydantic model class, or a Python function (its `get_json_schema`
  parameters, so the output is a valid argument object for that function);
- TGI / transformers-agents style dicts: ``{"type": "json", "value": schema}``,
  ``{"type": "regex", "value": pattern}``, ``{"type": "ebnf" | "gbnf" | "grammar", "value": text}``;
- OpenAI ``response_format`` dicts (`Grammar.from_response_format`): ``{"type": "json_object"}`` (any
  JSON object), ``{"type": "json_schema", "json_schema": {"schema": ...}}``, ``{"type": "text"}`` (None).

`kind` is one of "json_schema", "any_json", "regex", "ebnf"; `source` is the schema as JSON text (key
order kept: properties are generated in the order the schema declares them), the pattern, or the
grammar text.
"""
from __future__ import annotations

import inspect
import json
import sys
from dataclasses import dataclass
from typing import Any

from ..errors import GrammarError

KINDS = ("json_schema", "any_json", "regex", "ebnf")
_TAGGED = {"json": "json_schema", "json_schema": "json_schema", "regex": "regex", "ebnf": "ebnf", "gbnf": "ebnf",
           "grammar": "ebnf"}


@dataclass(frozen=True)
class Grammar:
    kind: str
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise GrammarError(f"Grammar.kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.source, str):
            raise GrammarError(f"Grammar.source must be a str, got {type(self.source).__name__}")

    # -- constructors -----------------------------------------------------------------------------
    @classmethod
    def json_schema(cls, schema: Any) -> Grammar:
        """From a JSON-schema dict, a pydantic model class or a function (see the module docstring)."""
        return cls("json_schema", json.dumps(_schema_dict(schema)))

    @classmethod
    def any_json(cls) -> Grammar:
        """Any JSON object (OpenAI's ``{"type": "json_object"}``)."""
        return cls("any_json")

    @classmethod
    def regex(cls, pattern: str) -> Grammar:
        if not isinstance(pattern, str):
            raise GrammarError(f"a regex grammar takes a pattern str, got {type(pattern).__name__}")
        return cls("regex", pattern)

    @classmethod
    def ebnf(cls, text: str) -> Grammar:
        """A GBNF/EBNF grammar (llama.cpp's GBNF syntax; the start rule is `root`)."""
        if not isinstance(text, str):
            raise GrammarError(f"an EBNF grammar takes the grammar text as a str, got {type(text).__name__}")
        return cls("ebnf", text)

    @classmethod
    def from_spec(cls, spec: Any) -> Grammar:
        """Any of the spellings in the module docstring -> Grammar."""
        if isinstance(spec, Grammar):
            return spec
        if isinstance(spec, dict) and set(spec) == {"type", "value"} and spec["type"] in _TAGGED:
            kind = _TAGGED[spec["type"]]
            value = spec["value"]
            return cls.json_schema(value) if kind == "json_schema" else getattr(cls, kind)(value)
        if isinstance(spec, (dict, type)) or inspect.isfunction(spec):
            return cls.json_schema(spec)
        raise GrammarError(
            f"grammar= takes a Grammar, a JSON-schema dict, a pydantic model class, a function, or "
            f"{{'type': 'json'|'regex'|'ebnf', 'value': ...}}; got {type(spec).__name__}")

    @classmethod
    def from_response_format(cls, response_format: Any) -> Grammar | None:
        """OpenAI's `response_format` -> Grammar (None for plain text)."""
        if not isinstance(response_format, dict) or "type" not in response_format:
            raise GrammarError(f"response_format must be a dict with a 'type' key, got {response_format!r}")
        kind = response_format["type"]
        if kind == "text":
            return None
        if kind == "json_object":
            return cls.any_json()
        if kind == "json_schema":
            inner = response_format.get("json_schema")
            if not isinstance(inner, dict) or "schema" not in inner:
                raise GrammarError("response_format {'type': 'json_schema'} needs 'json_schema': {'schema': {...}}")
            return cls.json_schema(inner["schema"])
        raise GrammarError(f"response_format type must be 'text', 'json_object' or 'json_schema', got {kind!r}")


def _schema_dict(schema: Any) -> dict:
    if isinstance(schema, dict):
        return schema
    pydantic = sys.modules.get("pydantic")  # a model class can only exist once pydantic is imported
    if pydantic is not None and isinstance(schema, type) and issubclass(schema, pydantic.BaseModel):
        return schema.model_json_schema()
    if callable(schema) and (inspect.isfunction(schema) or inspect.ismethod(schema)):
        from ..tokenization.json_schema import get_json_schema

        return get_json_schema(schema)["function"]["parameters"]
    raise GrammarError(f"a JSON schema must be a dict, a pydantic model class or a function, got {schema!r}")
