"""Incremental detokenization: keep `decode(all ids so far)` up to date while decoding only a short tail.

Decoding the whole sequence after every token costs O(N) per token, O(N^2) per stream. Here each step
decodes a window `ids[start:]` made of a few tokens of context (so leading-space stripping, byte
merging and space clean-up see what precedes the new tokens) and the newest tokens, and appends the
window's text beyond its context to the text already known.

Bookkeeping: a *commit* is an offset `c` whose text `decode(ids[:c])` did not end in U+FFFD (an
incomplete UTF-8 sequence a later byte token may complete); `committed_text` is the text of the last
commit, and every earlier commit's text is a prefix of it. A step anchors at the latest commit; if the
window's text does not extend its context's text there (a byte-fallback group or a clean-up rule
rewrote text across the boundary, e.g. an emoji's bytes followed by a stray byte), it retries anchored
at earlier commits, then falls back to one full decode. So `text` always equals
`tokenizer.decode(ids, **decode_kwargs)`, at amortized O(window) decode work per step.
"""
from __future__ import annotations

import bisect
from typing import Any, Iterable

REPLACEMENT_CHAR = "\ufffd"
_MAX_ANCHOR_TRIES = 6  # anchors tried (going back exponentially) before a full decode


class IncrementalDetokenizer:
    """Tracks the decoded text of a growing id sequence; only needs `tokenizer.decode(ids, **kwargs)`."""

    def __init__(self, tokenizer: Any, context_tokens: int = 6, **decode_kwargs: Any):
        if context_tokens < 1:
            raise ValueError(f"`context_tokens` must be >= 1, got {context_tokens}")
        self.tokenizer = tokenizer
        self.context_tokens = context_tokens
        self.decode_kwargs = decode_kwargs
        self.reset()

    def reset(self) -> None:
        """Forget every token (start a new sequence)."""
        self.ids: list[int] = []
        self.text = ""                  # == decode(ids)
        self._committed_text = ""       # == decode(ids[:last commit])
        self._offsets: list[int] = [0]  # commit offsets, ascending
        self._lengths: list[int] = [0]  # len(decode(ids[:offset])) for each commit

    def __len__(self) -> int:
        return len(self.ids)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, **self.decode_kwargs)

    def _try_anchor(self, k: int) -> str | None:
        """Full text computed from commit index k, or None when the window does not extend its context."""
        anchor, anchor_len = self._offsets[k], self._lengths[k]
        target = anchor - self.context_tokens  # the context starts at the latest commit <= target
        start = 0 if target <= 0 else self._offsets[bisect.bisect_right(self._offsets, target) - 1]
        context = self._decode(self.ids[start:anchor])
        window = self._decode(self.ids[start:])
        if window.startswith(context) and self._committed_text.endswith(context, 0, anchor_len):
            return self._committed_text[:anchor_len] + window[len(context):]
        return None

    def add(self, new_ids: Iterable[int]) -> str:
        """Append token ids and return the updated full text (`self.text`)."""
        new_ids = list(new_ids)
        if not new_ids:
            return self.text
        self.ids.extend(new_ids)
        last = len(self._offsets) - 1
        k, step, text = last, 1, None
        for _ in range(_MAX_ANCHOR_TRIES):
            text = self._try_anchor(k)
            if text is not None or k == 0:
                break
            k, step = max(k - step, 0), step * 2
        if text is None:  # decode everything once; earlier commits may no longer be prefixes
            self.text = self._decode(self.ids)
            if not self.text.endswith(REPLACEMENT_CHAR):
                self._committed_text = self.text
                self._offsets, self._lengths = [0, len(self.ids)], [0, len(self.text)]
            return self.text
        self.text = text
        if k < last:  # commits after the anchor are no longer prefixes of the text: drop them
            del self._offsets[k + 1:], self._lengths[k + 1:]
            self._committed_text = self._committed_text[:self._lengths[k]]
        if not text.endswith(REPLACEMENT_CHAR):
            self._committed_text = text
            self._offsets.append(len(self.ids))
            self._lengths.append(len(text))
        return self.text
