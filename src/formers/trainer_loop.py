"""The Trainer's outer loop: plan the steps, resume, iterate epochs and accumulation windows, and
log / evaluate / save on the configured intervals."""
from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import trainer_checkpoint as ckpt
from .errors import ConfigError
from .trainer_callback import TrainerControl
from .trainer_log import TrainingProgress
from .trainer_state import TrainerState
from .trainer_utils import TrainOutput
from .training_args import IntervalStrategy

logger = logging.getLogger("formers.trainer")


@dataclass
class _Plan:
    max_steps: int
    num_epochs: int
    steps_per_epoch: int
    batches_per_epoch: int


def _interval(value: float | None, max_steps: int) -> int:
    """transformers' rule: a value in (0, 1) is a fraction of the total steps."""
    if value is None:
        return 0
    return math.ceil(max_steps * value) if 0 < value < 1 else int(value)


def plan_steps(trainer) -> _Plan:
    args, dataset = trainer.args, trainer.train_dataset
    if dataset is None:
        raise ConfigError("Trainer.train: needs a train_dataset")
    if len(dataset) == 0:
        raise ConfigError("Trainer.train: train_dataset is empty")
    size, batch = len(dataset), args.train_batch_size * trainer._world_size
    batches = trainer._train_batch_count(size)
    if batches == 0:
        raise ConfigError(f"Trainer.train: dataloader_drop_last with {size} examples < batch size {batch} "
                          "leaves no batch")
    steps_per_epoch = math.ceil(batches / args.gradient_accumulation_steps)
    if args.max_steps > 0:
        return _Plan(args.max_steps, math.ceil(args.max_steps / steps_per_epoch), steps_per_epoch, batches)
    return _Plan(math.ceil(args.num_train_epochs * steps_per_epoch), math.ceil(args.num_train_epochs),
                 steps_per_epoch, batches)


def _resume(trainer, folder: str) -> None:
    """Model weights, optimizer, schedule, RNG states and progress of the checkpoint in `folder`."""
    saved = TrainerState.load_from_json(ckpt.state_path(folder))
    state = trainer.state
    for name in ("global_step", "epoch", "log_history", "total_flos", "num_input_tokens_seen", "best_metric",
                 "best_model_checkpoint"):
        setattr(state, name, getattr(saved, name))
    trainer._load_model_weights(folder)
    trainer._load_optimizer_state(folder)
    trainer.lr_scheduler.load_state_dict(ckpt.load_file(folder, ckpt.SCHEDULER_NAME))
    rng = trainer._load_rng_state(folder)
    if rng is not None:
        ckpt.restore_rng_state(rng)
    logger.info("resumed from %s at step %d", folder, state.global_step)


