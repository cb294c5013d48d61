"""Per-request sampling parameters of the serving engine (the OpenAI / vLLM vocabulary).

Semantics, and how they line up with `generate()` (so a request reproduces `generate()` of it alone):
  - temperature == 0: greedy (generate's do_sample=False); otherwise sampling with temperature, top_k
    (0 = off), top_p, min_p applied in that order, as 4.45's warpers are;
  - repetition_penalty: 4.45's RepetitionPenaltyLogitsProcessor over prompt and output ids;
  - presence/frequency penalties (OpenAI's, no generate() counterpart): over the output ids only;
  - logit_bias: added to the raw logits before everything else (like generate's sequence_bias for
    single tokens);
  - seed: the request owns a torch.Generator seeded with it and draws exactly as generate()'s
    `torch.multinomial(probs, 1)` draws from the global RNG after `torch.manual_seed(seed)` (with n > 1,
    continuation i uses seed + i); requests without a seed share the engine's generator, itself seeded
    from torch's global RNG when the engine is built;
  - logprobs: None = none, 0 = the chosen token's log-probability only, k = also the top k
    alternatives, all from log_softmax of the raw model logits;
  - grammar: structured output (see serving/grammar.py): any spec `formers.structured.Grammar.from_spec`
    reads (a JSON-schema dict, pydantic model or function, {"type": "regex" | "ebnf" | "json", "value": ...},
    a Grammar) or an OpenAI response_format dict ({"type": "json_object"}, {"type": "json_schema", ...});
    normalised to a Grammar (None for {"type": "text"}). Its mask applies after the penalties and
    before the warpers, where generate(grammar=...) applies it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import GrammarError, ServingError
from ..structured.grammar import Grammar

MAX_LOGPROBS = 20
_RESPONSE_FORMAT_TYPES = ("text", "json_object", "json_schema")  # never JSON-schema "type" values


@dataclass
class SamplingParams:
    """What to generate for one request; `validate()` runs on construction and names the bad field."""

    n: int = 1
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: int | None = None
    grammar: Any = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = list(self.stop or [])
        self.stop_token_ids = list(self.stop_token_ids or [])
        self.validate()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def validate(self, vocab_size: int | None = None) -> None:
        """Raise ServingError naming the first field that is out of range (token ids against `vocab_size`)."""
        _int_at_least("n", self.n, 1)
        _int_at_least("max_tokens", self.max_tokens, 1)
        _int_at_least("top_k", self.top_k, 0)
        _number_in("temperature", self.temperature, 0.0, None)
        _number_in("top_p", self.top_p, 0.0, 1.0, low_open=True)
        _number_in("min_p", self.min_p, 0.0, 1.0)
        _number_in("repetition_penalty", self.repetition_penalty, 0.0, None, low_open=True)
        _number_in("presence_penalty", self.presence_penalty, -2.0, 2.0)
        _number_in("frequency_penalty", self.frequency_penalty, -2.0, 2.0)
        if self.seed is not None and (not _is_int(self.seed)):
            raise ServingError(f"SamplingParams.seed: expected an int or None, got {self.seed!r}")
        if self.logprobs is not None:
            _int_at_least("logprobs", self.logprobs, 0)
            if self.logprobs > MAX_LOGPROBS:
                raise ServingError(f"SamplingParams.logprobs: at most {MAX_LOGPROBS}, got {self.logprobs}")
        if not isinstance(self.ignore_eos, bool):
            raise ServingError(f"SamplingParams.ignore_eos: expected a bool, got {self.ignore_eos!r}")
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ServingError(f"SamplingParams.stop: expected non-empty strings, got {self.stop!r}")
        for token in self.stop_token_ids:
            _token_id("stop_token_ids", token, vocab_size)
        if self.logit_bias is not None:
            if not isinstance(self.logit_bias, dict):
                raise ServingError(f"SamplingParams.logit_bias: expected a dict {{token id: bias}}, got "
                                   f"{type(self.logit_bias).__name__}")
            self.logit_bias = {int(_token_id("logit_bias", k, vocab_size)): float(_number_in("logit_bias", v, -100.0, 100.0))
                               for k, v in self.logit_bias.items()}
        if self.grammar is not None:
            self.grammar = _as_grammar(self.grammar)

    def replace(self, **changes) -> SamplingParams:
        """A validated copy with `changes` applied."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return SamplingParams(**values)


def _as_grammar(spec: Any) -> Grammar | None:
    """A grammar spec or OpenAI response_format dict -> Grammar (None: unconstrained text)."""
    try:
        if isinstance(spec, dict) and spec.get("type") in _RESPONSE_FORMAT_TYPES:
            return Grammar.from_response_format(spec)
        return Grammar.from_spec(spec)
    except GrammarError as err:
        raise ServingError(f"SamplingParams.grammar: {err}") from None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_at_least(name: str, value, low: int) -> None:
    if not _is_int(value) or value < low:
        raise ServingError(f"SamplingParams.{name}: expected an int >= {low}, got {value!r}")


def _number_in(name: str, value, low: float, high: float | None, low_open: bool = False):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        raise ServingError(f"SamplingParams.{name}: expected a number, got {value!r}")
    too_low = value <= low if low_open else value < low
    if too_low or (high is not None and value > high):
        bound = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high is not None else "")
        raise ServingError(f"SamplingParams.{name}: expected a number {bound}, got {value!r}")
    return value


def _token_id(name: str, value, vocab_size: int | None):
    try:
        token = int(value)  # JSON object keys arrive as strings ("50256")
    except (TypeError, ValueError):
        raise ServingError(f"SamplingParams.{name}: expected token ids (ints), got {value!r}") from None
    if token < 0 or (vocab_size is not None and token >= vocab_size):
        limit = f" below the vocabulary size {vocab_size}" if vocab_size is not None else ""
        raise ServingError(f"SamplingParams.{name}: token id {value!r} is not a valid id (>= 0{limit})")
    return token
