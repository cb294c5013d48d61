"""Train formers' bundled default model from scratch with formers' own Trainer.

    python scripts/train_default_model.py            # writes src/formers/default_model/checkpoint/

Steps: gather the CPython corpus (corpus.py) -> train a byte-level BPE (tokenizer_training.py) ->
pack documents (plain text, plus ChatML question/answer pairs built from docstring titles) into
fixed-length rows -> train a small Llama with `Trainer` (bf16 autocast, cosine schedule, held-out
evaluation, best checkpoint kept) -> store the weights in bfloat16 (the file stays under 12 MB) ->
report wall time and held-out perplexity of the stored weights.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from . import CHECKPOINT_DIR
from .corpus import Document, gather
from .tokenizer_training import BOS_EOS, IM_END, train_tokenizer


@dataclass
class Recipe:
    vocab_size: int = 4096
    hidden_size: int = 256
    intermediate_size: int = 688
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    max_position_embeddings: int = 512
    seq_len: int = 256
    batch_size: int = 16
    learning_rate: float = 2e-3
    min_lr_rate: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    max_steps: int = 1200
    time_budget_minutes: float = 42.0  # a safety net on a shared machine: stop (and keep the best) past it
    eval_steps: int = 200
    seed: int = 0
    held_out_percent: int = 4
    chat_answer_chars: int = 500


def chat_example(doc: Document, tokenizer, max_chars: int) -> list[int]:
    """The document's question and its first paragraph as the answer, in the chat template."""
    answer = doc.text.split("\n\n", 1)[0]
    if len(answer) > max_chars:  # cut at the last sentence end that fits
        cut = answer.rfind(". ", 0, max_chars)
        answer = answer[: cut + 1] if cut > 0 else answer[:max_chars]
    messages = [{"role": "user", "content": doc.question}, {"role": "assistant", "content": answer}]
    return tokenizer.apply_chat_template(messages)


def pack(streams: list[list[int]], seq_len: int) -> list[dict[str, list[int]]]:
    """Concatenate token lists and cut them into rows of `seq_len` (the tail is dropped)."""
    flat = [t for ids in streams for t in ids]
    return [{"input_ids": flat[i:i + seq_len]} for i in range(0, len(flat) - seq_len + 1, seq_len)]


def build_datasets(recipe: Recipe, train_docs: list[Document], held_out: list[Document], tokenizer):
    rng = random.Random(recipe.seed)
    plain = [tokenizer(doc.text)["input_ids"] for doc in train_docs]  # each starts with <|endoftext|>
    chats = [chat_example(doc, tokenizer, recipe.chat_answer_chars) for doc in train_docs if doc.question]
    streams = plain + chats
    rng.shuffle(streams)
    evaluation = [tokenizer(doc.text)["input_ids"] for doc in held_out]
    return pack(streams, recipe.seq_len), pack(evaluation, recipe.seq_len), len(chats)


def build_model(recipe: Recipe, tokenizer):
    from ..models.llama import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=recipe.vocab_size, hidden_size=recipe.hidden_size, intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_hidden_layers, num_attention_heads=recipe.num_attention_heads,
        num_key_value_heads=recipe.num_key_value_heads, max_position_embeddings=recipe.max_position_embeddings,
        rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(recipe.seed)
    return LlamaForCausalLM.from_config(config)


def training_arguments(recipe: Recipe, work_dir: Path):
    from ..training_args import TrainingArguments

    return TrainingArguments(
        output_dir=str(work_dir), max_steps=recipe.max_steps, per_device_train_batch_size=recipe.batch_size,
        per_device_eval_batch_size=32, learning_rate=recipe.learning_rate, weight_decay=recipe.weight_decay,
        adam_beta2=0.95, lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": recipe.min_lr_rate}, warmup_steps=recipe.warmup_steps,
        logging_steps=20, eval_strategy="steps", eval_steps=recipe.eval_steps, save_strategy="steps",
        save_steps=recipe.eval_steps, save_total_limit=2, load_best_model_at_end=True, bf16=True,
        seed=recipe.seed, report_to="none",
    )


