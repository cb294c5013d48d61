"""Fixtures for tokenizer parity: the real tokenizers (tests/data, and Llama 2's from ../shared), loaded once by
formers and by the oracle."""
from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import LLAMA2_ABSENT, TOKENIZER_DIRS


def shared_dir(name: str) -> Path:
    """Folder of a real tokenizer: vendored under tests/data, except Llama 2's (skips when ../shared lacks it)."""
    path = TOKENIZER_DIRS[name]
    if not path.is_dir():
        pytest.skip(LLAMA2_ABSENT if name == "llama2" else f"test data folder {path} is absent")
    return path


def load_both(path: Path, **kwargs):
    """(formers tokenizer, transformers tokenizer) loaded from the same folder with the same arguments."""
    import transformers

    from formers.models.auto.tokenization_auto import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, **kwargs), transformers.AutoTokenizer.from_pretrained(path, **kwargs)


_CACHE: dict[str, tuple] = {}


@pytest.fixture(params=sorted(TOKENIZER_DIRS))
def pair(request):
    """(name, formers tokenizer, oracle tokenizer) for each shared tokenizer; cached, do not mutate."""
    name = request.param
    if name not in _CACHE:
        _CACHE[name] = load_both(shared_dir(name))
    return (name, *_CACHE[name])


@pytest.fixture
def fresh_pair(request):
    """Factory for tokenizers a test may modify: fresh_pair(name, **kwargs)."""
    return lambda name, **kwargs: load_both(shared_dir(name), **kwargs)


@pytest.fixture
def oracle_schema(monkeypatch):
    """transformers.utils.get_json_schema, usable without Pillow.

    transformers 4.45.2 names `PIL.Image.Image` in its type table unconditionally, so without Pillow every
    call fails with NameError; a placeholder class stands in for it (no hint here uses images).
    """
    import transformers.utils.chat_template_utils as oracle_utils

    if not hasattr(oracle_utils, "Image"):
        monkeypatch.setattr(oracle_utils, "Image", type("Image", (), {}), raising=False)
    return oracle_utils.get_json_schema
