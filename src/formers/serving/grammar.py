"""Structured output in the serving engine: one grammar matcher per sequence, one mask per step.

A request whose `SamplingParams.grammar` is set is constrained exactly as `generate(grammar=...)`
constrains it: the grammar is compiled once per (tokenizer, logits width, EOS ids, grammar) by
formers.structured's cache, each sequence (each of a request's n continuations) owns a matcher, and
before sampling the rows with a grammar get their allowed-token bitmask applied in one vectorised op
(rows without a grammar are not touched). EOS is allowed exactly where the grammar may end; the token
that completes the grammar terminates the matcher and finishes the sequence ("stop"), even with
`ignore_eos`.

The matcher's state is a function of the sequence's generated tokens only, so it is checked against
them before every mask: a sequence preempted by recompute, or whose prompt came from the prefix
cache, keeps its generated tokens and so its matcher; a matcher that does not match them (or is
missing) is rolled back / rebuilt by replaying them (`RowMatchers.sync`). Matchers are held weakly by
sequence, so a finished or aborted sequence drops its matcher with no bookkeeping in the engine.

Compiled grammars are also kept here, read without a lock: the server compiles a request's grammar on
a worker thread before adding it (http/structured.py), so the engine thread finds it compiled and never
waits on the shared compiler's lock while another request's grammar compiles. The host bitmask is one
buffer reused across steps (pinned on CUDA; each step's copy has finished by the step's one host read).
"""
from __future__ import annotations

import weakref
from typing import Any

import torch

from ..errors import GrammarError, ServingError
from ..structured.bitmask import apply_token_bitmask
from ..structured.compiler import compile_grammar, compiler_for
from ..structured.grammar import Grammar
from ..structured.matchers import RowMatchers


class SequenceGrammars:
    """The grammar matchers of an engine's sequences (keyed weakly by `Sequence`)."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: set[int], device: torch.device):
        self.tokenizer, self.vocab_size = tokenizer, vocab_size
        self.pin = device.type == "cuda"  # the host mask goes to the device without a sync
        self.stop_ids = tuple(sorted(stop_ids))
        self.words = (vocab_size + 31) // 32  # int32 words per bitmask row
        self._matchers: weakref.WeakKeyDictionary[Any, RowMatchers] = weakref.WeakKeyDictionary()
        self._compiled: dict[Grammar, Any] = {}
        self._refused: frozenset | None = None   # special ids, never accepted (the compiler's)
        self._host = torch.empty((0, self.words), dtype=torch.int32)

    def compile(self, grammar: Grammar) -> Any:
        """The compiled grammar (cached); ServingError naming SamplingParams.grammar when it cannot be."""
        found = self._compiled.get(grammar)
        if found is not None:
            return found
        if self.tokenizer is None:
            raise ServingError("SamplingParams.grammar: structured output needs the engine to have a tokenizer")
        try:
            found = compile_grammar(grammar, self.tokenizer, self.vocab_size, self.stop_ids)
        except GrammarError as err:
            raise ServingError(f"SamplingParams.grammar: {err}") from None
        self._compiled[grammar] = found
        return found

    def check(self, params: Any) -> None:
        """Compile a request's grammar when it is added, so a bad one is refused then, not mid-batch."""
        if params.grammar is not None:
            self.compile(params.grammar)

    def _synced(self, seq: Any) -> RowMatchers:
        """The sequence's matcher, brought to have consumed exactly its generated tokens."""
        matchers = self._matchers.get(seq)
        if matchers is None:
            import xgrammar

            compiled = self.compile(seq.params.grammar)
            if self._refused is None:
                self._refused = compiler_for(self.tokenizer, self.vocab_size, self.stop_ids).special_ids
            matchers = RowMatchers([compiled], xgrammar.GrammarMatcher, self._refused)
            self._matchers[seq] = matchers
        if len(matchers.rows[0].history) != len(seq.ids) - seq.prompt_len:
            matchers.sync([seq.output_ids])
        return matchers

    def bitmask(self, seqs: list[Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(row indices [G], packed bitmask [G, W] int32) for the rows of `seqs` that have a grammar;
        None when none has one."""
        rows = [i for i, seq in enumerate(seqs) if seq.params.grammar is not None]
        if not rows:
            return None
        if self._host.shape[0] < len(rows):
            self._host = torch.empty((max(len(rows), 2 * self._host.shape[0], 8), self.words), dtype=torch.int32,
                                     pin_memory=self.pin)
        mask = self._host[:len(rows)]
        mask.fill_(-1)
        for g, i in enumerate(rows):
            row = self._synced(seqs[i]).rows[0]
            if row.rejected is None and not row.matcher.is_terminated():
                row.matcher.fill_next_token_bitmask(mask, g)
        return torch.tensor(rows), mask

    def advance(self, seq: Any) -> bool:
        """After a token was appended to `seq.ids`: move its matcher; True when the grammar is complete."""
        if seq.params.grammar is None:
            return False
        return self._synced(seq).rows[0].matcher.is_terminated()


def apply_grammar_mask(scores: torch.Tensor, mask: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """scores [R, V] with the tokens each grammar row forbids set to -inf (a new tensor; others untouched)."""
    if mask is None:
        return scores
    rows, bitmask = mask
    rows = rows.to(scores.device, non_blocking=True)
    return scores.index_copy(0, rows, apply_token_bitmask(scores.index_select(0, rows), bitmask))