def time_budget_callback(deadline: float):
    """Stops training once `time.perf_counter()` passes `deadline` (the Trainer then saves and ends)."""
    from ..trainer_callback import TrainerCallback

    class TimeBudget(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if time.perf_counter() > deadline and not control.should_training_stop:
                print(f"\ntime budget reached at step {state.global_step}; stopping", flush=True)
                control.should_training_stop = True
            return control

    return TimeBudget()


def set_generation_defaults(model, tokenizer) -> None:
    """Stop at a document end or a chat turn end; decoding settings that read well for this model."""
    config = model.generation_config
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = [tokenizer.convert_tokens_to_ids(BOS_EOS), tokenizer.convert_tokens_to_ids(IM_END)]
    config.pad_token_id = tokenizer.pad_token_id
    config.repetition_penalty = 1.3  # greedy text of a model this small loops without it
    config.max_new_tokens = 128
    config._from_model_config = False  # hand-set values: transformers must not regenerate it from config.json


def train(recipe: Recipe, output_dir: Path, work_dir: Path) -> dict:
    from ..data.data_collator import DataCollatorForLanguageModeling
    from ..trainer import Trainer

    start = time.perf_counter()
    corpus = gather(recipe.held_out_percent)
    tokenizer = train_tokenizer((doc.text for doc in corpus.train), recipe.vocab_size, recipe.max_position_embeddings)
    train_rows, eval_rows, num_chats = build_datasets(recipe, corpus.train, corpus.held_out, tokenizer)
    print(f"corpus: {len(corpus.train)} train documents ({num_chats} chat examples), {len(corpus.held_out)} "
          f"held out; {len(train_rows)} x {recipe.seq_len} train tokens, {len(eval_rows)} rows held out", flush=True)
    model = build_model(recipe, tokenizer)
    print(f"model: {model.num_parameters() / 1e6:.2f}M parameters", flush=True)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    trainer = Trainer(model=model, args=training_arguments(recipe, work_dir), train_dataset=train_rows,
                      eval_dataset=eval_rows, data_collator=collator, tokenizer=tokenizer,
                      callbacks=[time_budget_callback(start + recipe.time_budget_minutes * 60)])
    trainer.train()
    train_seconds = time.perf_counter() - start

    model = trainer.model.to(torch.bfloat16)  # what ships; evaluate these exact weights (upcast to fp32)
    set_generation_defaults(model, tokenizer)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    trainer.model = model.to(torch.float32)
    trainer.args.bf16 = False
    held_out = trainer.evaluate()
    report = {"train_wall_seconds": round(train_seconds, 1), "steps": trainer.state.global_step,
              "best_checkpoint_step": _step_of(trainer.state.best_model_checkpoint), "held_out_loss": round(held_out["eval_loss"], 4),
              "held_out_perplexity": round(held_out["eval_perplexity"], 2),
              "held_out_tokens": len(eval_rows) * recipe.seq_len, "train_tokens_per_epoch": len(train_rows) * recipe.seq_len,
              "train_documents": len(corpus.train), "held_out_documents": len(corpus.held_out),
              "parameters": model.num_parameters(), "python": sys.version.split()[0],
              "torch_threads": torch.get_num_threads(), "recipe": asdict(recipe)}
    (output_dir / "training_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for path in output_dir.iterdir():  # package data must be readable by every user after install
        path.chmod(0o644)
    return report


def _step_of(folder: str | None) -> int | None:
    return int(folder.rsplit("-", 1)[1]) if folder else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train formers' bundled default model from CPython's own docs.")
    parser.add_argument("--output-dir", type=Path, default=CHECKPOINT_DIR, help="where the shipped files go")
    parser.add_argument("--work-dir", type=Path, default=Path("default_model_run"),
                        help="Trainer output_dir: checkpoints and the JSON-lines log")
    parser.add_argument("--max-steps", type=int, default=None, help="override the recipe's step count")
    parser.add_argument("--eval-steps", type=int, default=None)
    parser.add_argument("--time-budget-minutes", type=float, default=None)
    args = parser.parse_args(argv)
    recipe = Recipe()
    if args.max_steps is not None:
        recipe.max_steps = args.max_steps
    if args.eval_steps is not None:
        recipe.eval_steps = args.eval_steps
    if args.time_budget_minutes is not None:
        recipe.time_budget_minutes = args.time_budget_minutes
    report = train(recipe, args.output_dir, args.work_dir)
    size = (args.output_dir / "model.safetensors").stat().st_size
    print(f"trained in {report['train_wall_seconds'] / 60:.1f} min on {report['torch_threads']} threads; "
          f"held-out perplexity {report['held_out_perplexity']:.2f} (loss {report['held_out_loss']:.4f}); "
          f"model.safetensors {size / 1e6:.2f} MB", flush=True)
    return 0 if math.isfinite(report["held_out_loss"]) else 1
