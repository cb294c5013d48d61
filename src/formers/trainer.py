"""Trainer: transformers' training loop for causal LMs on one device (CPU or GPU).

One optimizer step takes `gradient_accumulation_steps` micro-batches. The loss of each is the sum of
its token losses divided by the number of label tokens in the whole window, so accumulating 4 x 2
examples gives the update of one batch of 8 even when rows are padded differently (transformers
4.46's fix; 4.45 divided each micro-batch mean by the number of micro-batches).
Data order is a per-epoch permutation seeded by `data_seed or seed` and the epoch, so resuming at
step k skips exactly the batches already seen and, with the restored RNG states, reproduces the
uninterrupted run.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from . import trainer_checkpoint as ckpt
from .distributed import training as dist_train
from .distributed import training_checkpoint as dist_ckpt
from .data.data_collator import IGNORE_INDEX, DataCollatorWithPadding, default_data_collator
from .errors import CheckpointError, ConfigError
from .modeling.norms import RMSNorm
from .optimization import get_scheduler
from .trainer_callback import CallbackHandler, TrainerCallback, TrainerControl
from .trainer_log import TrainingProgress
from .trainer_loop import run_training
from .trainer_distributed import DistributedTrainerMixin
from .trainer_galore import optimizer_state_for_saving
from .trainer_state import TrainerState
from .trainer_utils import TrainOutput, get_last_checkpoint, neftune_post_forward_hook, set_seed
from .training_args import IntervalStrategy, TrainingArguments

logger = logging.getLogger(__name__)


class Trainer(DistributedTrainerMixin):
    _label_shift = 1  # causal LM labels are the inputs; the targets start one position later
    def __init__(self, model: nn.Module | None = None, args: TrainingArguments | None = None,
                 data_collator: Callable | None = None, train_dataset=None, eval_dataset=None, tokenizer=None,
                 model_init: Callable | None = None, compute_metrics: Callable | None = None,
                 callbacks: list | None = None, optimizers: tuple = (None, None), **kwargs: Any):
        if kwargs:
            raise ConfigError(f"Trainer: unexpected arguments {sorted(kwargs)}")
        if model is None or model_init is not None or compute_metrics is not None:
            raise ConfigError("Trainer: pass `model`; model_init and compute_metrics are not supported by formers yet")
        self.args = args if args is not None else TrainingArguments(output_dir="tmp_trainer")
        set_seed(self.args.seed)
        self.model = model.to(self.args.device)
        self._dist = dist_train.setup_group(self.args, self.model)  # None for one process
        self.model_wrapped = self.model if self._dist is None else dist_train.wrap_model(self.model, self.args,
                                                                                          self._dist)
        self.tokenizer = tokenizer
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        default = DataCollatorWithPadding(tokenizer) if tokenizer is not None else default_data_collator
        self.data_collator = data_collator if data_collator is not None else default
        self.optimizer, self.lr_scheduler = optimizers
        self.state = TrainerState()
        self.control = TrainerControl()
        self.callback_handler = CallbackHandler(callbacks)
        self.neftune_noise_alpha = self.args.neftune_noise_alpha
        self._neftune_handle = None
        self._input_columns = self._model_input_names()
        self._scaler: torch.amp.GradScaler | None = None
        self._flops_params = 0
        self._progress: TrainingProgress | None = None  # set while train() runs
        self._last_eval_metrics: dict[str, float] | None = None
        self._event("on_init_end")

    # --- data ----------------------------------------------------------------------------------
    def _model_input_names(self) -> set[str]:
        params = inspect.signature(self.model.forward).parameters.values()
        named = {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        return named | {"label", "label_ids", "labels"} | set(self.args.label_names or [])

    def _collate(self, examples: list) -> dict[str, torch.Tensor]:
        if self.args.remove_unused_columns and examples and isinstance(examples[0], Mapping):
            examples = [{k: v for k, v in ex.items() if k in self._input_columns} for ex in examples]
        return self.data_collator(examples)

    def _batch_order(self, dataset, batch_size: int, epoch: int, shuffle: bool) -> list[list[int]]:
        """Index batches of one epoch; the permutation depends only on the seed and the epoch."""
        if shuffle:
            generator = torch.Generator().manual_seed(
                (self.args.data_seed if self.args.data_seed is not None else self.args.seed) + epoch)
            order = torch.randperm(len(dataset), generator=generator).tolist()
        else:
            order = list(range(len(dataset)))
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        if self.args.dataloader_drop_last and batches and len(batches[-1]) < batch_size:
            batches.pop()
        return batches

    def _loader(self, dataset, batches: list[list[int]], seed: int = 0) -> DataLoader:
        """A loader over fixed index batches; its own generator keeps the global RNG untouched (an
        iterator would otherwise draw its worker seed from it, and a resumed run would drift)."""
        return DataLoader(dataset, batch_sampler=batches, collate_fn=self._collate,
                          generator=torch.Generator().manual_seed(seed),
                          num_workers=self.args.dataloader_num_workers,
                          pin_memory=self.args.dataloader_pin_memory and self.args.device.type == "cuda")

    def get_train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise ConfigError("Trainer: training needs a train_dataset")
        return self._loader(self.train_dataset, self._train_batches(0))

    def get_eval_dataloader(self, eval_dataset=None) -> DataLoader:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ConfigError("Trainer.evaluate: needs an eval_dataset (argument or Trainer(eval_dataset=...))")
        return self._loader(dataset, self._batch_order(dataset, self.args.eval_batch_size, 0, shuffle=False))

    def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        device = self.args.device
        return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}

    # --- optimizer and schedule --------------------------------------------------------------------
    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """Weight decay applies to every weight but biases and normalisation layers (as transformers)."""
        skip = set()
        for prefix, module in model.named_modules():
            if isinstance(module, (nn.LayerNorm, RMSNorm)):
                skip.update(f"{prefix}.{name}" if prefix else name for name, _ in module.named_parameters())
        return [name for name, _ in model.named_parameters() if name not in skip and "bias" not in name]

    def create_optimizer(self) -> torch.optim.Optimizer:
        if self.optimizer is None and self.args.optim.startswith("galore"):
            from .trainer_galore import create_galore_optimizer
            self.optimizer = create_galore_optimizer(self.model, self.args, self._dist)
        if self.optimizer is None:
            decay = set(self.get_decay_parameter_names(self.model))
            named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
            groups = [{"params": [p for n, p in named if n in decay], "weight_decay": self.args.weight_decay},
                      {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0}]
            self.optimizer = torch.optim.AdamW(groups, lr=self.args.learning_rate,
                                               betas=(self.args.adam_beta1, self.args.adam_beta2),
                                               eps=self.args.adam_epsilon)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        from .trainer_galore import LayerWiseDummyOptimizer, layerwise_scheduler
        if self.lr_scheduler is None and isinstance(optimizer or self.optimizer, LayerWiseDummyOptimizer):
            self.lr_scheduler = layerwise_scheduler(optimizer or self.optimizer, self.args, num_training_steps)
        if self.lr_scheduler is None:
            self.lr_scheduler = get_scheduler(self.args.lr_scheduler_type, optimizer or self.optimizer,
                                              num_warmup_steps=self.args.get_warmup_steps(num_training_steps),
                                              num_training_steps=num_training_steps,
                                              scheduler_specific_kwargs=self.args.lr_scheduler_kwargs)
        return self.lr_scheduler

    def create_optimizer_and_scheduler(self, num_training_steps: int) -> None:
        self.create_optimizer()
        self.create_scheduler(num_training_steps, self.optimizer)

    def _get_learning_rate(self) -> float:
        return self.lr_scheduler.get_last_lr()[0]

    # --- one step ----------------------------------------------------------------------------------
    def autocast_smart_context_manager(self):
        dtype = self.args.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.args.device.type, dtype=dtype)

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None):
        """The model's loss, or with `num_items_in_batch`: summed token losses / num_items_in_batch."""
        labels = inputs.pop("labels") if num_items_in_batch is not None and "labels" in inputs else None
        outputs = model(**inputs)
        if labels is not None:
            logits = outputs["logits"]
            loss = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                               ignore_index=IGNORE_INDEX, reduction="sum") / num_items_in_batch
            aux_loss = outputs.get("aux_loss") if isinstance(outputs, dict) else None
            if aux_loss is not None:  # a mixture of experts' load-balancing loss, added as its own loss adds it
                loss = loss + self.model.config.router_aux_loss_coef * aux_loss / self.args.gradient_accumulation_steps
        else:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs[0]
            if loss is None:
                raise ConfigError("Trainer: the model returned no loss; batches need `labels` "
                                  "(e.g. data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))")
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model: nn.Module, inputs: dict[str, Any],
                      num_items_in_batch: torch.Tensor | None = None) -> torch.Tensor:
        """Forward and backward of one micro-batch; returns its (detached) share of the step's loss."""
        model.train()
        inputs = self._prepare_inputs(inputs)
        with self.autocast_smart_context_manager():
            loss = self.compute_loss(model, inputs, num_items_in_batch=num_items_in_batch)
        if num_items_in_batch is None:
            loss = loss / self.args.gradient_accumulation_steps
        # DDP and FSDP average gradients over ranks; a loss normalised by the global window's token count
        # is scaled back up so the update is the one-process update (the returned share is unscaled)
        world = self._world_size
        backward_loss = loss * world if num_items_in_batch is not None and world > 1 else loss
        if self._scaler is not None:
            self._scaler.scale(backward_loss).backward()
        else:
            backward_loss.backward()
        return loss.detach() if num_items_in_batch is not None else loss.detach() / world

    def _optimizer_step(self, window: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One update from a window of micro-batches -> (loss of the step, gradient norm)."""
        has_labels = all("labels" in b for b in window)
        num_items = sum(int((b["labels"][:, self._label_shift:] != IGNORE_INDEX).sum()) for b in window) \
            if has_labels else None
        tokens = sum(_token_count(batch) for batch in window)
        with dist_train.collective_errors(self._dist, f"step {self.state.global_step + 1}"):
            if self._dist is not None:  # label tokens and tokens of the global window (every rank's)
                counts = torch.tensor([num_items or 0, tokens], device=self._dist.info.device())
                num_items_all, tokens = dist_train.sum_over_ranks(counts, self._dist, "counting tokens").tolist()
                num_items = num_items_all if num_items is not None else None
            num_items = max(num_items, 1) if num_items is not None else None  # all-padding windows: loss 0
            self.state.num_input_tokens_seen += tokens
            self.state.total_flos += 6 * tokens * self._flops_params
            step_loss = torch.zeros((), device=self.args.device)
            for index, batch in enumerate(window):
                with self._gradient_sync(index == len(window) - 1):
                    step_loss += self.training_step(self.model_wrapped, batch, num_items)
            return step_loss, self._update()

    def _update(self) -> torch.Tensor | None:
        """Clip, step the optimizer and the schedule, clear the gradients -> the gradient norm."""
        grad_norm = None
        if self._scaler is not None:
            self._scaler.unscale_(self.optimizer)
        if self.args.max_grad_norm is not None and self.args.max_grad_norm > 0:
            grad_norm = dist_train.grad_norm_value(
                nn.utils.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm))
        if self._scaler is not None:
            self._scaler.step(self.optimizer)
            self._scaler.update()
        else:
            self.optimizer.step()
        if not isinstance(self.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.lr_scheduler.step()  # a plateau schedule steps on evaluation results instead
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    # --- training -----------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None,
              ignore_keys_for_eval: list[str] | None = None, **kwargs: Any) -> TrainOutput:
        if kwargs:
            raise ConfigError(f"Trainer.train: unexpected arguments {sorted(kwargs)}")
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise CheckpointError(f"resume_from_checkpoint=True: no complete checkpoint in output_dir "
                                      f"{self.args.output_dir!r}")
        self._scaler = torch.amp.GradScaler("cuda") if self.args.fp16 else None
        self._flops_params = self.model.num_parameters(exclude_embeddings=True)
        if self.neftune_noise_alpha is not None:
            self._activate_neftune()
        try:
            return run_training(self, resume_from_checkpoint or None)
        finally:
            if self.neftune_noise_alpha is not None:
                self._deactivate_neftune()

    def _activate_neftune(self) -> None:
        embeddings = self.model.get_input_embeddings()
        embeddings.neftune_noise_alpha = self.neftune_noise_alpha
        self._neftune_handle = embeddings.register_forward_hook(neftune_post_forward_hook)

    def _deactivate_neftune(self) -> None:
        if self._neftune_handle is not None:
            self._neftune_handle.remove()
            self._neftune_handle = None
            del self.model.get_input_embeddings().neftune_noise_alpha

    # --- evaluation --------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, eval_dataset=None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        """Mean loss per label token over the eval set, and its exponential, the perplexity."""
        loader = self.get_eval_dataloader(eval_dataset)
        was_training = self.model.training
        self.model.eval()
        start, total, count, examples = time.perf_counter(), torch.zeros((), dtype=torch.float64), 0, 0
        for batch in loader:
            examples += batch["input_ids"].shape[0]
            batch = self._prepare_inputs(batch)
            items = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum()) if "labels" in batch else None
            with self.autocast_smart_context_manager():
                loss = self.compute_loss(self.model, batch, num_items_in_batch=1 if items is not None else None)
            total += loss.double().cpu() if items is not None else loss.double().cpu() * batch["input_ids"].shape[0]
            count += items if items is not None else batch["input_ids"].shape[0]
        self.model.train(was_training)
        runtime = time.perf_counter() - start
        mean = float(total / max(count, 1))
        metrics = {f"{metric_key_prefix}_loss": mean,
                   f"{metric_key_prefix}_perplexity": math.exp(mean) if mean < 700 else float("inf"),
                   f"{metric_key_prefix}_runtime": round(runtime, 4),
                   f"{metric_key_prefix}_samples_per_second": round(examples / runtime, 3),
                   f"{metric_key_prefix}_steps_per_second": round(len(loader) / runtime, 3)}
        self.log(metrics)
        self._event("on_evaluate", metrics=metrics)
        return metrics

    # --- logging and saving -----------------------------------------------------------------------
    def log(self, logs: dict[str, float]) -> None:
        if self.state.epoch is not None:
            logs["epoch"] = self.state.epoch
        record = {**logs, "step": self.state.global_step}
        self.state.log_history.append(record)
        if self._progress is not None:
            self._progress.write(record)
        else:
            logger.info("%s", record)
        self._event("on_log", logs=logs)

    def add_callback(self, callback: TrainerCallback | type[TrainerCallback]) -> None:
        self.callback_handler.add_callback(callback)

    def _event(self, event: str, **kwargs: Any) -> None:
        self.control = self.callback_handler.call_event(event, self.args, self.state, self.control,
                                                        model=self.model, tokenizer=self.tokenizer, **kwargs)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the model (safetensors), its tokenizer and the training arguments to `output_dir`. Under
        torch.distributed every rank calls it and rank 0 writes the whole model (FSDP shards gathered)."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if self._dist is not None:
            dist_ckpt.save_model(self, output_dir)
        else:
            self._write_model(output_dir)

    def _write_model(self, output_dir: str | os.PathLike) -> None:
        self.model.save_pretrained(output_dir, safe_serialization=self.args.save_safetensors)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(output_dir)
        Path(output_dir, ckpt.TRAINING_ARGS_NAME).write_text(self.args.to_json_string(), encoding="utf-8")

    def save_state(self) -> None:
        self.state.save_to_json(Path(self.args.output_dir) / "trainer_state.json")

    def _save_checkpoint(self) -> Path:
        if self._dist is not None:
            return self._save_distributed_checkpoint()

        def payload(folder: Path) -> None:
            self.save_model(str(folder), _internal_call=True)
            if not self.args.save_only_model:
                torch.save(optimizer_state_for_saving(self.optimizer), folder / ckpt.OPTIMIZER_NAME)
                torch.save(self.lr_scheduler.state_dict(), folder / ckpt.SCHEDULER_NAME)
                torch.save(ckpt.capture_rng_state(), folder / ckpt.RNG_STATE_NAME)

        folder_name = f"checkpoint-{self.state.global_step}"
        self._update_best(Path(self.args.output_dir) / folder_name)
        path = ckpt.write_checkpoint(self.args.output_dir, self.state.global_step, payload,
                                     lambda folder: self.state.save_to_json(ckpt.state_path(folder)))
        ckpt.rotate_checkpoints(self.args.output_dir, self.args.save_total_limit, self.state.best_model_checkpoint)
        self._event("on_save")
        return path

    def _update_best(self, checkpoint_folder: Path) -> None:
        name = self.args.metric_for_best_model
        metrics = self._last_eval_metrics
        if name is None or metrics is None:
            return
        key = name if name.startswith("eval_") else f"eval_{name}"
        if key not in metrics:
            raise ConfigError(f"TrainingArguments.metric_for_best_model={name!r}: evaluation returned no {key!r} "
                              f"(it returned {sorted(metrics)})")
        value, best = metrics[key], self.state.best_metric
        better = best is None or (value > best if self.args.greater_is_better else value < best)
        if better:
            self.state.best_metric = value
            self.state.best_model_checkpoint = str(checkpoint_folder)

    def _load_model_weights(self, folder: str | os.PathLike) -> None:
        from .loading.checkpoint import find_weight_files, iter_tensors
        if self._load_weights_distributed(folder):
            return
        state = {key: tensor for key, tensor in iter_tensors(find_weight_files(str(folder)))}
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        tied = set(self.model._tied_weights_keys) if self.model.config.tie_word_embeddings else set()
        missing = [k for k in missing if k not in tied]
        if missing or unexpected:
            raise CheckpointError(f"checkpoint {str(folder)!r} does not match the model: missing {missing}, "
                                  f"unexpected {unexpected}")

def _token_count(batch: dict[str, Any]) -> int:
    """Real (non-padding) tokens of a CPU batch; counted before the batch moves to the device."""
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())


__all__ = ["Trainer", "TrainingArguments", "IntervalStrategy"]
