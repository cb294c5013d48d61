"""Whisper ASR output -> text and timestamped chunks (what 4.45's `_decode_asr` computes, for the pipeline).

Each window's tokens are read in order: language tokens tag the chunk, a pair of timestamps closes a
chunk, text tokens accumulate. Windows that overlap (chunk_length_s with a stride) are merged on their
longest common token run, and timestamps inside a window's strides are skipped.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..models.whisper.languages import LANGUAGES
from .asr_words import collate_words


def merge_overlapping(sequences: list[list[int]], timings: list[list] | None = None):
    """Join token runs whose ends overlap: at the best-matching alignment, keep the left half of the overlap
    from the earlier run and the right half from the later one. With `timings` (per token (start, end)),
    a match also needs the earlier run's time not after the later one's, and the timings are cut alike:
    -> (tokens, timings)."""
    left, merged = sequences[0], []
    left_times, merged_times = (timings[0], []) if timings else (None, None)
    for index, right in enumerate(sequences[1:], start=1):
        best, best_span = 0.0, (len(left), len(left), 0, 0)
        for shift in range(1, len(left) + len(right)):
            l_start, l_stop = max(0, len(left) - shift), min(len(left), len(left) + len(right) - shift)
            r_start, r_stop = max(0, shift - len(left)), min(len(right), shift)
            if timings:
                matches = sum(1 for k in range(l_stop - l_start) if left[l_start + k] == right[r_start + k]
                              and left_times[l_start + k] <= timings[index][r_start + k])
            else:
                matches = int(np.sum(np.array(left[l_start:l_stop]) == np.array(right[r_start:r_stop])))
            score = matches / shift + shift / 10000.0
            if matches > 1 and score > best:
                best, best_span = score, (l_start, l_stop, r_start, r_stop)
        l_start, l_stop, r_start, r_stop = best_span
        merged.extend(left[: (l_start + l_stop) // 2])
        left = right[(r_start + r_stop) // 2:]
        if timings:
            merged_times.extend(left_times[: (l_start + l_stop) // 2])
            left_times = timings[index][(r_start + r_stop) // 2:]
    if timings is None:
        return merged + list(left)
    return merged + list(left), (merged_times + list(left_times)) if timings else []


class _ChunkReader:
    """The state machine over all windows' tokens (see module doc)."""

    def __init__(self, tokenizer, return_timestamps: bool | str, return_language: bool | None = None):
        self.tok, self.return_timestamps, self.return_language = tokenizer, return_timestamps, return_language
        self.words = return_timestamps == "word"
        self.piece_times: list[list[tuple]] = []  # per-token (start, end) of each piece (word timestamps)
        self.timestamp_begin = tokenizer.convert_tokens_to_ids("<|notimestamps|>") + 1
        self.special = set(tokenizer.all_special_ids)
        self.chunks: list[dict[str, Any]] = []
        self.language: str | None = None
        self.pieces: list[list[int]] = []  # token runs of the open chunk, one per window
        self.chunk = self._new()

    def _new(self) -> dict[str, Any]:
        return {"language": self.language, "timestamp": [None, None], "text": ""}

    def close(self, current: list[int], current_times: list[tuple] | None = None) -> None:
        self.pieces.append(current)
        if current_times is not None:
            self.piece_times.append(current_times)
        self._finish()
        self.pieces, self.piece_times, self.chunk = [], [], self._new()

    def _finish(self) -> None:
        """The open chunk's text (and words) from its merged pieces, appended to the chunks."""
        if self.words:
            tokens, times = merge_overlapping(self.pieces, self.piece_times)
            self.chunk["words"] = collate_words(self.tok, tokens, times, self.language, self.return_language)
        else:
            tokens = merge_overlapping(self.pieces)
        self.chunk["text"] = self.tok.decode(tokens)
        self.chunks.append(self.chunk)

    def read(self, outputs: list[dict[str, Any]], time_precision: float) -> None:
        begin, offset, skip = self.timestamp_begin, 0.0, False
        for output in outputs:
            ids = self.tok._strip_prompt([int(t) for t in output["tokens"][0]])
            stamps = [float(t) for t in output["token_timestamps"][0]] if self.words else []
            last_allowed, first_allowed = None, begin
            if "stride" in output:
                length, left, right = output["stride"]
                offset -= left
                right_start = length - right
                if left:
                    first_allowed = left / time_precision + begin
                if right:
                    for token in reversed(ids):
                        if token >= begin:
                            if last_allowed is not None and (token - begin) * time_precision < right_start:
                                break
                            last_allowed = token
            current: list[int] = []
            current_times: list[tuple] = []
            for index, token in enumerate(ids):
                if token in self.special:
                    language = LANGUAGES.get(self.tok.decode([token])[2:-2])
                    if language is not None:
                        if self.language and language != self.language and not self.return_timestamps:
                            self.close(current)
                            current = []
                        self.chunk["language"] = self.language = language
                elif token >= begin:
                    time = round((token - begin) * time_precision + offset, 2)
                    if last_allowed and token >= last_allowed:
                        skip = True
                    elif skip or (self.pieces and token < first_allowed):
                        skip = False
                    elif self.chunk["timestamp"][0] is None:
                        self.chunk["timestamp"][0] = time
                    elif time != self.chunk["timestamp"][0]:
                        self.chunk["timestamp"][1] = time
                        self.close(current, current_times if self.words else None)
                        current, current_times = [], []
                else:
                    current.append(token)
                    if self.words:
                        end = round(stamps[index + 1] + offset, 2) if index + 1 < len(stamps) else None
                        current_times.append((round(stamps[index] + offset, 2), end))
            if "stride" in output:
                offset += length - right
            if current:
                self.pieces.append(current)
                if self.words:
                    self.piece_times.append(current_times)
            elif not any(self.pieces):
                self.pieces, self.piece_times, self.chunk = [], [], self._new()
        if self.pieces:
            self._finish()


def decode_asr(tokenizer, outputs: list[dict[str, Any]], *, return_timestamps: bool, return_language: bool | None,
               time_precision: float) -> tuple[str, dict[str, Any]]:
    """(full text, {"chunks": [...]} when timestamps or languages are asked for, else {})."""
    reader = _ChunkReader(tokenizer, return_timestamps or False, return_language)
    reader.read(outputs, time_precision)
    text = "".join(chunk["text"] for chunk in reader.chunks)
    if not (return_timestamps or return_language):
        return text, {}
    for chunk in reader.chunks:
        if return_timestamps:
            chunk["timestamp"] = tuple(chunk["timestamp"])
        else:
            chunk.pop("timestamp")
        if not return_language:
            chunk.pop("language")
    if return_timestamps == "word":
        return text, {"chunks": [word for chunk in reader.chunks for word in chunk["words"]]}
    return text, {"chunks": reader.chunks}
