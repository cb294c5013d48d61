"""OpenAI request bodies (validated by pydantic: a wrong type or range is a 400 naming the field).

Fields follow the OpenAI API; unknown fields are ignored as OpenAI ignores them. A few sampling
settings OpenAI lacks (top_k, min_p, repetition_penalty, ignore_eos, stop_token_ids) are accepted as
extra body fields, as vLLM accepts them, since the engine supports them. Sampling fields left unset
(None) take the model's generation_config values (see runner.sampling_defaults).
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
)

Stop = Optional[Union[StrictStr, list[StrictStr]]]


class StreamOptions(BaseModel):
    include_usage: StrictBool = False


class JSONSchemaFormat(BaseModel):
    """response_format.json_schema: the schema is always enforced (by a grammar), `strict` or not."""

    model_config = ConfigDict(populate_by_name=True)
    name: StrictStr = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: Optional[str] = None
    json_schema: Optional[dict[str, Any]] = Field(None, alias="schema")
    strict: Optional[StrictBool] = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: Optional[JSONSchemaFormat] = None


class SamplingFields(BaseModel):
    """What completions and chat completions share."""

    model: StrictStr
    n: int = Field(1, ge=1, le=64)
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: Optional[dict[str, float]] = None
    seed: Optional[StrictInt] = None
    stop: Stop = None
    stream: StrictBool = False
    stream_options: Optional[StreamOptions] = None
    user: Optional[str] = None
    response_format: Optional[ResponseFormat] = None  # on completions too (beyond OpenAI)
    # beyond OpenAI (vLLM's names)
    top_k: Optional[int] = Field(None, ge=-1)
    min_p: Optional[float] = Field(None, ge=0.0, le=1.0)
    repetition_penalty: Optional[float] = Field(None, gt=0.0)
    ignore_eos: StrictBool = False
    stop_token_ids: Optional[list[StrictInt]] = None
    guided_json: Optional[Union[dict[str, Any], StrictStr]] = None   # structured output (http/structured.py)
    guided_regex: Optional[StrictStr] = None
    guided_choice: Optional[list[StrictStr]] = Field(None, min_length=1)
    guided_grammar: Optional[StrictStr] = None

    @field_validator("logit_bias")
    @classmethod
    def _bias_range(cls, value: Optional[dict[str, float]]) -> Optional[dict[str, float]]:
        for key, bias in (value or {}).items():
            if not key.lstrip("-").isdigit():
                raise ValueError(f"logit_bias keys must be token ids (integers as strings), got {key!r}")
            if not -100.0 <= bias <= 100.0:
                raise ValueError(f"logit_bias[{key}]={bias} is outside [-100, 100]")
        return value

    @field_validator("stop")
    @classmethod
    def _stop_count(cls, value: Stop) -> Stop:
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > 16 or any(s == "" for s in stops):
            raise ValueError("stop takes at most 16 non-empty strings")
        return value

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


Prompt = Union[StrictStr, list[StrictStr], list[StrictInt], list[list[StrictInt]]]


class CompletionRequest(SamplingFields):
    prompt: Prompt
    max_tokens: Optional[int] = Field(16, ge=1)
    logprobs: Optional[int] = Field(None, ge=0, le=20)
    echo: StrictBool = False
    suffix: Optional[str] = None
    best_of: Optional[int] = Field(None, ge=1)

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, value: Prompt) -> Prompt:
        if isinstance(value, list) and (not value or any(isinstance(v, list) and not v for v in value)):
            raise ValueError("prompt must not be empty")
        return value

    def prompts(self) -> list[Union[str, list[int]]]:
        """One entry per prompt: a text or a list of token ids."""
        if isinstance(self.prompt, str):
            return [self.prompt]
        if all(isinstance(p, int) for p in self.prompt):
            return [list(self.prompt)]  # type: ignore[arg-type]
        return list(self.prompt)  # type: ignore[arg-type]


class FunctionCall(BaseModel):
    name: StrictStr
    arguments: Union[StrictStr, dict[str, Any]] = "{}"


class ToolCall(BaseModel):
    id: Optional[str] = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ContentPart(BaseModel):
    type: StrictStr
    text: Optional[StrictStr] = None


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Optional[Union[StrictStr, list[ContentPart]]] = None
    name: Optional[StrictStr] = None
    tool_calls: Optional[list[ToolCall]] = None
    tool_call_id: Optional[StrictStr] = None

    @field_validator("content")
    @classmethod
    def _text_parts_only(cls, value):
        for part in value if isinstance(value, list) else []:
            if part.type != "text" or part.text is None:
                raise ValueError(f"only text content parts are supported, got type {part.type!r}")
        return value

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content)
        return self.content or ""


class FunctionDefinition(BaseModel):
    name: StrictStr
    description: Optional[str] = None
    parameters: Optional[dict[str, Any]] = None


class Tool(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedToolChoice(BaseModel):
    type: Literal["function"] = "function"
    function: dict[str, StrictStr]


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    logprobs: StrictBool = False
    top_logprobs: Optional[int] = Field(None, ge=0, le=20)
    tools: Optional[list[Tool]] = None
    tool_choice: Optional[Union[Literal["none", "auto", "required"], NamedToolChoice]] = None
    parallel_tool_calls: Optional[StrictBool] = None
    add_generation_prompt: StrictBool = True  # beyond OpenAI (vLLM's name)

    def output_limit(self) -> Optional[int]:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def tools_active(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"
