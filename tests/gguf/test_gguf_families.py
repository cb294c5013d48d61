"""Families transformers 4.45 does not load from GGUF (Gemma, Gemma2, Phi3, Starcoder2, StableLM, GPT-2): an
F32 file written as llama.cpp writes these architectures gives the logits of the safetensors model (rows and
norms mapped back: Gemma's 1 + w norms, Phi3's fused qkv / gate_up, Starcoder2's and StableLM's biases and
LayerNorms, StableLM's partial rotary, GPT-2's Conv1D layout and position embeddings)."""
from __future__ import annotations

import shutil

import pytest
import torch

import formers
from tests.conftest import STORIES, build_oracle_checkpoint

from .conftest import IDS, UNTIED, gguf_of

FAMILIES = {
    "gemma": dict(head_dim=64, tie_word_embeddings=True),
    "gemma2": dict(head_dim=64, tie_word_embeddings=True, sliding_window=4, query_pre_attn_scalar=64),
    "phi3": dict(pad_token_id=0),
    "starcoder2": dict(),
    "stablelm": dict(use_qkv_bias=True, partial_rotary_factor=0.5),
    "gpt2": dict(vocab_size=512, n_embd=64, n_layer=2, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=2),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_f32_file_equals_safetensors_model(family, tmp_path):
    base = FAMILIES[family] if family == "gpt2" else {**UNTIED, **FAMILIES[family]}
    build_oracle_checkpoint(tmp_path, family, base=base)
    shutil.copy(STORIES / "tokenizer.model", tmp_path)
    file = gguf_of(tmp_path, "F32", arch=family)
    ours = formers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=file)
    reference = formers.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(ours) is type(reference)
    with torch.no_grad():
        torch.testing.assert_close(ours(IDS).logits, reference(IDS).logits, rtol=0, atol=1e-5)
