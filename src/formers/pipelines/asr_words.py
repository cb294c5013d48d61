"""Whisper tokens -> words with start/end times (the ASR pipeline's return_timestamps="word").

Tokens are grouped into subwords at the points where the decoded text is whole unicode characters, the
subwords into words at a leading space or punctuation (languages written without spaces keep the
subwords), then opening punctuation joins the next word and closing punctuation the previous one, as
4.45.2 does. A word runs from its first token's start to its last token's end.
"""
from __future__ import annotations

from typing import Any

NO_SPACE_LANGUAGES = frozenset({"chinese", "japanese", "thai", "lao", "myanmar", "cantonese"})
PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
PREPENDED = "\"'“¡¿([{-"
APPENDED = "\"'.。,，!！?？:：”)]}、"
REPLACEMENT = "\ufffd"


def split_on_unicode(tokenizer, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
    """(subword texts, token indices of each): a subword closes once its text decodes without a replacement
    character (or the full text has one at that place too)."""
    full = tokenizer.decode(tokens, decode_with_timestamps=True)
    words, indices, current, offset = [], [], [], 0
    for index in range(len(tokens)):
        current.append(index)
        text = tokenizer.decode([tokens[i] for i in current], decode_with_timestamps=True)
        if REPLACEMENT not in text or full[offset + text.index(REPLACEMENT)] == REPLACEMENT:
            words.append(text)
            indices.append(current)
            current, offset = [], offset + len(text)
    return words, indices


def split_on_spaces(tokenizer, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
    """Subwords joined into words; a new word starts at a space, a punctuation mark or a special token."""
    words: list[str] = []
    indices: list[list[int]] = []
    for text, where in zip(*split_on_unicode(tokenizer, tokens)):
        starts_word = tokens[where[0]] >= tokenizer.eos_token_id or text.startswith(" ") or \
            text.strip() in PUNCTUATION or not words
        if starts_word:
            words.append(text)
            indices.append(list(where))
        else:
            words[-1] += text
            indices[-1].extend(where)
    return words, indices


def merge_punctuation(words: list[str], indices: list[list[int]]) -> tuple[list[str], list[list[int]]]:
    """Opening marks (after a space) join the following word; closing marks join the preceding one."""
    words, indices = list(words), [list(i) for i in indices]
    target = len(words) - 1
    for i in range(len(words) - 2, -1, -1):
        if words[i].startswith(" ") and words[i].strip() in PREPENDED:
            words[target], indices[target] = words[i] + words[target], indices[i] + indices[target]
            words[i], indices[i] = "", []
        else:
            target = i
    keep = 0
    for j in range(1, len(words)):
        if not words[keep].endswith(" ") and words[j] in APPENDED:
            words[keep] += words[j]
            indices[keep] += indices[j]
            words[j], indices[j] = "", []
        else:
            keep = j
    return [w for w in words if w], [i for i in indices if i]


def collate_words(tokenizer, tokens: list[int], timings: list[tuple[float, float | None]], language: str | None,
                  return_language: bool | None) -> list[dict[str, Any]]:
    """[{"text": word, "timestamp": (start, end)[, "language"]}] for the text tokens and their (start, end)."""
    resolved = language or getattr(tokenizer, "language", None) or "english"
    split = split_on_unicode if resolved in NO_SPACE_LANGUAGES else split_on_spaces
    words, indices = merge_punctuation(*split(tokenizer, tokens))
    extra = {"language": language} if return_language else {}  # 4.45 reports the chunk's language as given
    return [{"text": word, "timestamp": (timings[where[0]][0], timings[where[-1]][1]), **extra}
            for word, where in zip(words, indices)]
