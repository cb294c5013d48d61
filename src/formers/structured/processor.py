"""`GrammarLogitsProcessor`: next-token scores limited to what a grammar allows, per row.

Each call syncs the rows' matchers with the generated tokens (see `matchers.py`), fills a bitmask
[N, ceil(V / 32)] (int32, CPU) with the allowed tokens, and masks the scores in one vectorised op.
EOS is allowed exactly where the grammar may end; after it the row finishes.

Overlap: generate()'s token loop calls `prepare_step(input_ids)` as soon as a step's ids are known,
before that step's forward pass. That hands the step to the processor's worker thread (one, kept for
the processor's life), which reads the new tokens (on CUDA through a non-blocking copy and an event
recorded before the forward is queued, so it waits for the sampled tokens only), advances the
matchers and fills the bitmask while the forward runs; `__call__` joins it. Called without `prepare_step` (beam search, assisted decoding, a hand-written loop), the
processor does the same work synchronously. Reading the tokens back is the one host read per step
that constrained decoding needs: the matchers live on the CPU.

The processor keeps per-generation state; generate() resets the ones it is given, and a hand-written
loop calls `reset()` between generations.
"""
from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from ..errors import GrammarError
from ..generation.logits_base import StepAwareProcessor
from .bitmask import apply_token_bitmask
from .compiler import compile_grammar, compiler_for
from .grammar import Grammar
from .matchers import RowMatchers


class GrammarLogitsProcessor(StepAwareProcessor):
    """Constrain generation to `grammar` (one spec, or one per prompt row: see `Grammar.from_spec`).

    Args:
        grammar: a grammar spec or a list of them (per prompt; rows of beams / return sequences of a
            prompt share its grammar). ``None`` in the list leaves that row unconstrained.
        tokenizer: the model's (fast) tokenizer.
        eos_token_id: the id(s) that end a row; default: the tokenizer's EOS.
        vocab_size: the logits width; default: read from the first scores seen.
    """

    def __init__(self, grammar: Any, tokenizer: Any, eos_token_id: int | Sequence[int] | None = None,
                 vocab_size: int | None = None):
        specs = grammar if isinstance(grammar, (list, tuple)) else [grammar]
        if not specs:
            raise GrammarError("GrammarLogitsProcessor(grammar=[]) needs at least one grammar")
        self.grammars = [None if g is None else Grammar.from_spec(g) for g in specs]
        self.tokenizer = tokenizer
        eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
        self.stop_ids = tuple(sorted({int(e) for e in ([eos] if isinstance(eos, int) else list(eos or []))}))
        self.vocab_size = vocab_size
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the state of the previous generation (after the worker finished its step, if any)."""
        if self._pending is not None:
            self._pending.exception()  # wait; an error of an abandoned step no longer matters
        self._prompt_width: int | None = None
        self._matchers: RowMatchers | None = None
        self._free_rows: list[int] = []
        self._bitmask: torch.Tensor | None = None
        self._pending: Future | None = None
        self._pending_key: tuple | None = None

    # -- setup ------------------------------------------------------------------------------------
    def _start(self, rows: int, width: int, vocab_size: int, device: torch.device) -> None:
        import xgrammar as xgr

        if rows % len(self.grammars):
            raise GrammarError(f"{len(self.grammars)} grammars were given for a batch of {rows} rows: give one "
                               "grammar, or one per prompt")
        self.vocab_size = vocab_size
        per_prompt = rows // len(self.grammars)
        compiled, free = [], []
        for r in range(rows):
            grammar = self.grammars[r // per_prompt]
            if grammar is None:
                grammar, _ = Grammar.any_json(), free.append(r)  # a placeholder matcher, never applied
            compiled.append(compile_grammar(grammar, self.tokenizer, vocab_size, self.stop_ids))
        self._free_rows = free
        self._prompt_width = width
        refused = compiler_for(self.tokenizer, vocab_size, self.stop_ids).special_ids
        self._matchers = RowMatchers(compiled, xgr.GrammarMatcher, refused)
        pin = device.type == "cuda"
        self._bitmask = torch.full((rows, (vocab_size + 31) // 32), -1, dtype=torch.int32, pin_memory=pin)

    def _generated(self, input_ids: torch.Tensor) -> torch.Tensor:
        return input_ids[:, self._prompt_width:]

    def _compute(self, generated_host: torch.Tensor) -> None:
        self._matchers.sync(generated_host.tolist())
        self._matchers.fill(self._bitmask)
        for r in self._free_rows:
            self._bitmask[r].fill_(-1)

    # -- the step ---------------------------------------------------------------------------------
    def prepare_step(self, input_ids: torch.LongTensor) -> None:
        """The ids of the coming step are known: compute its mask while the forward pass runs."""
        self._join()
        if self._matchers is None:
            if self.vocab_size is None:
                return  # the width is learnt from the first scores; this first step runs synchronously
            self._start(input_ids.shape[0], input_ids.shape[1], self.vocab_size, input_ids.device)
        generated = self._generated(input_ids)
        event = None
        if generated.device.type == "cuda":
            generated = generated.to("cpu", non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            generated = generated.clone()  # the loop writes the next token into the same buffer

        def work() -> None:
            if event is not None:
                event.synchronize()
            self._compute(generated)

        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="formers-grammar-mask")
        self._pending_key = (input_ids.data_ptr(), tuple(input_ids.shape))
        self._pending = self._executor.submit(work)

    def _join(self) -> tuple | None:
        """Wait for the worker's step (its errors are raised here) -> the ids it was for, or None."""
        if self._pending is None:
            return None
        pending, key = self._pending, self._pending_key
        self._pending = self._pending_key = None
        pending.result()
        return key

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        prepared = self._join()
        if self._matchers is None:
            self._start(input_ids.shape[0], input_ids.shape[1], scores.shape[-1], scores.device)
        if scores.shape[-1] != self.vocab_size:
            raise GrammarError(f"GrammarLogitsProcessor was set up for {self.vocab_size} logits, got scores of "
                               f"width {scores.shape[-1]}")
        if prepared != (input_ids.data_ptr(), tuple(input_ids.shape)):
            self._compute(self._generated(input_ids).cpu())
        return apply_token_bitmask(scores, self._bitmask)
