"""Schemas, patterns and grammars the structured-output tests generate for, and their checks.

Strings, arrays and integers are bounded (maxLength, maxItems, minimum/maximum) so that a sampled
model closes every document well inside the token budget; a truncated document would be invalid.
"""
from __future__ import annotations

import json
import re

import jsonschema

SCHEMAS = {
    "nested": {"type": "object", "properties": {
        "user": {"type": "object", "properties": {
            "id": {"type": "integer", "minimum": 0, "maximum": 9999},
            "name": {"type": "string", "maxLength": 12}}, "required": ["id", "name"]},
        "items": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "object", "properties": {
            "sku": {"type": "string", "maxLength": 6},
            "qty": {"type": "integer", "minimum": 1, "maximum": 99}}, "required": ["sku", "qty"]}}},
        "required": ["user", "items"]},
    "scalars": {"type": "object", "properties": {
        "color": {"enum": ["red", "green", "blue"]},
        "size": {"type": "integer", "minimum": -50, "maximum": 50},
        "price": {"type": "number", "minimum": 0, "maximum": 1000},
        "ok": {"type": "boolean"},
        "note": {"type": "string", "maxLength": 10}},
        "required": ["color", "size", "price", "ok"]},          # "note" optional
    "pattern": {"type": "object", "properties": {
        "code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
        "tags": {"type": "array", "maxItems": 4, "items": {"type": "string", "pattern": "^[a-z]{1,5}$"}}},
        "required": ["code", "tags"]},
}
MAX_NEW_TOKENS = 200

REGEX = r"(yes|no|maybe), [0-9]{2,4} (apples|pears)!"
# A small SQL-ish GBNF grammar, and the regular expression of the same language to check outputs with.
EBNF = r'''root ::= "SELECT " cols " FROM " table where? ";"
cols ::= col (", " col){0,2}
col ::= "id" | "name" | "age"
table ::= [a-z]{1,8}
where ::= " WHERE " col " = " [0-9]{1,3}'''
EBNF_AS_REGEX = r"SELECT (id|name|age)(, (id|name|age)){0,2} FROM [a-z]{1,8}( WHERE (id|name|age) = [0-9]{1,3})?;"

PROMPTS = {"default": "<|im_start|>user\nReply in JSON.<|im_end|>\n<|im_start|>assistant\n",
           "stories": "Once upon a time"}


def valid_json(text: str, schema: dict) -> bool:
    try:
        jsonschema.validate(json.loads(text), schema)
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False
    return True


def matches(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern, text) is not None
