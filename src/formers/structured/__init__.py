"""Structured output: grammar-constrained generation (JSON schema, regex, EBNF) and tool calls.

`tool_calls` has no dependency beyond the standard library; the grammar parts need `xgrammar`
(the `structured` extra) and are imported only when used.
"""
from __future__ import annotations

from .tool_calls import parse_tool_calls

__all__ = ["parse_tool_calls"]
