"""Models and tokenizers for the structured-output tests: the bundled default model and stories260K."""
from __future__ import annotations

from pathlib import Path

import pytest

import formers

from ..conftest import GPT2_TOKENIZER, STORIES

DEFAULT_MODEL = Path(formers.__file__).resolve().parent / "default_model" / "checkpoint"


@pytest.fixture(scope="session")
def default_model():
    """(model, tokenizer) of formers' bundled default model (byte-level BPE, 4,096 tokens, EOS 0)."""
    tokenizer = formers.AutoTokenizer.from_pretrained(DEFAULT_MODEL)
    tokenizer.padding_side = "left"
    return formers.AutoModelForCausalLM.from_pretrained(DEFAULT_MODEL).eval(), tokenizer


@pytest.fixture(scope="session")
def stories_model():
    """(model, tokenizer) of stories260K (SentencePiece with byte fallback, 512 tokens, EOS 2)."""
    tokenizer = formers.AutoTokenizer.from_pretrained(STORIES)
    tokenizer.pad_token, tokenizer.padding_side = tokenizer.eos_token, "left"  # it ships without a pad token
    return formers.AutoModelForCausalLM.from_pretrained(STORIES).eval(), tokenizer


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    return formers.AutoTokenizer.from_pretrained(GPT2_TOKENIZER)
