"""StopStringCriteria: stop a row once its text contains a stop string ending in its newest token.

A match may span several tokens, and the tokens at either end may overhang the stop string (" stop."
ends "stop"). Walking back from the newest token: it must cover some suffix of the stop string (its
*end cover*, several values possible), every earlier token must equal the stop string's characters
just before what is matched so far (or, for the first token of the match, end with the remaining
prefix). Per token and stop string this is precomputed once from the vocabulary:

  cover[s, t, e]  end covers of token t for stop string s (0 = unused slot)
  inside[s, t, p] token t can sit with p characters of s already matched to its right
  length[t]       characters in token t

so each step is a few gathers over the last `max stop-string length` tokens, on the device, with no
host sync. Matches entirely inside the prompt never end in a new token, so they never fire.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import GenerationError
from .stopping_criteria import StoppingCriteria

_TABLES: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = OrderedDict()
_PREFIX = "abcdef"


def clean_token_strings(tokenizer: Any) -> dict[int, str]:
    """id -> the text a token contributes mid-sentence (byte-level / SentencePiece markers resolved)."""
    base = tokenizer.convert_ids_to_tokens(tokenizer(_PREFIX, add_special_tokens=False)["input_ids"])
    out = {}
    for token, index in tokenizer.get_vocab().items():
        text = tokenizer.convert_tokens_to_string(list(base) + [token])
        out[index] = text[text.index(_PREFIX) + len(_PREFIX):]
    return out


def _end_covers(token: str, stop: str) -> set[int]:
    """How many of `stop`'s last characters the token covers when it ends the match (right overhang allowed)."""
    covers = set()
    for overhang in range(len(token)):
        head = token[:len(token) - overhang]
        if len(head) >= len(stop):
            if head.endswith(stop):
                covers.add(len(stop))
        elif stop.endswith(head):
            covers.add(len(head))
    return covers


def _inside_positions(token: str, stop: str) -> list[int]:
    """p in 1..len(stop)-1 such that the token can precede p already-matched characters (left overhang allowed)."""
    n, positions = len(stop), []
    for p in range(1, n):
        left = n - p
        if len(token) <= left:
            if stop[left - len(token):left] == token:
                positions.append(p)
        elif token.endswith(stop[:left]):
            positions.append(p)
    return positions


def build_tables(strings: dict[int, str], stops: Sequence[str]):
    """-> cover [S, V, E] int, inside [S, V, P] bool, length [V] int (V = largest id + 1, P = longest stop)."""
    vocab = max(strings) + 1
    widest = max(len(s) for s in stops)
    # a token ending a match contains the stop string's last character; one inside a match is a substring of it
    # or ends with one of its characters (left overhang): everything else is skipped cheaply
    covers = [{i: sorted(_end_covers(t, stop)) for i, t in strings.items() if stop[-1] in t} for stop in stops]
    insides = [{i: _inside_positions(t, stop) for i, t in strings.items() if t in stop or t[-1] in stop[:-1]}
               for stop in stops]
    if not any(values for per_stop in covers for values in per_stop.values()):
        raise GenerationError("Stop string preprocessing found no token that can end one of the stop strings "
                              f"{list(stops)}: they hold characters the tokenizer vocabulary cannot produce")
    slots = max([len(v) for per_stop in covers for v in per_stop.values()] + [1])
    cover = np.zeros((len(stops), vocab, slots), dtype=np.int64)
    inside = np.zeros((len(stops), vocab, widest + 1), dtype=bool)
    length = np.zeros(vocab, dtype=np.int64)
    for index, text in strings.items():
        length[index] = len(text)
    for s in range(len(stops)):
        for index, values in covers[s].items():
            cover[s, index, :len(values)] = values
        for index, positions in insides[s].items():
            inside[s, index, positions] = True
    return torch.from_numpy(cover), torch.from_numpy(inside), torch.from_numpy(length)


class StopStringCriteria(StoppingCriteria):
    """Done when the decoded text ends a stop string within its newest token (see the module docstring)."""

    def __init__(self, tokenizer: Any, stop_strings: str | Sequence[str]):
        if isinstance(stop_strings, str):
            stop_strings = [stop_strings]
        self.stop_strings = tuple(stop_strings)
        if not self.stop_strings or any(not isinstance(s, str) or not s for s in self.stop_strings):
            raise GenerationError(f"`stop_strings` must be non-empty strings, got {stop_strings!r}")
        key = (tuple(sorted(tokenizer.get_vocab().items())), self.stop_strings)
        if key not in _TABLES:
            _TABLES[key] = build_tables(clean_token_strings(tokenizer), self.stop_strings)
            if len(_TABLES) > 8:
                _TABLES.popitem(last=False)
        _TABLES.move_to_end(key)
        self.cover, self.inside, self.length = _TABLES[key]
        self.maximum_token_len = max(len(s) for s in self.stop_strings)
        self.target_lens = torch.tensor([len(s) for s in self.stop_strings])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor | None = None,
                 **kwargs: Any) -> torch.BoolTensor:
        device = input_ids.device
        if self.cover.device != device:
            self.cover, self.inside = self.cover.to(device), self.inside.to(device)
            self.length, self.target_lens = self.length.to(device), self.target_lens.to(device)
        window = input_ids[:, -self.maximum_token_len:].flip(1)                      # [B, M] newest first
        stops, _, slots = self.cover.shape
        target = self.target_lens[:, None, None]                                     # [S, 1, 1]
        covered = self.cover[:, window[:, 0]]                                        # [S, B, E]
        alive = covered > 0
        done = (alive & (covered >= target)).any(-1)                                 # [S, B]
        if window.shape[1] > 1:
            earlier = window[:, 1:]                                                  # [B, K]
            lengths = self.length[earlier]                                           # [B, K]
            before = covered[..., None] + torch.nn.functional.pad(lengths.cumsum(-1)[:, :-1], (1, 0))[None, :, None]
            width = self.inside.shape[-1]
            flat = earlier[None, :, None, :] * width + before.clamp(0, width - 1)    # [S, B, E, K]
            fits = self.inside.view(stops, -1).gather(1, flat.view(stops, -1)).view_as(flat)
            chain = torch.cumprod((fits & alive[..., None]).to(torch.uint8), dim=-1).bool()
            after = before + lengths[None, :, None]
            done |= (chain & (after >= target[..., None])).flatten(2).any(-1)
        return done.any(0)
