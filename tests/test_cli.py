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


CHAT_TURNS = ["What is a tuple?", "And a list?", "Which one is mutable?"]


def _spy_on_chat(monkeypatch, turns: list[dict]) -> None:
    """Wrap the model `formers chat` loads: per generate() call, record the prompt ids, the cache length it
    found (what is reused), the id count of every forward (the first one is the prefill) and the output."""
    real_load = cli._load

    def spied_load(args):
        model, tokenizer = real_load(args)
        forward, generate = model.forward, model.generate

        def spy_forward(*args, input_ids=None, **kwargs):
            turns[-1]["forwards"].append(input_ids.shape[1])
            return forward(*args, input_ids=input_ids, **kwargs)

        def spy_generate(input_ids=None, past_key_values=None, **kwargs):
            turns.append({"prompt": input_ids[0].tolist(), "cached": past_key_values.get_seq_length(), "forwards": []})
            output = generate(input_ids=input_ids, past_key_values=past_key_values, **kwargs)
            turns[-1]["output"] = output[0].tolist()
            return output

        monkeypatch.setattr(model, "forward", spy_forward)
        monkeypatch.setattr(model, "generate", spy_generate)
        return model, tokenizer

    monkeypatch.setattr(cli, "_load", spied_load)


def test_chat_reuses_the_cache_across_three_turns_and_answers_like_a_cold_run(monkeypatch, capsys):
    """Three turns through stdin: turns 2 and 3 prefill only the tokens after the cached conversation (the
    previous prompt and reply are not recomputed), and every reply equals transformers 4.45.2 generating it
    from scratch on the whole conversation so far."""
    import io

    import transformers

    turns: list[dict] = []
    _spy_on_chat(monkeypatch, turns)
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(text + "\n" for text in CHAT_TURNS)))
    assert cli.main(["chat", "--max-new-tokens", "10", "--system", "You answer briefly."]) == 0
    printed = capsys.readouterr().out
    assert len(turns) == 3

    tokenizer = transformers.AutoTokenizer.from_pretrained(CHECKPOINT_DIR)
    oracle = transformers.AutoModelForCausalLM.from_pretrained(CHECKPOINT_DIR)
    messages = [{"role": "system", "content": "You answer briefly."}]
    previous = None
    for user, turn in zip(CHAT_TURNS, turns):
        prompt, output = turn["prompt"], turn["output"]
        reply = tokenizer.decode(output[len(prompt):], skip_special_tokens=True)
        assert reply and "assistant> " + reply in printed
        # the prefill runs exactly the prompt past the cache; decode steps run one token each
        assert turn["forwards"][0] == len(prompt) - turn["cached"] and set(turn["forwards"][1:]) == {1}
        if previous is None:
            assert turn["cached"] == 0
        else:  # reused: the whole previous prompt and its reply tokens as far as they re-tokenize the same
            seen = previous["output"][:-1]  # the last generated token was never fed to the model
            common = next((i for i, (a, b) in enumerate(zip(seen, prompt)) if a != b), min(len(seen), len(prompt)))
            assert turn["cached"] == min(common, len(prompt) - 1) >= len(previous["prompt"])
            assert turn["forwards"][0] < len(prompt) - len(previous["prompt"])
        messages.append({"role": "user", "content": user})
        cold = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        assert cold[0].tolist() == prompt
        cold_output = oracle.generate(cold, attention_mask=torch.ones_like(cold), max_new_tokens=10, do_sample=False)
        assert cold_output[0].tolist() == output
        messages.append({"role": "assistant", "content": reply})
        previous = turn
