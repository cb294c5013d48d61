"""The bundled default model: loads by name with no network, is read identically by transformers,
and pipeline("text-generation") with no model uses it."""
from __future__ import annotations

import json

import pytest
import torch

from formers import AutoModelForCausalLM, AutoTokenizer, pipeline
from formers.default_model import CHECKPOINT_DIR, DEFAULT_MODEL_NAME

PROMPT = "The with statement"


@pytest.fixture(scope="module")
def default_model():
    return AutoModelForCausalLM.from_pretrained(DEFAULT_MODEL_NAME), AutoTokenizer.from_pretrained(DEFAULT_MODEL_NAME)


def test_shipped_files_are_small_bf16_llama_with_a_chat_template():
    config = json.loads((CHECKPOINT_DIR / "config.json").read_text())
    assert config["model_type"] == "llama" and config["torch_dtype"] == "bfloat16"
    assert (CHECKPOINT_DIR / "model.safetensors").stat().st_size <= 12_000_000
    assert json.loads((CHECKPOINT_DIR / "tokenizer_config.json").read_text())["chat_template"]
    report = json.loads((CHECKPOINT_DIR / "training_report.json").read_text())
    assert report["held_out_perplexity"] < 100  # a trained model, not random weights (random: ~4096)


def test_loads_by_name_offline_and_transformers_reads_the_same_model(default_model, monkeypatch):
    import transformers

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tokenizer = default_model
    oracle_tokenizer = transformers.AutoTokenizer.from_pretrained(CHECKPOINT_DIR)
    oracle = transformers.AutoModelForCausalLM.from_pretrained(CHECKPOINT_DIR)
    text = "A context manager defines __enter__() and __exit__(). ñ"
    assert tokenizer(text)["input_ids"] == oracle_tokenizer(text)["input_ids"]
    messages = [{"role": "user", "content": "What is a tuple?"}]
    assert tokenizer.apply_chat_template(messages, add_generation_prompt=True) == \
        oracle_tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, oracle(ids).logits, rtol=1e-4, atol=1e-4)


def test_pipeline_without_a_model_uses_it_and_matches_transformers():
    import transformers

    ours = pipeline("text-generation")
    theirs = transformers.pipeline("text-generation", model=str(CHECKPOINT_DIR), device="cpu")
    options = dict(max_new_tokens=24, do_sample=False)
    assert ours(PROMPT, **options) == theirs(PROMPT, **options)
    chat = [{"role": "user", "content": "What does the function json.dumps do?"}]
    reply = ours(chat, **options)
    assert reply == theirs(chat, **options)
    assert reply[0]["generated_text"][-1]["role"] == "assistant"
