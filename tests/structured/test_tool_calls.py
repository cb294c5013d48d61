"""parse_tool_calls: Hermes, Mistral and Llama-3 JSON tool-call formats back into (content, calls)."""
from __future__ import annotations

import pytest

from formers.errors import GrammarError
from formers.structured import parse_tool_calls

WEATHER = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
TIME = {"name": "get_time", "arguments": {}}


def test_hermes_single_and_content_around():
    text = ('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", '
            '"unit": "celsius"}}\n</tool_call>')
    assert parse_tool_calls(text) == ("Let me check.", [WEATHER])


def test_hermes_several_blocks_and_string_arguments():
    text = ('<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\", \\"unit\\": '
            '\\"celsius\\"}"}</tool_call>\n<tool_call>{"name": "get_time", "arguments": {}}</tool_call>')
    assert parse_tool_calls(text) == ("", [WEATHER, TIME])


def test_hermes_malformed_block_stays_in_content():
    text = 'A <tool_call>{"name": "get_weather", "arguments": {"city": </tool_call> B'
    assert parse_tool_calls(text) == (text, [])
    mixed = text + '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
    content, calls = parse_tool_calls(mixed)
    assert calls == [TIME] and content == text.strip()


def test_mistral_list_after_marker():
    text = ('Sure.[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}, '
            '{"name": "get_time", "arguments": {}, "id": "abc123def"}]')
    assert parse_tool_calls(text) == ("Sure.", [WEATHER, TIME])


def test_mistral_marker_without_valid_json_is_content():
    text = "[TOOL_CALLS] not json"
    assert parse_tool_calls(text) == (text, [])


@pytest.mark.parametrize("text", [
    '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}',
    '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}',
    '  {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n',
])
def test_llama3_json_single(text):
    assert parse_tool_calls(text) == ("", [WEATHER])


def test_llama3_json_several():
    text = ('{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}; '
            '{"name": "get_time", "parameters": {}}')
    assert parse_tool_calls(text) == ("", [WEATHER, TIME])
    listed = '[{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}]'
    assert parse_tool_calls(listed) == ("", [WEATHER])


@pytest.mark.parametrize("text", [
    "The weather in Paris is sunny.",
    '{"city": "Paris"}',                                   # JSON, but no name: an answer, not a call
    '{"name": "get_weather", "parameters": [1, 2]}',       # arguments must be an object
    '{"name": "get_weather", "parameters": {}} and more',  # trailing prose: not a pure call
])
def test_plain_text_is_content(text):
    assert parse_tool_calls(text) == (text, [])


def test_non_string_input_names_the_argument():
    with pytest.raises(GrammarError, match="text"):
        parse_tool_calls(None)  # type: ignore[arg-type]
