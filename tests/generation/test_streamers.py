"""Streamers emit exactly transformers 4.45.2's text chunks, with incremental (linear-time) decoding."""
from __future__ import annotations

import asyncio
import queue
from pathlib import Path

import pytest
import torch
import transformers

from formers.generation import AsyncTextIteratorStreamer, TextIteratorStreamer, TextStreamer
from formers.tokenization.detokenize import IncrementalDetokenizer

from ..tokenization.conftest import shared_dir


TEXTS = [
    "Hello world! This is a test of streaming, isn't it? Yes.\nSecond line  with  double spaces."
    "\n\nEnd",
    "Emoji time 😀👍🏽 and family 👨‍👩‍👧 then 🇫🇷 flags.\nNext line: done 🎉",
    "中文文本测试，这是一个句子。混合 English 和中文 words 在一起。\n日本語のテキストもあります。",
    "He said , \" I don 't know . \" She 's here ; they 're gone ! Really ? ok",
    "  leading spaces\n\tTabs\tand\nnewlines\n\n\nmany",
    "naïve café résumé — “quotes” … ünïcödé ✓ ∑ ∫ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
]


@pytest.fixture(scope="module", params=["gpt2", "stories260K", "llama2"])
def tokenizer(request):
    return transformers.AutoTokenizer.from_pretrained(shared_dir(request.param))


def _stream_chunks(streamer_cls, tokenizer, capsys, prompt, ids, step, **kwargs):
    """Chunks emitted after each put (read from stdout for TextStreamer, from the queue otherwise)."""
    streamer = streamer_cls(tokenizer, **kwargs)
    chunks = []

    def collect():
        if isinstance(streamer, TextIteratorStreamer) or hasattr(streamer, "text_queue"):
            while True:
                try:
                    chunks.append(streamer.text_queue.get_nowait())
                except queue.Empty:
                    return
        chunks.append(capsys.readouterr().out)

    if prompt is not None:
        streamer.put(torch.tensor([prompt]))
        collect()
    for i in range(0, len(ids), step):
        streamer.put(torch.tensor(ids[i:i + step]))
        collect()
    streamer.end()
    collect()
    return chunks


@pytest.mark.parametrize("text", TEXTS, ids=[f"text{i}" for i in range(len(TEXTS))])
@pytest.mark.parametrize("step", [1, 3])
def test_text_streamer_chunks(tokenizer, capsys, text, step):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    for prompt, skip in ((None, False), (ids[:5], True), (ids[:5], False)):
        theirs = _stream_chunks(transformers.TextStreamer, tokenizer, capsys, prompt, ids, step, skip_prompt=skip)
        ours = _stream_chunks(TextStreamer, tokenizer, capsys, prompt, ids, step, skip_prompt=skip)
        assert ours == theirs


@pytest.mark.parametrize("text", TEXTS, ids=[f"text{i}" for i in range(len(TEXTS))])
def test_iterator_streamer_chunks(tokenizer, capsys, text):
    ids = tokenizer(text)["input_ids"]  # with BOS for llama2
    kwargs = dict(skip_prompt=True, skip_special_tokens=True)
    theirs = _stream_chunks(transformers.TextIteratorStreamer, tokenizer, capsys, ids[:3], ids, 1, **kwargs)
    ours = _stream_chunks(TextIteratorStreamer, tokenizer, capsys, ids[:3], ids, 1, **kwargs)
    assert ours == theirs
    streamer = TextIteratorStreamer(tokenizer, **kwargs)
    streamer.put(torch.tensor([ids[:3]]))
    for token in ids:
        streamer.put(torch.tensor([token]))
    streamer.end()
    assert "".join(streamer) == "".join(c for c in theirs if c is not None)


@pytest.mark.parametrize("seed", range(6))
def test_random_token_soup(tokenizer, capsys, seed):
    """Random ids (partial UTF-8 bytes, odd spacing, special tokens) still give identical chunks."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, len(tokenizer), (300,), generator=g).tolist()
    if seed % 2:  # bias towards byte tokens / short pieces
        ids = [i % 300 for i in ids]
    for kwargs in (dict(), dict(skip_special_tokens=True)):
        theirs = _stream_chunks(transformers.TextStreamer, tokenizer, capsys, None, ids, 1, **kwargs)
        ours = _stream_chunks(TextStreamer, tokenizer, capsys, None, ids, 1, **kwargs)
        assert ours == theirs


def test_iterator_timeout(tokenizer):
    streamer = TextIteratorStreamer(tokenizer, timeout=0.01)
    with pytest.raises(queue.Empty):
        next(streamer)


def test_async_streamer(tokenizer):
    ids = tokenizer(TEXTS[1], add_special_tokens=False)["input_ids"]

    async def run():
        streamer = AsyncTextIteratorStreamer(tokenizer, timeout=5.0)
        for token in ids:
            streamer.put(torch.tensor([token]))
        streamer.end()
        return [chunk async for chunk in streamer]

    sync = TextIteratorStreamer(tokenizer)
    for token in ids:
        sync.put(torch.tensor([token]))
    sync.end()
    assert asyncio.run(run()) == list(sync)


def test_batch_size_must_be_one(tokenizer):
    with pytest.raises(ValueError, match="batch size 1"):
        TextStreamer(tokenizer).put(torch.tensor([[1, 2], [3, 4]]))


class _CountingTokenizer:
    def __init__(self, tokenizer):
        self.tokenizer, self.decoded = tokenizer, 0

    def decode(self, ids, **kwargs):
        self.decoded += len(ids)
        return self.tokenizer.decode(ids, **kwargs)


def test_detokenizer_is_linear_and_exact(tokenizer):
    ids = tokenizer((TEXTS[0].replace("\n", " ") + " " + TEXTS[1].replace("\n", " ")) * 20,
                    add_special_tokens=False)["input_ids"]
    counting = _CountingTokenizer(tokenizer)
    detok = IncrementalDetokenizer(counting)
    for token in ids:
        detok.add([token])
    assert detok.text == tokenizer.decode(ids)
    assert counting.decoded < 25 * len(ids)  # a full re-decode per token would be ~len(ids)**2 / 2
    assert len(ids) > 500
