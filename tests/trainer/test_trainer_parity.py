"""formers' Trainer against transformers 4.45.2's on the same weights, data and arguments."""
from __future__ import annotations

import pytest
import torch

from formers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

from .helpers import tiny_model, tiny_tokenizer, token_rows

pytest.importorskip("accelerate")  # transformers' Trainer needs it (the `test` extra installs it)

ARGS = dict(per_device_train_batch_size=8, learning_rate=1e-2, max_steps=4, warmup_steps=1, weight_decay=0.1,
            lr_scheduler_type="cosine", logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
            max_grad_norm=0.5, adam_beta2=0.98)


def test_losses_schedule_and_weights_match_transformers_trainer(tmp_path):
    import transformers

    tiny_model(seed=3).save_pretrained(tmp_path / "init")
    data = token_rows(8, 12)  # one batch per step (data order cannot differ), no padding
    tokenizer = tiny_tokenizer()
    oracle_tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer,
                                                            pad_token="<pad>")

    ours = Trainer(model=tiny_model(seed=99), args=TrainingArguments(output_dir=str(tmp_path / "a"), **ARGS),
                   train_dataset=data, data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
    ours._load_model_weights(tmp_path / "init")
    ours.train()
    theirs_model = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "init")
    theirs = transformers.Trainer(
        model=theirs_model, args=transformers.TrainingArguments(output_dir=str(tmp_path / "b"), use_cpu=True, **ARGS),
        train_dataset=data, data_collator=transformers.DataCollatorForLanguageModeling(oracle_tokenizer, mlm=False))
    theirs.train()

    def steps(history):
        return [r for r in history if "loss" in r]

    assert len(steps(ours.state.log_history)) == len(steps(theirs.state.log_history)) == 4
    for a, b in zip(steps(ours.state.log_history), steps(theirs.state.log_history)):
        assert a["step"] == b["step"] and a["learning_rate"] == pytest.approx(b["learning_rate"], rel=1e-12)
        assert a["loss"] == pytest.approx(b["loss"], abs=2e-4)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
    theirs_state = theirs_model.state_dict()
    for key, value in ours.model.state_dict().items():
        torch.testing.assert_close(value, theirs_state[key], rtol=1e-4, atol=1e-5)
