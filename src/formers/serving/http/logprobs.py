"""The engine's per-token logprobs (TokenLogprob: chosen id, its logprob, top alternatives) in OpenAI's
two wire shapes: the legacy completions one (parallel lists) and the chat one (a list of objects)."""
from __future__ import annotations

from typing import Any, Sequence


class TokenPieces:
    """Text of single tokens (what OpenAI shows as `token`), decoded once per id."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        piece = self._cache.get(token_id)
        if piece is None:
            piece = self._cache[token_id] = self.tokenizer.decode([token_id])
        return piece


def completion_logprobs(pieces: TokenPieces, entries: Sequence[Any], text_offset: int) -> dict:
    """{"tokens", "token_logprobs", "top_logprobs", "text_offset"} for the tokens in `entries`;
    `text_offset` is where the first of them starts in the choice's text."""
    out: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for entry in entries:
        piece = pieces(entry.token_id)
        out["tokens"].append(piece)
        out["token_logprobs"].append(entry.logprob)
        out["top_logprobs"].append({pieces(t): lp for t, lp in entry.top.items()} or None)
        out["text_offset"].append(text_offset)
        text_offset += len(piece)
    return out


def echo_logprobs(pieces: TokenPieces, prompt_ids: list[int], scored: Sequence[Any]) -> dict:
    """The prompt's part of a completion's logprobs when `echo` is on (`scored`: prompt_ids[1:]'s
    TokenLogprobs); the first prompt token has none (null), as OpenAI shows it."""
    first = pieces(prompt_ids[0])
    head = {"tokens": [first], "token_logprobs": [None], "top_logprobs": [None], "text_offset": [0]}
    return merge_completion_logprobs(head, completion_logprobs(pieces, scored, len(first)))


def merge_completion_logprobs(total: dict | None, part: dict) -> dict:
    if total is None:
        return {key: list(values) for key, values in part.items()}
    for key, values in part.items():
        total[key].extend(values)
    return total


def chat_logprobs(pieces: TokenPieces, entries: Sequence[Any]) -> list[dict]:
    """The `content` list of a chat choice's logprobs for the tokens in `entries`."""
    return [{**_token(pieces(entry.token_id), entry.logprob),
             "top_logprobs": [_token(pieces(t), lp) for t, lp in entry.top.items()]}
            for entry in entries]


def _token(piece: str, logprob: float) -> dict:
    return {"token": piece, "logprob": logprob, "bytes": list(piece.encode("utf-8"))}
