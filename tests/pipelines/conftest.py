"""Tiny models run fastest on one thread, and stay fast when other processes share the cores."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TEXT = ("The with statement wraps the execution of a block with methods defined by a context manager. "
        "A list is a mutable sequence; a tuple is an immutable one. Functions return values. "
        "Hello world, this is a small corpus for a tiny tokenizer used by the pipeline tests.")


@pytest.fixture(scope="module")
def generator_checkpoint(tmp_path_factory):
    """A tiny random Llama (saved by transformers) with a byte-level BPE tokenizer and a ChatML template."""
    from formers.default_model.tokenizer_training import train_tokenizer

    from ..conftest import build_oracle_checkpoint

    folder = tmp_path_factory.mktemp("generator")
    build_oracle_checkpoint(folder, "llama", vocab_size=300, bos_token_id=0, eos_token_id=0, pad_token_id=1)
    train_tokenizer([TEXT] * 20, vocab_size=300, model_max_length=256).save_pretrained(folder)
    return folder
