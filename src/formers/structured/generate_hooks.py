"""generate(..., grammar=..., response_format=...): the two keyword arguments turned into a processor.

`grammar` takes any spec `Grammar.from_spec` reads, or a list with one per prompt (None: that prompt
is free); `response_format` takes OpenAI's shape. The processor goes among the user processors, so it
runs after the built-in processors and before the sampling warpers (top-k/top-p then only see allowed
tokens), and an assistant model drafts under the same grammar. It needs `tokenizer=` (the token
bytes) and an EOS id (a finished grammar ends the row with it).

Modes whose processor calls cannot follow per-row grammar state are refused: group (diverse) beam
search and constrained beam search call processors on slices of the batch; contrastive search may
pick a token of zero probability; batched assisted decoding packs rows whose lengths differ.
"""
from __future__ import annotations

from typing import Any

import torch

from ..errors import GrammarError
from ..generation.configuration_utils import GenerationMode
from ..generation.logits_base import LogitsProcessorList
from .grammar import Grammar
from .processor import GrammarLogitsProcessor

_REFUSED = {GenerationMode.GROUP_BEAM_SEARCH: "group (diverse) beam search",
            GenerationMode.CONSTRAINED_BEAM_SEARCH: "constrained beam search",
            GenerationMode.CONTRASTIVE_SEARCH: "contrastive search"}


def pop_structured_output(kwargs: dict) -> tuple[Any, Any]:
    """Remove generate()'s `grammar` and `response_format` from its kwargs -> (grammar, response_format)."""
    return kwargs.pop("grammar", None), kwargs.pop("response_format", None)


def _requested_grammar(grammar: Any, response_format: Any) -> Any:
    if grammar is not None and response_format is not None:
        raise GrammarError("generate() takes `grammar` or `response_format`, not both")
    if response_format is not None:
        return Grammar.from_response_format(response_format)
    return grammar


def with_structured_output(requested: tuple[Any, Any], user: LogitsProcessorList | None, tokenizer: Any,
                           eos: torch.Tensor | None, mode: GenerationMode, batch_size: int,
                           vocab_size: int) -> LogitsProcessorList | None:
    """The user processors plus a GrammarLogitsProcessor when one was asked for; every grammar processor
    among them is reset for this call and checked against the decoding mode."""
    grammar = _requested_grammar(*requested)
    processors = LogitsProcessorList(user or [])
    if grammar is not None:
        if tokenizer is None:
            raise GrammarError("generate(grammar=... / response_format=...) needs `tokenizer=` (the token bytes)")
        if eos is None:
            raise GrammarError("generate(grammar=...) needs an EOS id (eos_token_id) to end a finished grammar")
        processors.append(GrammarLogitsProcessor(grammar, tokenizer, eos_token_id=eos.reshape(-1).tolist(),
                                                 vocab_size=vocab_size))
    constrained = [p for p in processors if isinstance(p, GrammarLogitsProcessor)]
    if not constrained:
        return user
    if mode in _REFUSED:
        raise GrammarError(f"grammar-constrained generation does not support {_REFUSED[mode]}; use sampling, "
                           "greedy or beam search")
    if mode is GenerationMode.ASSISTED_GENERATION and batch_size > 1:
        raise GrammarError("grammar-constrained assisted decoding takes one prompt at a time "
                           f"(got a batch of {batch_size})")
    for processor in constrained:
        processor.reset()
    return processors
