"""LLM engines for agents: callables taking chat messages (and `stop_sequences`, `grammar`) and returning text.

Any callable with that contract works as an agent's `llm_engine`. `TransformersEngine` runs a formers
text-generation pipeline and honours `grammar` with formers' structured-output processors (4.45's own
local engine ignored it). `OpenAIServerEngine` talks to any OpenAI-compatible server, `formers serve`
included. `HfApiEngine` keeps 4.45's name for the Hugging Face Inference API client.
"""
from __future__ import annotations

import copy
from enum import Enum
from typing import Any

from ..errors import FormersError


class MessageRole(str, Enum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    TOOL_CALL = "tool-call"
    TOOL_RESPONSE = "tool-response"

    @classmethod
    def roles(cls) -> list[str]:
        return [role.value for role in cls]


class AgentEngineError(FormersError, ValueError):
    """An agent's messages or grammar cannot be passed to the engine."""


# chat templates know user/assistant/system only: tool outputs go in as user turns
llama_role_conversions = {MessageRole.TOOL_RESPONSE: MessageRole.USER}


def get_clean_message_list(message_list: list[dict[str, str]], role_conversions: dict[str, str] | None = None
                           ) -> list[dict[str, str]]:
    """Check the messages, rename roles by `role_conversions` and merge consecutive messages of one role."""
    conversions = {str(MessageRole(k).value): str(MessageRole(v).value) for k, v in (role_conversions or {}).items()}
    cleaned: list[dict[str, str]] = []
    for index, message in enumerate(copy.deepcopy(message_list)):
        if set(message) != {"role", "content"}:
            raise AgentEngineError(f"message {index} has keys {sorted(message)}; expected exactly 'role' and 'content'")
        role = message["role"].value if isinstance(message["role"], MessageRole) else message["role"]
        if role not in MessageRole.roles():
            raise AgentEngineError(f"message {index} has role {role!r}; expected one of {MessageRole.roles()}")
        role = conversions.get(role, role)
        if cleaned and cleaned[-1]["role"] == role:
            cleaned[-1]["content"] += "\n=======\n" + message["content"]
        else:
            cleaned.append({"role": role, "content": message["content"]})
    return cleaned


def remove_stop_sequences(text: str, stop_sequences: list[str] | None) -> str:
    """Drop a stop sequence the output ends with (generation stops after emitting it)."""
    for stop in stop_sequences or []:
        if stop and text.endswith(stop):
            return text[: -len(stop)]
    return text


class TransformersEngine:
    """An engine over a formers text-generation pipeline; `grammar` constrains the output."""

    def __init__(self, pipeline, max_new_tokens: int | None = None) -> None:
        self.pipeline = pipeline
        self.max_new_tokens = max_new_tokens

    def __call__(self, messages: list[dict[str, str]], stop_sequences: list[str] | None = None,
                 grammar: dict[str, Any] | None = None) -> str:
        messages = get_clean_message_list(messages, role_conversions=llama_role_conversions)
        settings: dict[str, Any] = {"stop_strings": stop_sequences or None, "tokenizer": self.pipeline.tokenizer}
        if self.max_new_tokens is not None:
            settings["max_new_tokens"] = self.max_new_tokens
        else:
            settings["max_length"] = 1500
        if grammar is not None:  # generate() reads TGI's {"type": "regex"|"json"|"ebnf", "value": ...} as is
            settings["grammar"] = grammar
        output = self.pipeline(messages, **settings)
        return remove_stop_sequences(output[0]["generated_text"][-1]["content"], stop_sequences)


class OpenAIServerEngine:
    """An engine over an OpenAI-compatible chat-completions server (the `openai` package is used).

    `grammar` is sent as `response_format` when it is a JSON schema ({"type": "json", "value": schema}).
    """

    def __init__(self, model_id: str, api_base: str | None = None, api_key: str | None = None,
                 max_tokens: int = 1500, temperature: float | None = None, **client_kwargs) -> None:
        try:
            import openai
        except ImportError as error:
            raise AgentEngineError("OpenAIServerEngine needs the openai package: pip install openai") from error
        self.model_id = model_id
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.client = openai.OpenAI(base_url=api_base, api_key=api_key or "not-needed", **client_kwargs)

    def __call__(self, messages: list[dict[str, str]], stop_sequences: list[str] | None = None,
                 grammar: dict[str, Any] | None = None) -> str:
        messages = get_clean_message_list(messages, role_conversions=llama_role_conversions)
        extra: dict[str, Any] = {} if self.temperature is None else {"temperature": self.temperature}
        if grammar is not None:
            if grammar.get("type") != "json":
                raise AgentEngineError(f"OpenAIServerEngine: grammar type {grammar.get('type')!r} cannot be sent; "
                                       f"only JSON schemas ({{'type': 'json', 'value': schema}}) map to response_format")
            extra["response_format"] = {"type": "json_schema",
                                        "json_schema": {"name": "grammar", "schema": grammar["value"]}}
        response = self.client.chat.completions.create(model=self.model_id, messages=messages,
                                                       stop=stop_sequences or None, max_tokens=self.max_tokens,
                                                       **extra)
        return remove_stop_sequences(response.choices[0].message.content or "", stop_sequences)


class HfApiEngine:
    """4.45's engine for the Hugging Face Inference API (network service), through huggingface_hub's client.

    It needs network access to the Hub's inference service, which formers' own tests never use.
    """

    def __init__(self, model: str = "meta-llama/Meta-Llama-3.1-8B-Instruct", token: str | None = None,
                 max_tokens: int = 1500, timeout: int = 120) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.token = token
        self.timeout = timeout

    def __call__(self, messages: list[dict[str, str]], stop_sequences: list[str] | None = None,
                 grammar: dict[str, Any] | None = None) -> str:
        from huggingface_hub import InferenceClient

        client = InferenceClient(self.model, token=self.token, timeout=self.timeout)
        messages = get_clean_message_list(messages, role_conversions=llama_role_conversions)
        extra = {"response_format": grammar} if grammar is not None else {}
        response = client.chat_completion(messages, stop=stop_sequences or [], max_tokens=self.max_tokens, **extra)
        return remove_stop_sequences(response.choices[0].message.content, stop_sequences)


DEFAULT_JSONAGENT_REGEX_GRAMMAR = {
    "type": "regex",
    "value": 'Thought: .+?\\nAction:\\n\\{\\n\\s{4}"action":\\s"[^"\\n]+",\\n\\s{4}"action_input":\\s"[^"\\n]+"\\n\\}\\n<end_action>',
}
DEFAULT_CODEAGENT_REGEX_GRAMMAR = {
    "type": "regex",
    "value": "Thought: .+?\\nCode:\\n```(?:py|python)?\\n(?:.|\\s)+?\\n```<end_action>",
}