class _Loop:
    """Mutable bookkeeping of one train() call."""

    def __init__(self, trainer, plan: _Plan):
        self.trainer, self.plan, self.args = trainer, plan, trainer.args
        self.tr_loss = torch.zeros((), device=trainer.args.device)
        self.total_loss = 0.0
        self.last_logged = trainer.state.global_step
        self.first_step = trainer.state.global_step
        self.grad_norm: torch.Tensor | None = None

    def record_step(self, loss: torch.Tensor, grad_norm) -> None:
        if self.args.logging_nan_inf_filter:  # replace a non-finite loss by the running mean, without a sync
            steps = self.trainer.state.global_step - self.last_logged
            loss = torch.where(torch.isfinite(loss), loss, self.tr_loss / max(steps, 1))
        self.tr_loss += loss
        self.grad_norm = grad_norm

    def log_loss(self) -> None:
        trainer, state = self.trainer, self.trainer.state
        steps = state.global_step - self.last_logged
        if steps <= 0:
            return
        value = float(trainer._sum_over_ranks(self.tr_loss))
        self.total_loss += value
        self.tr_loss.zero_()
        self.last_logged = state.global_step
        logs = {"loss": round(value / steps, 4)}
        if self.grad_norm is not None:
            logs["grad_norm"] = float(self.grad_norm)
        logs["learning_rate"] = trainer._get_learning_rate()
        rate = trainer._progress.tokens_per_second(state.num_input_tokens_seen)
        trainer.log(logs)
        trainer._progress.show(logs["loss"], logs["learning_rate"], rate)

    def on_step_end(self, epoch_done: bool) -> None:
        args, state, trainer = self.args, self.trainer.state, self.trainer
        trainer._event("on_step_end")
        step = state.global_step
        last = step >= self.plan.max_steps  # a callback's stop saves nothing extra, as in transformers
        if (args.logging_strategy is IntervalStrategy.STEPS and step % state.logging_steps == 0) or \
                (args.logging_first_step and step == 1):
            self.log_loss()
        if args.eval_strategy is IntervalStrategy.STEPS and step % state.eval_steps == 0:
            self.evaluate()
        periodic = args.save_strategy is IntervalStrategy.STEPS and step % state.save_steps == 0
        # the epoch's end (which also follows the last step) saves under the epoch strategy
        at_epoch_save = (epoch_done or last) and args.save_strategy is IntervalStrategy.EPOCH
        if args.save_strategy is not IntervalStrategy.NO and (periodic or (last and not at_epoch_save)):
            trainer._save_checkpoint()  # the last step always saves, as transformers

    def on_epoch_end(self) -> None:
        args, trainer = self.args, self.trainer
        trainer._event("on_epoch_end")
        if args.logging_strategy is IntervalStrategy.EPOCH:
            self.log_loss()
        if args.eval_strategy is IntervalStrategy.EPOCH:
            self.evaluate()
        if args.save_strategy is IntervalStrategy.EPOCH:
            trainer._save_checkpoint()

    def evaluate(self) -> None:
        """Evaluate; a reduce_lr_on_plateau schedule then steps on the metric (eval_loss unless named)."""
        trainer = self.trainer
        metrics = trainer._last_eval_metrics = trainer.evaluate()
        if isinstance(trainer.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            name = self.args.metric_for_best_model or "loss"
            trainer.lr_scheduler.step(metrics[name if name.startswith("eval_") else f"eval_{name}"])


def run_training(trainer, resume_from: str | None) -> TrainOutput:
    args, plan = trainer.args, plan_steps(trainer)
    trainer.state = TrainerState(
        max_steps=plan.max_steps, num_train_epochs=plan.num_epochs, train_batch_size=args.train_batch_size,
        logging_steps=_interval(args.logging_steps, plan.max_steps), eval_steps=_interval(args.eval_steps, plan.max_steps),
        save_steps=_interval(args.save_steps, plan.max_steps),
        is_world_process_zero=trainer.is_world_process_zero(), is_local_process_zero=trainer.is_local_process_zero())
    trainer.create_optimizer_and_scheduler(plan.max_steps)
    if resume_from is not None:
        _resume(trainer, resume_from)
    state = trainer.state
    zero = trainer.is_world_process_zero()  # only rank 0 logs
    trainer._progress = TrainingProgress(args.output_dir if zero else None, plan.max_steps, state.global_step,
                                         state.num_input_tokens_seen, bool(args.disable_tqdm) or not zero)
    trainer._progress.write({"event": "train_begin", "num_examples": len(trainer.train_dataset),
                             "max_steps": plan.max_steps, "num_train_epochs": plan.num_epochs,
                             "gradient_accumulation_steps": args.gradient_accumulation_steps,
                             "per_device_train_batch_size": args.train_batch_size,
                             "neftune_noise_alpha": trainer.neftune_noise_alpha,
                             "resume_from_checkpoint": resume_from, "global_step": state.global_step})
    loop, start = _Loop(trainer, plan), time.perf_counter()
    trainer.control = TrainerControl()
    trainer._event("on_train_begin")
    try:
        _run_epochs(trainer, plan, loop)
        loop.total_loss += float(trainer._sum_over_ranks(loop.tr_loss))  # steps since the last log
    finally:
        trainer._progress.close()
    if args.load_best_model_at_end and state.best_model_checkpoint is not None:
        trainer._load_model_weights(state.best_model_checkpoint)
    runtime = time.perf_counter() - start
    steps_done = max(state.global_step - loop.first_step, 1)
    metrics = {"train_runtime": round(runtime, 4),
               "train_samples_per_second": round(plan.max_steps * args.train_batch_size
                                                 * args.gradient_accumulation_steps / runtime, 3),
               "train_steps_per_second": round(plan.max_steps / runtime, 3),
               "total_flos": state.total_flos, "train_loss": loop.total_loss / steps_done}
    if trainer.neftune_noise_alpha is not None:
        metrics["neftune_noise_alpha"] = trainer.neftune_noise_alpha
    trainer.log(dict(metrics))
    trainer._event("on_train_end")
    trainer._progress = None
    return TrainOutput(state.global_step, metrics["train_loss"], metrics)


def _run_epochs(trainer, plan: _Plan, loop: _Loop) -> None:
    args, state = trainer.args, trainer.state
    ga = args.gradient_accumulation_steps
    first_epoch, skip = divmod(state.global_step, plan.steps_per_epoch)
    if args.ignore_data_skip:
        skip = 0
    for epoch in range(first_epoch, plan.num_epochs):
        trainer._event("on_epoch_begin")
        batches = trainer._train_batches(epoch)
        window_index = skip if epoch == first_epoch else 0
        loader = trainer._loader(trainer.train_dataset, batches[window_index * ga:], seed=args.seed + epoch)
        batches_iter = iter(loader)
        for window_index in range(window_index, plan.steps_per_epoch):
            trainer._event("on_step_begin")
            window = list(itertools.islice(batches_iter, ga))
            loss, grad_norm = trainer._optimizer_step(window)
            loop.record_step(loss, grad_norm)
            state.global_step += 1
            state.epoch = epoch + (window_index + 1) / plan.steps_per_epoch
            trainer._progress.step()
            epoch_done = window_index + 1 == plan.steps_per_epoch
            loop.on_step_end(epoch_done)
            if state.global_step >= plan.max_steps or trainer.control.should_training_stop:
                break
        loop.on_epoch_end()  # also when training stops mid-epoch, as transformers
        if state.global_step >= plan.max_steps or trainer.control.should_training_stop:
            return
