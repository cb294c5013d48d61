"""Sequences and the scheduler: which tokens of which sequences run in the next forward.

A sequence is a prompt plus the tokens generated so far (`ids`); `num_computed` of them have their
keys/values in the pages. Every step computes `ids[num_computed : num_computed + n]` for each scheduled
sequence; when that reaches the end of `ids`, the last position's logits give the next token. So a
decode row is simply n == 1, a prefill chunk is n > 1, and a preempted sequence (pages freed, recompute)
just starts again from `num_computed = 0` with its generated tokens now part of what is recomputed.

Per step, under `max_batched_tokens`: running decode rows first (oldest first), then running prefill
chunks, then waiting sequences (FIFO, looking up their prefix in the cache first) while fewer than
`max_num_seqs` run. When pages run out, the newest running sequence is preempted.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch

from ..tokenization.detokenize import IncrementalDetokenizer
from .blocks import NO_BLOCK, BlockManager, chain_hashes
from .params import SamplingParams
from .sampler import TokenHistory

MAX_ROOM = 64  # growth blocks a new sequence's run leaves free behind it (see blocks.py, placement)


@dataclass(eq=False)
class Sequence:
    """One generated continuation (a request with n > 1 has n of them, `index` 0..n-1)."""

    request_id: str
    index: int
    prompt_len: int
    ids: list[int]                      # prompt then generated ids
    params: SamplingParams
    arrival: int
    generator: torch.Generator | None
    detokenizer: IncrementalDetokenizer | None
    blocks: list[int] = field(default_factory=list)      # block table (NO_BLOCK: freed, outside the window)
    block_keys: list[bytes] = field(default_factory=list)  # chain keys of the full blocks computed so far
    num_computed: int = 0
    cached_prompt_tokens: int | None = None  # prefix-cache hit on first admission
    sent_text: int = 0                        # characters of text already returned
    finish_reason: str | None = None
    text: str = ""
    history: TokenHistory = field(default_factory=TokenHistory)  # `ids` on the device, for penalties

    @property
    def output_ids(self) -> list[int]:
        return self.ids[self.prompt_len:]

    @property
    def remaining(self) -> int:
        return len(self.ids) - self.num_computed


@dataclass
class Schedule:
    """What the next forward computes: (sequence, number of new tokens) in flat-row order."""

    rows: list[tuple[Sequence, int]]
    preempted: list[Sequence]


class Scheduler:
    """Waiting and running sequences over one BlockManager."""

    def __init__(self, blocks: BlockManager, max_num_seqs: int, max_batched_tokens: int, free_window: int | None):
        self.blocks, self.block_size = blocks, blocks.block_size
        self.max_num_seqs, self.max_batched_tokens = max_num_seqs, max_batched_tokens
        self.free_window = free_window  # every layer windowed: pages wholly behind it can be freed
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    # --- pages ------------------------------------------------------------------------------------
    def _drop_outside_window(self, seq: Sequence) -> None:
        """Free pages whose every position is behind the window of the next query position."""
        if self.free_window is None:
            return
        first_needed = seq.num_computed - self.free_window + 1  # oldest key the next query still sees
        for b in range(min(len(seq.blocks), max(0, first_needed) // self.block_size)):
            if seq.blocks[b] != NO_BLOCK:
                self.blocks.release([seq.blocks[b]])
                seq.blocks[b] = NO_BLOCK

    def _grow(self, seq: Sequence, n: int) -> bool:
        """Give `seq` pages for `n` more positions; False (nothing taken) when too few are free."""
        needed = -(-(seq.num_computed + n) // self.block_size) - len(seq.blocks)
        if needed <= 0:
            return True
        last = seq.blocks[-1] if seq.blocks and seq.blocks[-1] != NO_BLOCK else None
        # a new sequence leaves room behind its pages for the tokens it may still add (up to MAX_ROOM blocks)
        room = 0 if last is not None else min(MAX_ROOM, max(0, -(-(len(seq.ids) + seq.params.max_tokens)
                                                                // self.block_size) - needed))
        fresh = self.blocks.allocate(needed, after=last, room=room)
        if fresh is None:
            return False
        seq.blocks.extend(fresh)
        return True

    def free(self, seq: Sequence) -> None:
        """Give back every page of `seq` (finished, aborted or preempted)."""
        self.blocks.release(seq.blocks)
        seq.blocks, seq.block_keys, seq.num_computed = [], [], 0

    def _admit_prefix(self, seq: Sequence) -> None:
        """Reuse cached pages for the longest cached prefix (at least one token is left to compute)."""
        keys = chain_hashes(seq.ids[:len(seq.ids) - 1], self.block_size)
        found = self.blocks.lookup(keys)
        seq.blocks, seq.block_keys = found, keys[:len(found)]
        seq.num_computed = len(found) * self.block_size
        if seq.cached_prompt_tokens is None:
            seq.cached_prompt_tokens = min(seq.num_computed, seq.prompt_len)

    def register_full_blocks(self, seq: Sequence) -> None:
        """Key the pages that became full in the last step, so later prompts can share them."""
        full = seq.num_computed // self.block_size
        if len(seq.block_keys) >= full:
            return
        start = seq.block_keys[-1] if seq.block_keys else b""
        keys = chain_hashes(seq.ids, self.block_size, start, len(seq.block_keys), full - len(seq.block_keys))
        for offset, key in enumerate(keys):
            block = seq.blocks[len(seq.block_keys) + offset]
            if block != NO_BLOCK:
                self.blocks.register(block, key)
        seq.block_keys.extend(keys)

    # --- one step ---------------------------------------------------------------------------------
    def _preempt_newest(self, exclude: set[int]) -> Sequence | None:
        candidates = [s for s in self.running if id(s) not in exclude]
        if not candidates:
            return None
        victim = max(candidates, key=lambda s: s.arrival)
        self.running.remove(victim)
        self.free(victim)
        self.waiting.appendleft(victim)
        self.num_preemptions += 1
        return victim

    def schedule(self) -> Schedule:
        budget, rows, preempted = self.max_batched_tokens, [], []
        scheduled: set[int] = set()
        for seq in sorted(self.running, key=lambda s: (s.remaining > 1, s.arrival)):
            if budget == 0:
                break
            if seq not in self.running:  # preempted while making room for an earlier one
                continue
            n = min(seq.remaining, budget)
            self._drop_outside_window(seq)
            while not self._grow(seq, n):
                victim = self._preempt_newest(scheduled | {id(seq)})
                if victim is None:  # nothing left to take from: this one waits
                    victim = seq
                    self.running.remove(seq)
                    self.free(seq)
                    self.waiting.appendleft(seq)
                    self.num_preemptions += 1
                preempted.append(victim)
                if victim is seq:
                    break
            else:
                rows.append((seq, n))
                scheduled.add(id(seq))
                budget -= n
        deferred = []
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs and not preempted:
            seq = self.waiting[0]
            if self._sibling_prefilling(seq):  # wait to reuse its prompt pages instead of computing them again
                deferred.append(self.waiting.popleft())
                continue
            self._admit_prefix(seq)
            n = min(seq.remaining, budget)
            if not self._grow(seq, n):
                self.free(seq)
                break
            self.waiting.popleft()
            self.running.append(seq)
            rows.append((seq, n))
            budget -= n
        self.waiting.extendleft(reversed(deferred))
        return Schedule(rows, preempted)

    def _sibling_prefilling(self, seq: Sequence) -> bool:
        """Another continuation of the same request (n > 1) is still computing the shared prompt."""
        return seq.params.n > 1 and any(s.request_id == seq.request_id and s.num_computed < s.prompt_len
                                        for s in self.running)
