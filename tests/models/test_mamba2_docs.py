"""The Mamba 2 model card's examples run unchanged after `transformers` -> `formers`, on a tiny local
checkpoint (the stories260K tokenizer beside a random Mamba2 of its vocabulary) in place of Codestral:
the generation snippet prints the same text as under transformers 4.45.2, and the fine-tuning script,
in its PEFT-free Trainer form (no trl/peft), trains as it does under 4.45.2."""
from __future__ import annotations

import contextlib
import io
import shutil

import pytest
import torch

from ..conftest import STORIES, build_oracle_checkpoint

CODESTRAL = "mistralai/Mamba-Codestral-7B-v0.1"

USAGE = '''
from transformers import Mamba2Config, Mamba2ForCausalLM, AutoTokenizer
import torch
model_id = 'mistralai/Mamba-Codestral-7B-v0.1'
tokenizer = AutoTokenizer.from_pretrained(model_id, revision='refs/pr/9', from_slow=True, legacy=False)
model = Mamba2ForCausalLM.from_pretrained(model_id, revision='refs/pr/9')
input_ids = tokenizer("Hey how are you doing?", return_tensors= "pt")["input_ids"]

out = model.generate(input_ids, max_new_tokens=10)
print(tokenizer.batch_decode(out))
'''

FINE_TUNING = '''
from transformers import AutoTokenizer, Mamba2ForCausalLM, TrainingArguments, Trainer, DataCollatorForLanguageModeling
model_id = 'mistralai/Mamba-Codestral-7B-v0.1'
tokenizer = AutoTokenizer.from_pretrained(model_id, revision='refs/pr/9', from_slow=True, legacy=False)
tokenizer.pad_token = tokenizer.eos_token
tokenizer.padding_side = "left" #enforce padding side left

model = Mamba2ForCausalLM.from_pretrained(model_id, revision='refs/pr/9')
dataset = [tokenizer(quote) for quote in quotes]
# Without CUDA kernels, batch size of 2 occupies one 80GB device
# but precision can be reduced.
# Experiments and trials welcome!
training_args = TrainingArguments(
    output_dir="./results",
    num_train_epochs=3,
    per_device_train_batch_size=2,
    logging_dir='./logs',
    logging_steps=10,
    learning_rate=2e-3
)
trainer = Trainer(
    model=model,
    tokenizer=tokenizer,
    args=training_args,
    train_dataset=dataset,
    data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
)
trainer.train()
'''

QUOTES = ["Once upon a time there was a little girl.", "The sun was shining and the birds sang.",
          "Tom liked to play with his red ball.", "She smiled at the big dog.", "They ran to the park together.",
          "It was a happy day for everyone.", "The cat sat on the warm mat.", "Lily found a shiny stone."]


def local_codestral(tmp_path):
    """A folder standing in for Codestral: a random 4.45.2 Mamba2 of the stories260K vocabulary (512)."""
    folder = build_oracle_checkpoint(tmp_path / "codestral", "mamba2", base=dict(
        vocab_size=512, hidden_size=64, num_heads=8, head_dim=16, n_groups=8, state_size=16, num_hidden_layers=2,
        time_step_min=1e-9, bos_token_id=1, eos_token_id=2, pad_token_id=0))
    for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(STORIES / name, folder / name)
    return folder


def run(script: str, library: str, folder, **names) -> str:
    """Execute the snippet with `transformers` -> `library` and the model id -> `folder`; its stdout."""
    code = script.replace("transformers", library).replace(CODESTRAL, str(folder))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, f"<{library} doc example>", "exec"), dict(names))
    return printed.getvalue()


def test_usage_snippet_prints_what_4_45_prints(tmp_path):
    folder = local_codestral(tmp_path)
    ours = run(USAGE, "formers", folder)
    assert ours.startswith("['<s> Hey how are you doing?") and ours == run(USAGE, "transformers", folder)


def fine_tune(library: str, folder) -> dict:
    """Execute the fine-tuning script with `transformers` -> `library`; its namespace (trainer, model, ...)."""
    scope = {"quotes": QUOTES}
    code = FINE_TUNING.replace("transformers", library).replace(CODESTRAL, str(folder))
    exec(compile(code, f"<{library} fine-tuning example>", "exec"), scope)
    return scope


def test_fine_tuning_script_trains_as_under_4_45(tmp_path, monkeypatch):
    """The script trains (12 steps, logged at step 10), and its logged loss, gradient norm and mean training
    loss are 4.45.2's running the same script on the same folder."""
    folder = local_codestral(tmp_path)
    monkeypatch.chdir(tmp_path)
    scope = fine_tune("formers", folder)
    logged = [entry for entry in scope["trainer"].state.log_history if "loss" in entry]
    assert len(logged) == 1 and torch.isfinite(torch.tensor(logged[0]["loss"]))
    assert scope["trainer"].state.global_step == 12
    import formers
    batch = scope["tokenizer"](QUOTES, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    with torch.no_grad():
        before = formers.Mamba2ForCausalLM.from_pretrained(folder)(**batch, labels=labels).loss
        after = scope["model"].eval()(**batch, labels=labels).loss
    assert after < before - 0.5  # it learned the quotes
    theirs = fine_tune("transformers", folder)["trainer"].state.log_history
    expected = [entry for entry in theirs if "loss" in entry]
    assert logged[0]["loss"] == pytest.approx(expected[0]["loss"], abs=2e-4)
    assert logged[0]["grad_norm"] == pytest.approx(expected[0]["grad_norm"], rel=1e-4)
    assert scope["trainer"].state.log_history[-1]["train_loss"] == pytest.approx(theirs[-1]["train_loss"], abs=1e-4)
