"""Fixtures of the cache tests: tiny oracle checkpoints built once per module, the left-padded batch,
and a copy of stories260K whose tokenizer has a ChatML template (for the docs' chat examples)."""
from __future__ import annotations

import shutil

import pytest
import torch

from ..conftest import STORIES, build_oracle_checkpoint

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return build_oracle_checkpoint(tmp_path_factory.mktemp("llama"), "llama")


@pytest.fixture(scope="module")
def mistral_dir(tmp_path_factory):
    """Mistral with a 6-token window, so short tests run far past it."""
    return build_oracle_checkpoint(tmp_path_factory.mktemp("mistral"), "mistral", sliding_window=6)


@pytest.fixture(scope="module")
def chat_model_dir(tmp_path_factory):
    """stories260K (a real tiny Llama) with a ChatML chat template and `</s>` as pad token."""
    import formers

    folder = tmp_path_factory.mktemp("stories_chat")
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(STORIES / name, folder / name)
    tokenizer = formers.AutoTokenizer.from_pretrained(STORIES)
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(folder)
    return folder


def padded_batch(rows: int = 3, length: int = 12, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt ids [rows, length] left-padded by 0, 3 and 7 tokens, with their attention mask."""
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 128, (3, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :7] = 0
    return ids.masked_fill(mask == 0, pad_id)[:rows], mask[:rows]
