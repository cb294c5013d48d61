"""GGUF fixtures: tiny Hugging Face folders written as GGUF files by tests/gguf/convert.py."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import STORIES, build_oracle_checkpoint

from .convert import convert

# an untied Llama whose rows (256) fit K-quant super-blocks; vocabulary = stories260K's tokenizer.model
UNTIED = dict(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
              tie_word_embeddings=False)
IDS = torch.tensor([[1, 403, 407, 261, 378, 65, 425, 300, 17, 259], [1, 66, 67, 500, 2, 9, 128, 256, 511, 3]])


@pytest.fixture(scope="session")
def stories_dir(tmp_path_factory) -> Path:
    """stories260K (tied head, hidden 64) copied to a folder that also holds its GGUF conversions."""
    folder = tmp_path_factory.mktemp("stories_gguf")
    for item in STORIES.iterdir():
        shutil.copy(item, folder)
    return folder


@pytest.fixture(scope="session")
def stories_gguf(stories_dir):
    def make(qtype: str) -> str:
        name = f"stories.{qtype}.gguf"
        if not (stories_dir / name).exists():
            convert(stories_dir, stories_dir / name, qtype)
        return name
    return make


def _family_dir(tmp_path_factory, model_type: str) -> Path:
    folder = tmp_path_factory.mktemp(f"{model_type}_gguf")
    build_oracle_checkpoint(folder, model_type, base=UNTIED)
    shutil.copy(STORIES / "tokenizer.model", folder)
    return folder


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory) -> Path:
    return _family_dir(tmp_path_factory, "llama")


@pytest.fixture(scope="session")
def qwen2_dir(tmp_path_factory) -> Path:
    return _family_dir(tmp_path_factory, "qwen2")


@pytest.fixture(scope="session")
def mistral_dir(tmp_path_factory) -> Path:
    return _family_dir(tmp_path_factory, "mistral")


def gguf_of(folder: Path, qtype: str, arch: str = "llama", name: str = "tiny") -> str:
    """The GGUF conversion of `folder` (written once per session)."""
    file = f"{name}.{qtype}.gguf"
    if not (folder / file).exists():
        convert(folder, folder / file, qtype, arch=arch, name=name)
    return file
