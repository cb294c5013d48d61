"""`formers generate` / `formers chat`: the default model when no --model is given, streamed output."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from formers import cli
from formers.default_model import CHECKPOINT_DIR

PROMPT = "The with statement"


def _oracle_text(folder, prompt: str, max_new_tokens: int) -> str:
    """transformers' greedy continuation with the checkpoint's generation_config.json."""
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    inputs = tokenizer(prompt, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return prompt + tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_generate_defaults_to_the_bundled_model(capsys):
    assert cli.main(["generate", "--max-new-tokens", "20", PROMPT]) == 0
    printed = capsys.readouterr().out
    assert printed.rstrip("\n") == _oracle_text(CHECKPOINT_DIR, PROMPT, 20).rstrip("\n")


def test_generate_with_a_model_folder(tiny_checkpoint, capsys):
    from formers.default_model.tokenizer_training import train_tokenizer

    folder = tiny_checkpoint("llama", vocab_size=300, bos_token_id=0, eos_token_id=0, pad_token_id=1)
    train_tokenizer(["a small corpus of words for a tiny tokenizer"] * 10, 300, 256).save_pretrained(folder)
    assert cli.main(["generate", "--model", str(folder), "--max-new-tokens", "6", "a small"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == _oracle_text(folder, "a small", 6).rstrip("\n")


def test_chat_uses_the_template_and_answers(monkeypatch, capsys):
    turns = iter(["What is a tuple?"])

    def fake_input(prompt=""):
        print(prompt, end="")
        try:
            return next(turns)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    assert cli.main(["chat", "--max-new-tokens", "12"]) == 0
    out = capsys.readouterr().out
    assert "you> " in out and "assistant> " in out and len(out.split("assistant> ", 1)[1].strip()) > 0


def test_command_runs_offline_in_a_fresh_process():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "HF_HOME": "/nonexistent-formers-test"}
    result = subprocess.run([sys.executable, "-m", "formers", "generate", "--max-new-tokens", "8", PROMPT],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(PROMPT) and len(result.stdout) > len(PROMPT) + 4


def test_unknown_model_is_a_clean_error(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli.main(["generate", "--model", "no-such-org/no-such-model", "x"]) == 2
    assert "formers: error:" in capsys.readouterr().err
