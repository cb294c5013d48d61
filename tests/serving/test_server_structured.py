"""Structured output through the real `openai` client: response_format json_schema / json_object on chat
(and on completions, an extension), tool_choice "required" / named forcing a call whose arguments
validate, the served greedy structured reply equal to formers' generate(grammar=...) of it alone while
other requests stream beside it, and bad schemas answered 400 naming the parameter."""
from __future__ import annotations

import asyncio
import json
import re

import jsonschema
import pytest
import torch

import formers
from formers.default_model import CHECKPOINT_DIR
from formers.serving.http.protocol import ChatCompletionRequest
from formers.serving.http.structured import forced_tool_grammar
from formers.serving.http.tools import split_reply

from .server_fixtures import (  # noqa: F401
    DEFAULT_NAME,
    SCRIPTED_NAME,
    openai,
    scripted,
    scripted_folder,
    served,
)

PERSON = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 10},
    "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "languages": {"type": "array", "maxItems": 2, "items": {"enum": ["python", "c", "rust"]}}},
    "required": ["name", "age", "languages"]}
PERSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
MESSAGES = [{"role": "user", "content": "Describe a programmer as JSON."}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                     "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"]}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string", "maxLength": 6}}, "required": ["zone"]}}}


def _chat(served, **kwargs):
    kwargs.setdefault("messages", MESSAGES)
    kwargs.setdefault("max_tokens", 80)
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith("guided_")}
    return served.client().chat.completions.create(model=DEFAULT_NAME, extra_body=extra or None, **kwargs)


@pytest.fixture(scope="module")
def local():
    """The default checkpoint once more, for generate() beside the server's engine thread."""
    tokenizer = formers.AutoTokenizer.from_pretrained(CHECKPOINT_DIR)
    return formers.AutoModelForCausalLM.from_pretrained(CHECKPOINT_DIR, torch_dtype=torch.float32).eval(), tokenizer


def test_json_schema_replies_validate(served):
    result = _chat(served, response_format=PERSON_FORMAT, temperature=1.0, seed=7, n=3)
    assert len(result.choices) == 3
    for choice in result.choices:
        assert choice.finish_reason == "stop"
        jsonschema.validate(json.loads(choice.message.content), PERSON)
    unconstrained = _chat(served, temperature=1.0, seed=7, n=3)  # the control: the same sampling, no format
    assert not any(_is_valid(c.message.content, PERSON) for c in unconstrained.choices)


def _is_valid(text: str, schema: dict) -> bool:
    try:
        jsonschema.validate(json.loads(text), schema)
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False
    return True


def test_greedy_structured_reply_in_a_busy_batch_equals_generate(served, local):
    """Token for token (pieces, count and chosen logprobs) what generate(grammar=...) gives alone."""
    model, tokenizer = local
    client = served.async_client()

    async def busy():
        others = [client.chat.completions.create(model=DEFAULT_NAME, messages=[{"role": "user", "content": text}],
                                                 max_tokens=12 + 5 * i, temperature=0.8, seed=i, stream=True)
                  for i, text in enumerate(["Hello", "Sort a list", "What is a dict?", "Open a file"])]
        constrained = client.chat.completions.create(model=DEFAULT_NAME, messages=MESSAGES, max_tokens=80,
                                                     temperature=0, response_format=PERSON_FORMAT, logprobs=True)
        streams = await asyncio.gather(*others[:2])  # these two generate while the constrained one joins
        result, *more = await asyncio.gather(constrained, *others[2:])
        streams += more
        for stream in streams:
            async for _ in stream:
                pass
        return result

    result = asyncio.run(busy())
    ids = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True)
    out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                         max_new_tokens=80, do_sample=False, grammar=PERSON, tokenizer=tokenizer)
    expected = out[0, len(ids):].tolist()
    with torch.no_grad():
        logits = model(torch.tensor([ids + expected])).logits[0, len(ids) - 1:-1].float()
    expected_logprobs = torch.log_softmax(logits, -1).gather(1, torch.tensor(expected)[:, None])[:, 0]
    choice = result.choices[0]
    assert choice.message.content == tokenizer.decode(expected, skip_special_tokens=True)
    assert result.usage.completion_tokens == len(expected)
    assert [entry.token for entry in choice.logprobs.content] == [tokenizer.decode([t]) for t in expected]
    served_logprobs = torch.tensor([entry.logprob for entry in choice.logprobs.content])
    torch.testing.assert_close(served_logprobs, expected_logprobs, atol=1e-4, rtol=0)
    jsonschema.validate(json.loads(choice.message.content), PERSON)


