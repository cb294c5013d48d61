"""apply_chat_template against transformers 4.45.2 with real public chat templates."""
from __future__ import annotations

import json
import shutil
from collections.abc import Mapping

import pytest
import torch

from formers.errors import ChatTemplateError

from . import tok_chat_templates as T
from .conftest import load_both, shared_dir


def get_weather(location: str, unit: str = "celsius") -> str:
    """
    Get the current weather at a location.

    Args:
        location: The city and country, e.g. "Paris, France" or "東京, 日本"
        unit: The temperature unit (choices: ["celsius", "fahrenheit"])

    Returns:
        A short description of the weather.
    """
    return "sunny"


def add(a: int, b: float) -> float:
    """Add two numbers.

    Args:
        a: The first number
        b: The second number
    """
    return a + b


RAW_TOOL = {"type": "function", "function": {
    "name": "search_web", "description": "Search the web for a query – résumé ✓",
    "parameters": {"type": "object", "properties": {"query": {"type": "string", "description": "What to search"}},
                   "required": ["query"]}}}

BASIC = [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "Hello! How are you?"},
         {"role": "assistant", "content": " I'm fine, thanks. "},
         {"role": "user", "content": "Tell me a joke about 猫 🐈."}]
NO_SYSTEM = BASIC[1:]
PREFILL = [{"role": "user", "content": "Write a haiku."}, {"role": "assistant", "content": "Autumn moonlight—"}]
TOOL_CHAT = [
    {"role": "user", "content": "What's the weather in Paris?"},
    {"role": "assistant", "tool_calls": [{"id": "abc123def", "type": "function", "function": {
        "name": "get_weather", "arguments": {"location": "Paris, France", "unit": "celsius"}}}]},
    {"role": "tool", "name": "get_weather", "tool_call_id": "abc123def", "content": "22 degrees, sunny"},
    {"role": "assistant", "content": "It is 22 °C and sunny in Paris."},
    {"role": "user", "content": "Thanks!"},
]
DOCUMENTS = [{"title": "Tall penguins", "text": "Emperor penguins are the tallest."},
             {"title": "Penguin habitats", "text": "Emperor penguins only live in Antarctica."}]

CASES = {  # name: (template, conversations, extra apply_chat_template kwargs)
    "chatml_qwen": (T.CHATML_QWEN, [BASIC, NO_SYSTEM, TOOL_CHAT, PREFILL], {}),
    "llama2": (T.LLAMA2_CHAT, [BASIC, NO_SYSTEM, PREFILL], {}),
    "llama31": (T.LLAMA31, [BASIC, NO_SYSTEM, TOOL_CHAT, PREFILL], {}),
    "llama32_date": (T.LLAMA32_DATE, [BASIC, PREFILL], {}),
    "mistral_v3": (T.MISTRAL_V3, [BASIC, NO_SYSTEM, TOOL_CHAT, PREFILL], {}),
    "zephyr": (T.ZEPHYR, [BASIC, NO_SYSTEM, PREFILL], {}),
    "hermes_tool_use": (T.HERMES_TOOL_USE, [BASIC, TOOL_CHAT, PREFILL], {"tools": [RAW_TOOL]}),
    "command_r_rag": (T.COMMAND_R_RAG, [BASIC, NO_SYSTEM, PREFILL], {"documents": DOCUMENTS}),
}
TOOL_TEMPLATES = {"chatml_qwen", "llama31", "mistral_v3", "hermes_tool_use"}


@pytest.fixture(scope="module", params=["stories260K", "llama2"])
def llama_pair(request):
    """A SentencePiece Llama tokenizer: the vendored stories260K one, and Llama 2's where ../shared has it."""
    return load_both(shared_dir(request.param), pad_token="<unk>")


@pytest.fixture(scope="module")
def named_pair(tmp_path_factory):
    """stories260K tokenizer copy whose tokenizer_config.json holds named templates (default/tool_use/rag)."""
    source = shared_dir("stories260K")
    folder = tmp_path_factory.mktemp("stories-named-templates")
    for name in ("tokenizer.json", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["chat_template"] = T.NAMED
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return load_both(folder)


def outcome(call):
    """('ok', value as plain data) or ('error', message)."""
    try:
        value = call()
    except Exception as exc:  # the oracle raises jinja2 TemplateError / ValueError
        return "error", str(exc)
    if isinstance(value, Mapping):  # formers' BatchEncoding is a dict, transformers' a UserDict
        value = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in value.items()}
    elif hasattr(value, "tolist"):
        value = value.tolist()
    return "ok", value


