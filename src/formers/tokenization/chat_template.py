"""Chat templates: render conversations with the tokenizer's Jinja template, as transformers 4.45 does.

Templates run in jinja2's `ImmutableSandboxedEnvironment` with `trim_blocks`/`lstrip_blocks`, the
loop-control extension, a `{% generation %}` tag (marks assistant text for `return_assistant_tokens_mask`),
a `tojson` filter that does not HTML-escape, and the globals `raise_exception` and `strftime_now`.
Any failure while compiling or rendering becomes a `ChatTemplateError` that names the template.
"""
from __future__ import annotations

import inspect
import json
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import ChatTemplateError
from .json_schema import get_json_schema

LITERAL_NAME = "<chat_template argument>"
DEFAULT_NAME = "tokenizer.chat_template"


class _GenerationTag(Extension):
    """`{% generation %}...{% endgeneration %}`: renders its body and, while tracking, records where it
    landed in the output (character offsets), so assistant tokens can be masked."""

    tags = {"generation"}

    def __init__(self, environment: jinja2.Environment):
        super().__init__(environment)
        self.blocks: list[str] | None = None
        self.spans: list[tuple[int, int]] | None = None

    def parse(self, parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(lineno)

    def _render_body(self, caller) -> str:
        text = caller()
        if self.blocks is not None:
            start = sum(len(block) for block in self.blocks)
            self.spans.append((start, start + len(text)))
        return text


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None,
            sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


@lru_cache(maxsize=64)
def compile_template(template: str, name: str = DEFAULT_NAME) -> jinja2.Template:
    """Compile a chat template once (cached by its text)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_GenerationTag, loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(template)
    except jinja2.TemplateSyntaxError as exc:
        raise ChatTemplateError(f"chat template {name!r} is not valid Jinja (line {exc.lineno}): {exc.message}") from exc


def render_template(compiled: jinja2.Template, name: str, track_generation: bool = False, **context: Any):
    """Render; returns (text, spans of {% generation %} blocks, empty unless tracking)."""
    tracker = compiled.environment.extensions[_GenerationTag.identifier]
    try:
        if not track_generation:
            return compiled.render(**context), []
        tracker.blocks, tracker.spans = [], []
        for block in compiled.generate(**context):
            tracker.blocks.append(block)
        return "".join(tracker.blocks), tracker.spans
    except ChatTemplateError:
        raise  # raise_exception() inside the template: keep its message as is
    except Exception as exc:
        raise ChatTemplateError(f"chat template {name!r} failed to render: {type(exc).__name__}: {exc}") from exc
    finally:
        tracker.blocks = tracker.spans = None


def normalize_chat_template(value: Any) -> str | dict[str, str] | None:
    """tokenizer_config's `chat_template`: a string, or a list of {name, template} -> dict by name."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, (list, tuple)):
        try:
            return {item["name"]: item["template"] for item in value}
        except (TypeError, KeyError):
            pass
    raise ChatTemplateError("chat_template must be a string or a list of {'name': ..., 'template': ...} dicts, "
                            f"got {type(value).__name__}")


def select_template(own: str | dict | None, chat_template: str | None, tools: list | None) -> tuple[str, str]:
    """Pick the template to use: (name for messages, template text)."""
    if isinstance(own, dict):
        if chat_template is not None and chat_template in own:
            return chat_template, own[chat_template]
        if chat_template is not None:
            return LITERAL_NAME, chat_template
        if tools is not None and "tool_use" in own:
            return "tool_use", own["tool_use"]
        if "default" in own:
            return "default", own["default"]
        raise ChatTemplateError(f"the tokenizer has several chat templates and none is named 'default'; pass "
                                f"chat_template= one of {sorted(own)} or a template string")
    if chat_template is not None:
        return LITERAL_NAME, chat_template
    if own is None:
        raise ChatTemplateError("tokenizer.chat_template is not set and no chat_template argument was given; set "
                                "one in tokenizer_config.json or pass chat_template='...'")
    return DEFAULT_NAME, own


def _tool_schemas(tools: list | None) -> list[dict] | None:
    if tools is None:
        return None
    schemas = []
    for tool in tools:
        if isinstance(tool, dict):
            schemas.append(tool)
        elif inspect.isfunction(tool):
            schemas.append(get_json_schema(tool))
        else:
            raise ChatTemplateError(f"tools: each tool must be a JSON-schema dict or a Python function with type "
                                    f"hints and a Google-style docstring; got {type(tool).__name__}")
    return schemas


def _split_batch(conversation: Any) -> tuple[list, bool]:
    if isinstance(conversation, (list, tuple)) and conversation and (
            isinstance(conversation[0], (list, tuple)) or hasattr(conversation[0], "messages")):
        return list(conversation), True
    return [conversation], False


def _assistant_masks(out, spans: list[list[tuple[int, int]]], batched: bool, return_tensors) -> list:
    ids = out["input_ids"] if (batched or return_tensors) else [out["input_ids"]]
    masks = []
    for i, row_spans in enumerate(spans):
        mask = [0] * len(ids[i])
        for start_char, end_char in row_spans:
            start = out.char_to_token(i, start_char)
            end = out.char_to_token(i, end_char - 1)
            if start is None:
                break  # truncated away
            for t in range(start, end + 1 if end is not None else len(ids[i])):
                mask[t] = 1
        masks.append(mask)
    return masks if batched else masks[0]


def apply_chat_template(tokenizer: Any, conversation: Any, tools: list | None = None, documents: list | None = None,
                        chat_template: str | None = None, add_generation_prompt: bool = False,
                        continue_final_message: bool = False, tokenize: bool = True, padding: bool | str = False,
                        truncation: bool = False, max_length: int | None = None, return_tensors: str | None = None,
                        return_dict: bool = False, return_assistant_tokens_mask: bool = False,
                        tokenizer_kwargs: dict | None = None, **kwargs: Any):
    """Render one conversation (or a batch) and return text, ids, or a BatchEncoding."""
    if return_dict and not tokenize:
        raise ChatTemplateError("apply_chat_template: return_dict=True needs tokenize=True")
    if return_assistant_tokens_mask and not return_dict:
        raise ChatTemplateError("apply_chat_template: return_assistant_tokens_mask=True needs return_dict=True")
    if continue_final_message and add_generation_prompt:
        raise ChatTemplateError("apply_chat_template: continue_final_message and add_generation_prompt cannot "
                                "both be True (continue the last message, or start a new assistant turn)")
    if continue_final_message and return_assistant_tokens_mask:
        raise ChatTemplateError("apply_chat_template: continue_final_message does not work with "
                                "return_assistant_tokens_mask")
    name, template = select_template(tokenizer.chat_template, chat_template, tools)
    compiled = compile_template(template, name)
    schemas = _tool_schemas(tools)
    for document in documents or []:
        if not isinstance(document, dict):
            raise ChatTemplateError("documents must be a list of dicts (e.g. with 'title' and 'text' keys)")
    conversations, batched = _split_batch(conversation)
    context = {**tokenizer.special_tokens_map, **kwargs}
    rendered, all_spans = [], []
    for chat in conversations:
        messages = chat.messages if hasattr(chat, "messages") else chat
        text, spans = render_template(compiled, name, track_generation=return_assistant_tokens_mask,
                                      messages=messages, tools=schemas, documents=documents,
                                      add_generation_prompt=add_generation_prompt, **context)
        if continue_final_message:
            final = messages[-1]["content"]
            cut = text.rfind(final) if isinstance(final, str) else -1
            if cut < 0:
                raise ChatTemplateError(f"continue_final_message: the final message content was not found in the "
                                        f"output of chat template {name!r}")
            text = text[: cut + len(final)].rstrip()
        rendered.append(text)
        all_spans.append(spans)
    if not tokenize:
        return rendered if batched else rendered[0]
    out = tokenizer(rendered if batched else rendered[0], padding=padding, truncation=truncation,
                    max_length=max_length, add_special_tokens=False, return_tensors=return_tensors,
                    **(tokenizer_kwargs or {}))
    if not return_dict:
        return out["input_ids"]
    if return_assistant_tokens_mask:
        out["assistant_masks"] = _assistant_masks(out, all_spans, batched, return_tensors)
    return out
