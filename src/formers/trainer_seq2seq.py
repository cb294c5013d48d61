"""Seq2SeqTrainer: the Trainer for encoder-decoder models, with transformers 4.45's generate-based
evaluation.

Training differs from the causal Trainer only in the labels: a seq2seq model's labels are the decoder's
targets as they are (no shift), so the loss compares logits and labels position by position.
`evaluate` / `predict` run `prediction_step` over the eval loader; with `predict_with_generate` each
batch is decoded with `model.generate` and the ids are right-padded (pad id) to the model's
`generation_config.max_length` (or `max_new_tokens + 1`), batches then joined with -100 padding, as
4.45 does, so `compute_metrics` sees the same arrays.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .data.data_collator import IGNORE_INDEX
from .errors import ConfigError
from .trainer import Trainer
from .trainer_utils import EvalPrediction, PredictionOutput
from .training_args_seq2seq import Seq2SeqTrainingArguments


class Seq2SeqTrainer(Trainer):
    _label_shift = 0  # labels are already the decoder's targets

    def __init__(self, model: nn.Module | None = None, args: Seq2SeqTrainingArguments | None = None,
                 data_collator: Callable | None = None, train_dataset=None, eval_dataset=None, tokenizer=None,
                 model_init: Callable | None = None, compute_metrics: Callable | None = None,
                 callbacks: list | None = None, optimizers: tuple = (None, None),
                 preprocess_logits_for_metrics: Callable | None = None, **kwargs: Any):
        args = args if args is not None else Seq2SeqTrainingArguments(output_dir="tmp_trainer")
        if not isinstance(args, Seq2SeqTrainingArguments):
            raise ConfigError(f"Seq2SeqTrainer(args=...): expected Seq2SeqTrainingArguments, got {type(args).__name__}")
        super().__init__(model, args, data_collator, train_dataset, eval_dataset, tokenizer, model_init,
                         None, callbacks, optimizers, **kwargs)
        self.compute_metrics = compute_metrics
        self.preprocess_logits_for_metrics = preprocess_logits_for_metrics
        self._gen_kwargs: dict[str, Any] = {}
        if args.generation_config is not None:
            self.model.generation_config = self.load_generation_config(args.generation_config)

    @staticmethod
    def load_generation_config(source):
        """A GenerationConfig as given, or read from a folder / hub id (validated)."""
        from .generation import GenerationConfig
        config = copy.deepcopy(source) if isinstance(source, GenerationConfig) else GenerationConfig.from_pretrained(source)
        config.validate()
        return config

    # --- training ------------------------------------------------------------------------------------
    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None):
        """The model's loss, or with `num_items_in_batch`: summed token losses / num_items_in_batch."""
        outputs = model(**inputs)
        if num_items_in_batch is None or "labels" not in inputs:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs[0]
            if loss is None:
                raise ConfigError("Seq2SeqTrainer: the model returned no loss; batches need `labels` "
                                  "(e.g. data_collator=DataCollatorForSeq2Seq(tokenizer, model))")
            return (loss, outputs) if return_outputs else loss
        logits, labels = outputs["logits"], inputs["labels"]
        loss = nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX,
                                           reduction="sum") / num_items_in_batch
        return (loss, outputs) if return_outputs else loss

    # --- evaluation ------------------------------------------------------------------------------------
    def _generation_kwargs(self, gen_kwargs: dict[str, Any]) -> dict[str, Any]:
        """gen_kwargs with the argument defaults filled in (generation_max_length / generation_num_beams)."""
        gen_kwargs = dict(gen_kwargs)
        if gen_kwargs.get("max_length") is None and gen_kwargs.get("max_new_tokens") is None:
            gen_kwargs["max_length"] = self.args.generation_max_length
        if gen_kwargs.get("num_beams") is None:
            gen_kwargs["num_beams"] = self.args.generation_num_beams
        return {k: v for k, v in gen_kwargs.items() if not (k in ("max_length", "num_beams") and v is None)}

    def evaluate(self, eval_dataset=None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval",
                 **gen_kwargs: Any) -> dict[str, float]:
        """Metrics over the eval set: `{prefix}_loss` (the plain mean of the batch losses, as 4.45 computes it)
        and, with `compute_metrics`, its results on the (generated, with predict_with_generate) predictions."""
        self._gen_kwargs = self._generation_kwargs(gen_kwargs)
        output = self._prediction_loop(eval_dataset, ignore_keys, metric_key_prefix,
                                       loss_only=self.compute_metrics is None)
        self.log(dict(output.metrics))
        self._event("on_evaluate", metrics=output.metrics)
        return output.metrics

    def predict(self, test_dataset, ignore_keys: list[str] | None = None, metric_key_prefix: str = "test",
                **gen_kwargs: Any) -> PredictionOutput:
        """Predictions (generated ids with predict_with_generate, else logits), label ids and metrics."""
        if test_dataset is None:
            raise ConfigError("Seq2SeqTrainer.predict: test_dataset is required")
        self._gen_kwargs = self._generation_kwargs(gen_kwargs)
        output = self._prediction_loop(test_dataset, ignore_keys, metric_key_prefix, loss_only=False)
        self._event("on_predict", metrics=output.metrics)
        return output

    @torch.no_grad()
    def _prediction_loop(self, dataset, ignore_keys, prefix: str, loss_only: bool) -> PredictionOutput:
        loader = self.get_eval_dataloader(dataset)
        was_training = self.model.training
        self.model.eval()
        start, losses, preds, labels, examples = time.perf_counter(), [], [], [], 0
        for batch in loader:
            size = batch["input_ids"].shape[0]
            examples += size
            loss, logits, label = self.prediction_step(self.model, batch, loss_only, ignore_keys=ignore_keys)
            if loss is not None:
                losses.append(loss.float().reshape(1))
            if logits is not None and self.preprocess_logits_for_metrics is not None:
                logits = self.preprocess_logits_for_metrics(logits, label)
            for store, value in ((preds, logits), (labels, label)):
                if value is not None:
                    store.append(value)
        self.model.train(was_training)
        predictions, label_ids = _join_padded(preds), _join_padded(labels)
        metrics: dict[str, float] = {}
        if self.compute_metrics is not None and predictions is not None and label_ids is not None:
            metrics.update(self.compute_metrics(EvalPrediction(predictions, label_ids)))
        if losses:
            metrics["loss"] = float(torch.cat(losses).mean())
        runtime = time.perf_counter() - start
        metrics.update(runtime=round(runtime, 4), samples_per_second=round(examples / runtime, 3),
                       steps_per_second=round(len(loader) / runtime, 3))
        metrics = {k if k.startswith(f"{prefix}_") else f"{prefix}_{k}": _plain(v) for k, v in metrics.items()}
        return PredictionOutput(predictions, label_ids, metrics)

    def prediction_step(self, model: nn.Module, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None, **gen_kwargs: Any):
        """(loss, predictions, labels) of one batch; predictions are generated ids with predict_with_generate
        (padded to the generation config's length), the logits otherwise."""
        inputs = self._prepare_inputs(inputs)
        generate = self.args.predict_with_generate and not prediction_loss_only
        generated = None
        if generate:
            gen_kwargs = dict(gen_kwargs) if gen_kwargs else dict(self._gen_kwargs)  # given ones as they are (4.45)
            gen_kwargs = {k: v for k, v in gen_kwargs.items()
                          if k != "synced_gpus" and not (k in ("max_length", "num_beams") and v is None)}
            # decoder inputs built from the labels (the collator's teacher forcing) must not prefix the output
            teacher_forced = "labels" in inputs and "decoder_input_ids" in inputs and \
                inputs["labels"].shape == inputs["decoder_input_ids"].shape
            skip = {"labels"} | ({"decoder_input_ids", "decoder_attention_mask"} if teacher_forced else set())
            generated = self.model.generate(**{k: v for k, v in inputs.items() if k not in skip}, **gen_kwargs)
            generated = self._pad_to_generation_length(generated)
        loss = logits = None
        if "labels" in inputs or not generate:
            with self.autocast_smart_context_manager():
                outputs = model(**inputs)
            if "labels" in inputs:
                loss = (outputs["loss"] if isinstance(outputs, dict) else outputs[0]).mean().detach()
            logits = outputs["logits"]
        if prediction_loss_only:
            return loss, None, None
        labels = inputs.get("labels")
        if generate:
            return loss, generated, self._pad_to_generation_length(labels) if labels is not None else None
        return loss, logits, labels

    def _pad_to_generation_length(self, ids: torch.Tensor) -> torch.Tensor:
        """Right-pad to the model's generation_config.max_length (or max_new_tokens + 1) as 4.45 does."""
        config = self.model.generation_config
        target = config.max_length
        if ids.shape[-1] >= target and config.max_new_tokens is not None:
            target = config.max_new_tokens + 1
        if ids.shape[-1] >= target:
            return ids
        return self._pad_tensors_to_max_len(ids, target)

    def _pad_tensors_to_max_len(self, tensor: torch.Tensor, max_length: int) -> torch.Tensor:
        pad = None
        if self.tokenizer is not None:
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        if pad is None:
            pad = self.model.config.pad_token_id
        if pad is None:
            raise ConfigError("Seq2SeqTrainer: padding generated ids needs a pad token id (tokenizer.pad_token_id or "
                              "model.config.pad_token_id); neither is set")
        padded = tensor.new_full((tensor.shape[0], max_length), pad)
        padded[:, :tensor.shape[-1]] = tensor
        return padded


def _join_padded(tensors: list[torch.Tensor]) -> np.ndarray | None:
    """Batches joined along the first axis, narrower ones right-padded with -100 (4.45's nested_concat)."""
    if not tensors:
        return None
    width = max(t.shape[1] for t in tensors) if tensors[0].dim() > 1 else None
    parts = []
    for t in tensors:
        if width is not None and t.shape[1] < width:
            t = torch.cat([t, t.new_full((t.shape[0], width - t.shape[1], *t.shape[2:]), IGNORE_INDEX)], dim=1)
        parts.append(t.cpu())
    return torch.cat(parts).numpy()


def _plain(value: Any) -> Any:
    """numpy / torch scalars as Python numbers, so metrics are JSON-serialisable."""
    if isinstance(value, np.generic) or (isinstance(value, torch.Tensor) and value.dim() == 0):
        return value.item()
    return value


__all__ = ["Seq2SeqTrainer"]