def assert_same(mine_call, ref_call) -> str:
    """Both return the same value, or both fail: formers with a ChatTemplateError whose message carries the
    oracle's message. Returns the oracle's outcome kind ('ok' or 'error')."""
    expected = outcome(ref_call)
    if expected[0] == "error":
        with pytest.raises(ChatTemplateError) as caught:
            mine_call()
        assert expected[1] and expected[1] in str(caught.value), (expected[1], str(caught.value))
    else:
        assert outcome(mine_call) == expected
    return expected[0]


VARIANTS = [
    dict(tokenize=False), dict(tokenize=False, add_generation_prompt=True), dict(tokenize=True),
    dict(tokenize=True, return_dict=True), dict(tokenize=True, return_tensors="pt"),
    dict(tokenize=True, return_dict=True, return_tensors="pt", add_generation_prompt=True),
]


@pytest.mark.parametrize("template_name", sorted(CASES))
def test_templates_match(llama_pair, template_name, oracle_schema):
    mine, ref = llama_pair
    template, conversations, extra = CASES[template_name]
    for conversation in conversations:
        for variant in VARIANTS:
            assert_same(lambda: mine.apply_chat_template(conversation, chat_template=template, **variant, **extra),
                        lambda: ref.apply_chat_template(conversation, chat_template=template, **variant, **extra))
        if conversation is PREFILL:
            assert_same(lambda: mine.apply_chat_template(conversation, chat_template=template, tokenize=False,
                                                         continue_final_message=True, **extra),
                        lambda: ref.apply_chat_template(conversation, chat_template=template, tokenize=False,
                                                        continue_final_message=True, **extra))
    if template_name in TOOL_TEMPLATES:
        for tools in ([get_weather, add], [RAW_TOOL], [get_weather, RAW_TOOL]):
            for variant in VARIANTS[:3]:
                assert_same(
                    lambda: mine.apply_chat_template(TOOL_CHAT, tools=tools, chat_template=template, **variant),
                    lambda: ref.apply_chat_template(TOOL_CHAT, tools=tools, chat_template=template, **variant))


def test_template_kwargs_and_date(llama_pair):
    mine, ref = llama_pair
    for kwargs in (dict(date_string="01 Jan 2025"), dict(tools_in_user_message=False, tools=[RAW_TOOL]),
                   dict(builtin_tools=["brave_search", "wolfram_alpha"])):
        assert_same(lambda: mine.apply_chat_template(BASIC, chat_template=T.LLAMA31, tokenize=False, **kwargs),
                    lambda: ref.apply_chat_template(BASIC, chat_template=T.LLAMA31, tokenize=False, **kwargs))
    text = mine.apply_chat_template(BASIC, chat_template=T.LLAMA32_DATE, tokenize=False)
    assert text == ref.apply_chat_template(BASIC, chat_template=T.LLAMA32_DATE, tokenize=False)
    assert "Today Date: " in text and "26 Jul 2024" not in text


def test_named_templates_from_config(named_pair, oracle_schema):
    mine, ref = named_pair
    assert mine.chat_template == ref.chat_template and set(mine.chat_template) == {"default", "tool_use", "rag"}
    calls = [
        dict(conversation=BASIC), dict(conversation=TOOL_CHAT, tools=[get_weather]),
        dict(conversation=TOOL_CHAT, tools=[RAW_TOOL], chat_template="tool_use", add_generation_prompt=True),
        dict(conversation=NO_SYSTEM, chat_template="rag", documents=DOCUMENTS, add_generation_prompt=True),
        dict(conversation=NO_SYSTEM, chat_template="rag", documents=DOCUMENTS, citation_mode="accurate"),
        dict(conversation=BASIC, chat_template=T.ZEPHYR),
    ]
    for kwargs in calls:
        for extra in (dict(tokenize=False), dict(return_dict=True)):
            assert_same(lambda: mine.apply_chat_template(**kwargs, **extra),
                        lambda: ref.apply_chat_template(**kwargs, **extra))
    assert mine.get_chat_template("rag") == ref.get_chat_template("rag") == T.COMMAND_R_RAG
    assert mine.get_chat_template(tools=[RAW_TOOL]) == T.HERMES_TOOL_USE


def test_batched_conversations(llama_pair):
    mine, ref = llama_pair
    batch = [BASIC, NO_SYSTEM, PREFILL]
    for kwargs in (dict(tokenize=False), dict(tokenize=True), dict(padding=True, return_tensors="pt"),
                   dict(padding=True, return_dict=True, return_tensors="pt", add_generation_prompt=True),
                   dict(truncation=True, max_length=12, return_dict=True),
                   dict(tokenizer_kwargs={"return_attention_mask": False}, return_dict=True)):
        assert_same(lambda: mine.apply_chat_template(batch, chat_template=T.ZEPHYR, **kwargs),
                    lambda: ref.apply_chat_template(batch, chat_template=T.ZEPHYR, **kwargs))
    out = mine.apply_chat_template(batch, chat_template=T.ZEPHYR, padding=True, return_tensors="pt")
    assert isinstance(out, torch.Tensor) and out.shape[0] == 3


