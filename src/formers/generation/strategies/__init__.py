"""Decoding strategies: one module per family, one table from GenerationMode to runner.

A runner takes (ctx, prompt, cache) and returns the output dataclass with `past_key_values` set to the
cache it decoded with; generate() turns that into the user-facing return value.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ...errors import GenerationError
from ..configuration_utils import GenerationMode
from .assisted import run_assisted
from .beam import run_beam_search
from .constrained import run_constrained_beam_search
from .contrastive import run_contrastive_search
from .dola import run_dola
from .group_beam import run_group_beam_search
from .sample import run_sample

Runner = Callable[..., Any]

RUNNERS: dict[GenerationMode, Runner] = {
    GenerationMode.GREEDY_SEARCH: run_sample,
    GenerationMode.SAMPLE: run_sample,
    GenerationMode.DOLA_GENERATION: run_dola,
    GenerationMode.CONTRASTIVE_SEARCH: run_contrastive_search,
    GenerationMode.ASSISTED_GENERATION: run_assisted,
    GenerationMode.BEAM_SEARCH: run_beam_search,
    GenerationMode.BEAM_SAMPLE: run_beam_search,
    GenerationMode.GROUP_BEAM_SEARCH: run_group_beam_search,
    GenerationMode.CONSTRAINED_BEAM_SEARCH: run_constrained_beam_search,
}


# Strategies that go back to earlier positions in ways a state cache cannot follow (4.45 refuses them too).
_NEEDS_POSITION_CACHE = {GenerationMode.CONTRASTIVE_SEARCH: "contrastive search",
                         GenerationMode.DOLA_GENERATION: "dola decoding"}


def run_strategy(mode: GenerationMode, ctx, prompt, cache):
    if cache is not None and cache.recurrent and mode in _NEEDS_POSITION_CACHE:
        raise GenerationError(f"{_NEEDS_POSITION_CACHE[mode]} is not supported with stateful models such as "
                              f"{type(ctx.model).__name__} (its {type(cache).__name__} cannot go back a position)")
    return RUNNERS[mode](ctx, prompt, cache)


def validate_mode(mode: GenerationMode, config, prompt, streamer, use_cache: bool) -> None:
    """The per-mode refusals of transformers 4.45 (batched assisted decoding is allowed here)."""
    if streamer is not None and config.num_beams > 1:
        raise GenerationError("`streamer` cannot be used with beam search (yet!): set `num_beams=1`")
    if mode is GenerationMode.ASSISTED_GENERATION:
        if config.num_return_sequences > 1:
            raise GenerationError(f"num_return_sequences has to be 1 when doing assisted generate, but is "
                                  f"{config.num_return_sequences}")
        if not use_cache:
            raise GenerationError("assisted generate requires `use_cache=True`")
        if streamer is not None and prompt.batch_size > 1:
            raise GenerationError("a streamer takes one row: stream assisted decoding one prompt at a time")
        if config.cache_implementation in ("static", "hybrid", "sliding_window"):
            raise GenerationError("assisted generate is not supported with static cache classes "
                                  f"(`cache_implementation={config.cache_implementation!r}`)")
    if mode is GenerationMode.CONTRASTIVE_SEARCH and not use_cache:
        raise GenerationError("Contrastive search requires `use_cache=True`")
    if torch.compiler.is_compiling():
        _validate_compiled(mode, config, streamer)


_COMPILED_ADVICE = "; run generate() uncompiled (compiling model.forward instead keeps most of the speed)"


def refuse_when_compiled(argument: str) -> None:
    """generate()'s `argument` reads generated tokens back to the host each step: refused while compiling."""
    if torch.compiler.is_compiling():
        raise GenerationError(f"a compiled generate() takes no `{argument}`" + _COMPILED_ADVICE)


def _validate_compiled(mode: GenerationMode, config, streamer) -> None:
    """What torch.compile(model.generate) supports: the strategies whose loop needs no host read."""
    if mode not in (GenerationMode.GREEDY_SEARCH, GenerationMode.SAMPLE):
        raise GenerationError(f"a compiled generate() runs greedy search and sampling only, not {mode.value}"
                              + _COMPILED_ADVICE)
    for argument, value in (("streamer", streamer), ("stop_strings", config.stop_strings)):
        if value is not None:
            refuse_when_compiled(argument)
