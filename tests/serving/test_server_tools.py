"""Tool calling end to end: tools rendered by the chat template, the model's Hermes `<tool_call>` block
parsed into `tool_calls` (plain and streamed). The scripted model always replies
"Let me check.<tool_call>{get_weather(city=Paris)}</tool_call>" greedily (see server_fixtures)."""
from __future__ import annotations

import json

import pytest

from formers.serving.http.tools import ToolCallStreamGate

from .server_fixtures import SCRIPTED_NAME, openai, scripted  # noqa: F401 (fixtures)

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]
RAW_REPLY = 'Let me check.<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'


def _chat(scripted, **kwargs):
    return scripted.client().chat.completions.create(model=SCRIPTED_NAME, messages=MESSAGES, max_tokens=10,
                                                     temperature=0, **kwargs)


def test_tool_call_is_parsed_into_the_message(scripted):
    result = _chat(scripted, tools=[WEATHER, CLOCK])
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_tools_are_rendered_by_the_chat_template(scripted):
    without = _chat(scripted).usage.prompt_tokens
    assert _chat(scripted, tools=[WEATHER]).usage.prompt_tokens == without + 2  # "tool get_weather"
    assert _chat(scripted, tools=[WEATHER, CLOCK]).usage.prompt_tokens == without + 4
    named = {"type": "function", "function": {"name": "get_time"}}
    assert _chat(scripted, tools=[WEATHER, CLOCK], tool_choice=named).usage.prompt_tokens == without + 2


def test_tool_choice_none_keeps_the_raw_text(scripted):
    choice = _chat(scripted, tools=[WEATHER], tool_choice="none").choices[0]
    assert choice.message.content == RAW_REPLY
    assert choice.message.tool_calls is None and choice.finish_reason == "stop"


def test_without_tools_the_reply_is_plain_content(scripted):
    choice = _chat(scripted).choices[0]
    assert (choice.message.content, choice.message.tool_calls) == (RAW_REPLY, None)


def test_streamed_tool_call(scripted):
    chunks = list(_chat(scripted, tools=[WEATHER], stream=True))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "Let me check."  # the call markup never streams as content
    calls = [call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and calls[0].index == 0
    assert calls[0].function.name == "get_weather" and json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_call_round_trip_renders_assistant_and_tool_messages(scripted):
    first = _chat(scripted, tools=[WEATHER]).choices[0].message
    messages = MESSAGES + [first.model_dump(exclude_none=True),
                           {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "sunny"}]
    result = scripted.client().chat.completions.create(model=SCRIPTED_NAME, messages=messages, tools=[WEATHER],
                                                       max_tokens=10, temperature=0)
    assert result.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_unknown_named_tool_choice_is_400(scripted):
    with pytest.raises(openai.BadRequestError) as caught:
        _chat(scripted, tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}})
    assert caught.value.response.json()["error"]["param"] == "tool_choice"


@pytest.mark.parametrize("pieces,content,n_calls", [
    (["Hello", " world"], "Hello world", 0),
    (["Sure.", " <tool", "_call>", '{"name": "f", "arguments": {}}', "</tool_call>"], "Sure. ", 1),
    (['{"name": "f", ', '"parameters": {"x": 1}}'], "", 1),
    (["<tool_call>", "not json", "</tool_call>"], "<tool_call>not json</tool_call>", 0),
    (["a < b", " and <tool_ca", "rd>"], "a < b and <tool_card>", 0),
])
def test_stream_gate_holds_back_call_markup(pieces, content, n_calls):
    """What a client sees as content (streamed deltas + the rest at the end) and the calls found."""
    gate, text, streamed = ToolCallStreamGate(), "", ""
    for piece in pieces:
        text += piece
        streamed += gate.feed(text)
        assert "<tool_call>" not in streamed and not streamed.startswith("{")
    rest, calls = gate.finish(text)
    assert streamed + rest == content
    assert len(calls) == n_calls
