"""Structured output: grammar-constrained generation (JSON schema, regex, EBNF) and tool calls.

- `Grammar`: what to produce (JSON schema from a dict / pydantic model / function, any JSON, regex, EBNF).
- `GrammarLogitsProcessor`: the constraint as a logits processor (also what `generate(grammar=...,
  response_format=...)` installs); per-row grammars, beam search, assisted decoding, overlapped masks.
- `generate_tool_call` / `tool_call_schema`: a guaranteed-valid call of a chat-template tool.
- `parse_tool_calls`: Hermes / Mistral / Llama-3 JSON tool calls back into (content, calls).

The grammar engine (xgrammar, the `structured` extra) is imported only when a grammar is compiled.
"""
from __future__ import annotations

from .grammar import Grammar
from .processor import GrammarLogitsProcessor
from .tool_calling import generate_tool_call, tool_call_schema
from .tool_calls import parse_tool_calls

__all__ = ["Grammar", "GrammarLogitsProcessor", "generate_tool_call", "parse_tool_calls", "tool_call_schema"]
