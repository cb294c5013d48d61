"""Per-row grammar matchers that follow whatever token sequences the decoding strategy shows them.

A row's matcher state depends only on the tokens generated after the prompt. Each call gives the
rows' generated tokens (host lists); `RowMatchers.sync` brings every row's matcher to its sequence:

- the common case, one new token after the row's own history: accept it;
- beam search reordered the rows: the row's history minus its new token is another row's history:
  fork that row's matcher (forks are taken before any matcher moves, so two beams may share a parent);
- assisted / prompt-lookup decoding showed draft tokens that were then rejected: roll back to the
  longest common prefix and accept the rest (draft tokens are validated against the matcher this way);
- nothing fits (rows were retired or replaced): replay the sequence on a fresh matcher.

A token the grammar rejects (a draft token, the padding a finished row receives, a token after the
grammar ended) leaves the row *dead*: its mask allows everything, since whatever is chosen there is
discarded or padding. Rolling back below the rejected token revives it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Row:
    matcher: Any
    history: list[int] = field(default_factory=list)   # tokens the matcher accepted
    rejected: int | None = None                        # the token it refused after `history` (dead row)

    def advance(self, tokens: list[int], refused: frozenset = frozenset()) -> None:
        for token in tokens:
            if self.rejected is not None:
                return
            if token not in refused and not self.matcher.is_terminated() and self.matcher.accept_token(token):
                self.history.append(token)
            else:
                self.rejected = token

    def rewind(self, keep: int) -> None:
        if keep < len(self.history):
            self.matcher.rollback(len(self.history) - keep)
            del self.history[keep:]
            self.rejected = None
        elif keep == len(self.history):
            self.rejected = None

    def fork(self) -> _Row:
        return _Row(self.matcher.fork(), list(self.history), self.rejected)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    i = 0
    while a[i] == b[i]:
        i += 1
    return i


class RowMatchers:
    """One matcher per row, created from `compiled[row]` (xgrammar CompiledGrammar objects) by `new_matcher`."""

    def __init__(self, compiled: list[Any], new_matcher, refused: frozenset = frozenset()):
        self.compiled = compiled
        self.new_matcher = new_matcher
        self.refused = refused  # special ids: rejected without asking the engine (which would log a warning)
        self.rows: list[_Row] = [_Row(new_matcher(c)) for c in compiled]

    def sync(self, targets: list[list[int]]) -> None:
        """Bring row r's matcher to have consumed exactly `targets[r]`."""
        old = self.rows
        if len(targets) != len(old):
            self.rows = [self._replay(r, t) for r, t in enumerate(targets)]
            return
        fresh: list[_Row | None] = [None] * len(old)
        pending: list[tuple[int, int]] = []      # (row, tokens of its target already matched)
        by_history: dict[tuple, int] | None = None
        for r, target in enumerate(targets):
            row = old[r]
            h = len(row.history)
            if len(target) >= h and target[:h] == row.history:
                fresh[r] = row
                pending.append((r, h))
                continue
            if by_history is None:
                by_history = {tuple(o.history): i for i, o in enumerate(old)}
            source = by_history.get(tuple(target[:-1])) if target else None
            if source is not None and source != r:
                fresh[r] = old[source].fork()       # before any matcher moves
                pending.append((r, len(target) - 1))
            else:
                fresh[r] = row
                pending.append((r, -1))              # roll back, below
        for r, matched in pending:
            row, target = fresh[r], targets[r]
            if matched < 0:
                matched = _common_prefix(row.history, target)
                row.rewind(matched)
            elif row.rejected is not None and (len(target) == matched or target[matched] != row.rejected):
                row.rejected = None                  # the refused token is gone from the sequence
            row.advance(target[matched:], self.refused)
        self.rows = fresh  # type: ignore[assignment]

    def _replay(self, r: int, target: list[int]) -> _Row:
        row = _Row(self.new_matcher(self.compiled[r % len(self.compiled)]))
        row.advance(target, self.refused)
        return row

    def fill(self, bitmask) -> None:
        """bitmask [N, W] int32 (CPU) <- each row's allowed next tokens (all ones for dead rows)."""
        for r, row in enumerate(self.rows):
            if row.rejected is not None or row.matcher.is_terminated():  # past the end: padding follows
                bitmask[r].fill_(-1)
            else:
                row.matcher.fill_next_token_bitmask(bitmask, r)
