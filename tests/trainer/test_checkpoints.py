"""A process killed in the middle of writing a checkpoint leaves nothing that resuming would pick up."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from formers import DataCollatorForLanguageModeling, Trainer, TrainingArguments
from formers.trainer_utils import get_last_checkpoint, sorted_checkpoints

from .helpers import tiny_model, tiny_tokenizer, token_rows

ROOT = Path(__file__).resolve().parents[2]

# Trains 4 steps saving every 2; the process dies (os._exit: no cleanup runs) while writing the
# optimizer state of checkpoint-4, after its model weights are already on disk.
KILLED_RUN = textwrap.dedent("""
    import os, sys, torch
    torch.set_num_threads(1)
    from formers import DataCollatorForLanguageModeling, Trainer, TrainingArguments
    from tests.trainer.helpers import tiny_model, tiny_tokenizer, token_rows
    real_save = torch.save
    def dying_save(obj, path, *args, **kwargs):
        if "checkpoint-4" in str(path) and str(path).endswith("optimizer.pt"):
            os._exit(9)
        return real_save(obj, path, *args, **kwargs)
    torch.save = dying_save
    tokenizer = tiny_tokenizer()
    args = TrainingArguments(output_dir=sys.argv[1], max_steps=4, save_steps=2, per_device_train_batch_size=4,
                             report_to="none", disable_tqdm=True)
    Trainer(model=tiny_model(), args=args, train_dataset=token_rows(16), tokenizer=tokenizer,
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False)).train()
""")


def test_checkpoint_killed_mid_save_is_never_the_latest(tmp_path):
    result = subprocess.run([sys.executable, "-c", KILLED_RUN, str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 9, result.stderr
    partial = tmp_path / "tmp-checkpoint-4"
    assert (partial / "model.safetensors").is_file() and not (partial / "trainer_state.json").exists()
    assert not (tmp_path / "checkpoint-4").exists()
    assert get_last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")

    tokenizer = tiny_tokenizer()
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, save_steps=2, per_device_train_batch_size=4,
                             report_to="none", disable_tqdm=True)
    trainer = Trainer(model=tiny_model(seed=5), args=args, train_dataset=token_rows(16), tokenizer=tokenizer,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
    trainer.train(resume_from_checkpoint=True)
    assert trainer.state.global_step == 4
    assert [p.name for p in sorted_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-4"]
    assert not partial.exists()  # the next save cleared the leftover


def test_folder_without_trainer_state_is_ignored(tmp_path):
    for name, complete in (("checkpoint-5", True), ("checkpoint-10", False), ("checkpoint-x", True)):
        (tmp_path / name).mkdir()
        if complete:
            (tmp_path / name / "trainer_state.json").write_text("{}")
    assert get_last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-5")
    assert get_last_checkpoint(tmp_path / "missing") is None