def test_assistant_tokens_mask(llama_pair):
    mine, ref = llama_pair
    for conversation in ([BASIC, NO_SYSTEM], NO_SYSTEM):
        assert_same(lambda: mine.apply_chat_template(conversation, chat_template=T.CHATML_GENERATION,
                                                     return_dict=True, return_assistant_tokens_mask=True),
                    lambda: ref.apply_chat_template(conversation, chat_template=T.CHATML_GENERATION,
                                                    return_dict=True, return_assistant_tokens_mask=True))
    out = mine.apply_chat_template(NO_SYSTEM, chat_template=T.CHATML_GENERATION, return_dict=True,
                                   return_assistant_tokens_mask=True)
    assert 0 < sum(out["assistant_masks"]) < len(out["input_ids"])


def test_raise_exception_becomes_chat_template_error(llama_pair):
    mine, ref = llama_pair
    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(Exception, match="Conversation roles must alternate"):
        ref.apply_chat_template(bad, chat_template=T.LLAMA2_CHAT)
    with pytest.raises(ChatTemplateError, match="Conversation roles must alternate user/assistant"):
        mine.apply_chat_template(bad, chat_template=T.LLAMA2_CHAT)
    with pytest.raises(ChatTemplateError, match="Tool call IDs should be alphanumeric"):
        short_id = [TOOL_CHAT[0], {**TOOL_CHAT[1], "tool_calls": [{**TOOL_CHAT[1]["tool_calls"][0], "id": "x"}]}]
        mine.apply_chat_template(short_id, chat_template=T.MISTRAL_V3)


ORACLE_ERRORS = {  # name: (template, conversation); 4.45.2 fails on each
    "raise_exception_roles": (T.LLAMA2_CHAT, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]),
    "raise_exception_tool_id": (T.MISTRAL_V3, [TOOL_CHAT[0], {**TOOL_CHAT[1], "tool_calls": [
        {**TOOL_CHAT[1]["tool_calls"][0], "id": "x"}]}]),
    "undefined_method": ("{{ messages[0].content.shout() }}", BASIC),
    "zero_division": ("{{ messages | length // 0 }}", BASIC),
}


@pytest.mark.parametrize("case", sorted(ORACLE_ERRORS))
def test_errors_carry_the_oracle_message(llama_pair, case):
    """Where 4.45.2's apply_chat_template fails, formers raises ChatTemplateError with the same message inside."""
    mine, ref = llama_pair
    template, conversation = ORACLE_ERRORS[case]
    for tokenize in (False, True):
        kind = assert_same(lambda: mine.apply_chat_template(conversation, chat_template=template, tokenize=tokenize),
                           lambda: ref.apply_chat_template(conversation, chat_template=template, tokenize=tokenize))
        assert kind == "error"


def test_template_errors_name_the_template(llama_pair, named_pair):
    mine, _ = llama_pair
    with pytest.raises(ChatTemplateError, match="chat_template is not set"):
        mine.apply_chat_template(BASIC)
    with pytest.raises(ChatTemplateError, match="not valid Jinja"):
        mine.apply_chat_template(BASIC, chat_template="{% for m in messages %}")
    with pytest.raises(ChatTemplateError, match="'rag' failed to render"):
        named_pair[0].apply_chat_template(BASIC, chat_template="rag", documents=None)
    with pytest.raises(ChatTemplateError, match="return_dict=True needs tokenize=True"):
        mine.apply_chat_template(BASIC, chat_template=T.ZEPHYR, tokenize=False, return_dict=True)
    with pytest.raises(ChatTemplateError, match="cannot both be True"):
        mine.apply_chat_template(PREFILL, chat_template=T.ZEPHYR, continue_final_message=True,
                                 add_generation_prompt=True)
    with pytest.raises(ChatTemplateError, match="tools"):
        mine.apply_chat_template(BASIC, chat_template=T.ZEPHYR, tools=["not a tool"])
    with pytest.raises(ChatTemplateError, match="documents"):
        mine.apply_chat_template(BASIC, chat_template=T.ZEPHYR, documents=["just text"])


def test_sandbox_blocks_unsafe_access(llama_pair):
    mine, _ = llama_pair
    with pytest.raises(ChatTemplateError, match="failed to render"):
        mine.apply_chat_template(BASIC, chat_template="{{ messages.__class__.__mro__ }}{{ ''.__class__.mro() }}")
    with pytest.raises(ChatTemplateError, match="failed to render"):
        mine.apply_chat_template(BASIC, chat_template="{% set _ = messages.append(1) %}")