def test_json_object_gives_a_json_object_also_streamed(served):
    result = _chat(served, response_format={"type": "json_object"}, temperature=1.0, seed=3, max_tokens=120)
    assert result.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(result.choices[0].message.content), dict)
    chunks = list(_chat(served, response_format=PERSON_FORMAT, temperature=0, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    jsonschema.validate(json.loads(text), PERSON)
    assert text == _chat(served, response_format=PERSON_FORMAT, temperature=0).choices[0].message.content


def test_completions_take_response_format_as_an_extension(served):
    result = served.client().completions.create(model=DEFAULT_NAME, prompt="A programmer:", max_tokens=80,
                                                temperature=1.0, seed=1, n=2, extra_body={"response_format":
                                                                                        PERSON_FORMAT})
    for choice in result.choices:
        jsonschema.validate(json.loads(choice.text), PERSON)


def test_vllm_guided_fields(served):
    client = served.client()
    regex = r"(yes|no), [0-9]{2} (cats|dogs)\."
    for make in (lambda **kw: client.chat.completions.create(model=DEFAULT_NAME, messages=MESSAGES, **kw),
                 lambda **kw: client.completions.create(model=DEFAULT_NAME, prompt="Answer:", **kw)):
        def text(result):
            choice = result.choices[0]
            return choice.message.content if hasattr(choice, "message") else choice.text

        out = make(max_tokens=40, temperature=1.0, seed=2, extra_body={"guided_regex": regex})
        assert re.fullmatch(regex, text(out))
        out = make(max_tokens=40, temperature=1.0, seed=2, extra_body={"guided_choice": ["red pill", 'blue "pill"']})
        assert text(out) in ("red pill", 'blue "pill"')
        out = make(max_tokens=80, temperature=1.0, seed=2, extra_body={"guided_json": json.dumps(PERSON)})
        jsonschema.validate(json.loads(text(out)), PERSON)
        out = make(max_tokens=40, temperature=0, extra_body={"guided_grammar": 'root ::= "x" [0-9] [0-9]?'})
        assert re.fullmatch(r"x[0-9]{1,2}", text(out))


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_time"}}])
def test_forced_tool_choice_gives_a_valid_call(served, choice):
    result = _chat(served, tools=[WEATHER, CLOCK], tool_choice=choice, temperature=1.0, seed=5, n=2)
    for c in result.choices:
        assert c.finish_reason == "tool_calls" and not c.message.content
        (call,) = c.message.tool_calls
        tool = {"get_weather": WEATHER, "get_time": CLOCK}[call.function.name]
        if choice != "required":
            assert call.function.name == "get_time"
        jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])
    plain = _chat(served, tools=[WEATHER, CLOCK], tool_choice="auto", temperature=1.0, seed=5, n=2)
    assert all(c.message.tool_calls is None for c in plain.choices)  # the control: unforced, no call


def test_required_overrides_the_scripted_models_preamble(scripted):
    """The scripted model greedily writes "Let me check." before its call; "required" makes the call the
    whole reply (the chat template there shows no <tool_call> tags, so the bare JSON form)."""
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}
    for stream in (False, True):
        result = scripted.client().chat.completions.create(
            model=SCRIPTED_NAME, messages=[{"role": "user", "content": "Weather?"}], max_tokens=10, temperature=0,
            tools=[weather], tool_choice="required", stream=stream)
        if stream:
            chunks = list(result)
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ""
            (call,) = [call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])]
            assert chunks[-1].choices[0].finish_reason == "tool_calls"
        else:
            assert result.choices[0].finish_reason == "tool_calls" and result.choices[0].message.content is None
            (call,) = result.choices[0].message.tool_calls
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}


