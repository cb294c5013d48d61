"""The training job every distributed Trainer test runs, in one process (the reference) or per rank."""
from __future__ import annotations

from formers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

from tests.trainer.helpers import tiny_model, tiny_tokenizer, token_rows

# 40 rows of 5..12 tokens (padding differs between ranks): 5 steps per epoch at 8 examples per step
DATA = dict(count=40, length=(5, 12), seed=1)
BASE = dict(learning_rate=1e-2, max_steps=8, warmup_steps=2, weight_decay=0.1, lr_scheduler_type="cosine",
            logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, max_grad_norm=0.5,
            use_cpu=True, ddp_timeout=30)


class RecordingTrainer(Trainer):
    """Records each step's global loss (the logged one has 4 decimals) and its gradient norm, unrounded. The
    norm catches a gradient off by a constant factor, which Adam's update (and so the loss) hardly shows."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step_losses: list[float] = []
        self.grad_norms: list[float] = []

    def _optimizer_step(self, window):
        loss, grad_norm = super()._optimizer_step(window)
        self.step_losses.append(float(self._sum_over_ranks(loss)))
        self.grad_norms.append(float(grad_norm))
        return loss, grad_norm


def build_trainer(overrides: dict, output_dir: str, **model_overrides) -> RecordingTrainer:
    args = TrainingArguments(output_dir=output_dir, **{**BASE, **overrides})
    tokenizer = tiny_tokenizer()
    return RecordingTrainer(model=tiny_model(seed=3, **model_overrides), args=args,
                            train_dataset=token_rows(DATA["count"], DATA["length"], DATA["seed"]),
                            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
