"""Streamers that receive generated ids from `generate()` and emit text as it becomes final.

The emitted chunks are those of transformers 4.45: text is held back until a space (it may still be
the middle of a word), flushed at a newline (which also restarts decoding), and printed right away
after a CJK character. Decoding is incremental (`tokenization.detokenize`), so a stream of N tokens
costs O(N) decode work instead of transformers' O(N^2) per line.
"""
from __future__ import annotations

import asyncio
from queue import Queue
from typing import Any

from ..errors import GenerationError
from ..tokenization.detokenize import IncrementalDetokenizer

# CJK Unified Ideographs blocks (not Hangul / kana, which are space-separated like other scripts)
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)


class BaseStreamer:
    """Interface `generate()` feeds: `put(ids)` for the prompt, then each new token; `end()` at the end."""

    def put(self, value: Any) -> None:
        raise NotImplementedError()

    def end(self) -> None:
        raise NotImplementedError()


class TextStreamer(BaseStreamer):
    """Print decoded text to stdout as soon as whole words are available (batch size 1 only).

    `skip_prompt=True` drops the first `put` (the prompt); `decode_kwargs` go to `tokenizer.decode`.
    """

    def __init__(self, tokenizer: Any, skip_prompt: bool = False, **decode_kwargs: Any):
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        self.decode_kwargs = decode_kwargs
        self._detokenizer = IncrementalDetokenizer(tokenizer, **decode_kwargs)
        self.print_len = 0
        self.next_tokens_are_prompt = True

    @property
    def token_cache(self) -> list[int]:
        """Ids decoded since the last newline flush."""
        return self._detokenizer.ids

    def put(self, value: Any) -> None:
        """Receive ids [n] or [1, n]; emit the part of the text that can no longer change."""
        if len(value.shape) > 1:
            if value.shape[0] > 1:
                raise GenerationError(f"TextStreamer only supports batch size 1, got ids of shape {tuple(value.shape)}")
            value = value[0]
        if self.skip_prompt and self.next_tokens_are_prompt:
            self.next_tokens_are_prompt = False
            return
        text = self._detokenizer.add(value.reshape(-1).tolist())
        if text.endswith("\n"):  # a finished line: emit it and restart decoding
            printable = text[self.print_len:]
            self._detokenizer.reset()
            self.print_len = 0
        elif text and _is_cjk(ord(text[-1])):
            printable = text[self.print_len:]
            self.print_len += len(printable)
        else:  # up to the last space: the last word may still grow
            printable = text[self.print_len: text.rfind(" ") + 1]
            self.print_len += len(printable)
        self.on_finalized_text(printable)

    def end(self) -> None:
        """Flush whatever text is left and mark the end of the stream."""
        if len(self._detokenizer):
            printable = self._detokenizer.text[self.print_len:]
            self._detokenizer.reset()
            self.print_len = 0
        else:
            printable = ""
        self.next_tokens_are_prompt = True
        self.on_finalized_text(printable, stream_end=True)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        """Print `text` (with a newline at the end of the stream)."""
        print(text, flush=True, end=None if stream_end else "")

    def _is_chinese_char(self, cp: int) -> bool:
        return _is_cjk(cp)


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


class TextIteratorStreamer(TextStreamer):
    """Queue the text chunks for another thread to iterate over; `queue.Empty` after `timeout` seconds."""

    def __init__(self, tokenizer: Any, skip_prompt: bool = False, timeout: float | None = None,
                 **decode_kwargs: Any):
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.text_queue: Queue = Queue()
        self.stop_signal = None
        self.timeout = timeout

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self.text_queue.put(text, timeout=self.timeout)
        if stream_end:
            self.text_queue.put(self.stop_signal, timeout=self.timeout)

    def __iter__(self) -> "TextIteratorStreamer":
        return self

    def __next__(self) -> str:
        value = self.text_queue.get(timeout=self.timeout)
        if value is self.stop_signal:
            raise StopIteration()
        return value


class AsyncTextIteratorStreamer(TextStreamer):
    """Like TextIteratorStreamer for asyncio: create it inside the running loop, `async for` over it.

    `generate()` runs in another thread; chunks reach the loop through `call_soon_threadsafe`.
    Waiting longer than `timeout` seconds raises TimeoutError.
    """

    def __init__(self, tokenizer: Any, skip_prompt: bool = False, timeout: float | None = None,
                 **decode_kwargs: Any):
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.text_queue: asyncio.Queue = asyncio.Queue()
        self.stop_signal = None
        self.timeout = timeout
        self.loop = asyncio.get_running_loop()

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self.loop.call_soon_threadsafe(self.text_queue.put_nowait, text)
        if stream_end:
            self.loop.call_soon_threadsafe(self.text_queue.put_nowait, self.stop_signal)

    def __aiter__(self) -> "AsyncTextIteratorStreamer":
        return self

    async def __anext__(self) -> str:
        try:
            value = await asyncio.wait_for(self.text_queue.get(), timeout=self.timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no text from the streamer within {self.timeout} s") from None
        if value is self.stop_signal:
            raise StopAsyncIteration()
        return value