def test_hermes_templates_get_their_tags():
    """A template that shows <tool_call> tags: the forced call is written inside them (engine run)."""
    from formers.serving import EngineConfig, LLMEngine, SamplingParams

    tokenizer = formers.AutoTokenizer.from_pretrained(scripted_folder())
    tokenizer.chat_template += "{# tools go in <tool_call></tool_call> #}"
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "x"}], tool_choice="required",
                                    tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {
                                        "type": "object", "properties": {"city": {"type": "string"}}}}}])
    grammar = forced_tool_grammar(tokenizer, request)
    assert grammar.kind == "ebnf" and "<tool_call>" in grammar.source
    model = formers.AutoModelForCausalLM.from_pretrained(scripted_folder(), torch_dtype=torch.float32)
    local = LLMEngine(model, tokenizer, EngineConfig(num_blocks=16))
    local.add_request("t", tokenizer("<go>").input_ids, SamplingParams(temperature=0, max_tokens=10, grammar=grammar))
    final = [out for _ in range(12) for out in local.step()][-1]
    assert final.finish_reason == "stop" and final.text.startswith("<tool_call>")
    content, calls = split_reply(final.text)
    assert content is None and [c["function"]["name"] for c in calls] == ["get_weather"]


@pytest.mark.parametrize("body,param", [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object",
                                                                                         "properties": 3}}}},
     "response_format.json_schema.schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/nowhere"}}}},
     "response_format.json_schema.schema"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "bad name!", "schema": {}}}},
     "response_format.json_schema.name"),
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "nope"}}}],
      "tool_choice": "required"}, "tools.function.parameters"),
    ({"tools": [WEATHER], "tool_choice": "required", "response_format": {"type": "json_object"}}, "response_format"),
    ({"guided_regex": "a", "guided_choice": ["b"]}, "guided_choice"),
    ({"guided_regex": "(unclosed"}, "guided_regex"),
    ({"guided_grammar": "root ::= missing_rule"}, "guided_grammar"),
    ({"guided_json": "{not json"}, "guided_json"),
    ({"guided_choice": []}, "guided_choice"),
])
def test_bad_structured_requests_are_400_naming_the_param(served, body, param):
    with pytest.raises(openai.BadRequestError) as caught:
        _chat(served, max_tokens=5, **body)
    error = caught.value.response.json()["error"]
    assert caught.value.status_code == 400 and error["param"] == param, error
    assert error["type"] == "invalid_request_error"
    assert _chat(served, max_tokens=3).choices[0].message.content is not None  # still serving
    if "tools" not in body and "tool_choice" not in body:  # the same on /v1/completions
        with pytest.raises(openai.BadRequestError) as caught:
            served.client().completions.create(model=DEFAULT_NAME, prompt="x", max_tokens=5, extra_body=body)
        assert caught.value.response.json()["error"]["param"] == param


@pytest.mark.parametrize("template,kind,arguments_key", [
    ("{{ messages }}", "json_schema", "arguments"),                                           # bare JSON
    ('{{ messages }} {"name": ..., "parameters": ...}', "json_schema", "parameters"),        # Llama-3 style
    ("{{ messages }} <tool_call></tool_call>", "ebnf", "arguments"),                          # Hermes tags
])
def test_the_forced_call_follows_the_templates_format(template, kind, arguments_key):
    tokenizer = formers.AutoTokenizer.from_pretrained(CHECKPOINT_DIR)
    tokenizer.chat_template = template
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "x"}], tools=[WEATHER, CLOCK],
                                    tool_choice={"type": "function", "function": {"name": "get_time"}})
    grammar = forced_tool_grammar(tokenizer, request)
    assert grammar.kind == kind
    if kind == "json_schema":
        schema = json.loads(grammar.source)
        assert schema["properties"]["name"] == {"enum": ["get_time"]} and schema["required"] == ["name", arguments_key]
        assert schema["properties"][arguments_key] == CLOCK["function"]["parameters"]
    else:
        assert grammar.source.count("<tool_call>") == 1 and "</tool_call>" in grammar.source
