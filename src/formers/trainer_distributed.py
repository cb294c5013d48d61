"""What the Trainer does differently under torch.distributed (see formers.distributed.training): the
rank's slice of each global batch, DDP's gradient sync over accumulation windows, losses summed over
ranks, and loading a checkpoint of any layout onto this one. With one process every method reduces to
the one-process behaviour."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
from torch import nn

from . import trainer_checkpoint as ckpt
from .distributed import training as dist_train
from .distributed import training_checkpoint as dist_ckpt
from .trainer_galore import restore_projectors


class DistributedTrainerMixin:
    """Mixed into Trainer; uses its `args`, `model`, `model_wrapped`, `optimizer`, `train_dataset`, `_dist`."""

    @property
    def _world_size(self) -> int:
        return self._dist.world_size if self._dist is not None else 1

    def _train_batches(self, epoch: int) -> list[list[int]]:
        """This process's index batches of one epoch: the one-process batches of the global batch size
        (per device x world size), each cut into one slice per rank; a last batch with fewer examples than
        ranks is dropped (every rank needs one)."""
        batches = self._batch_order(self.train_dataset, self.args.train_batch_size * self._world_size, epoch,
                                    shuffle=True)
        if self._dist is None:
            return batches
        return [dist_train.rank_slice(b, self._dist) for b in batches if len(b) >= self._world_size]

    def _train_batch_count(self, size: int) -> int:
        """How many global batches an epoch of `size` examples has (see _train_batches)."""
        batch = self.args.train_batch_size * self._world_size
        full, rest = divmod(size, batch)
        keep_rest = rest > 0 and not self.args.dataloader_drop_last and rest >= self._world_size
        return full + int(keep_rest)

    def _gradient_sync(self, last: bool):
        """DDP all-reduces gradients on the window's last micro-batch only."""
        if last or not isinstance(self.model_wrapped, nn.parallel.DistributedDataParallel):
            return contextlib.nullcontext()
        return self.model_wrapped.no_sync()

    def is_world_process_zero(self) -> bool:
        return self._dist is None or self._dist.rank == 0

    def is_local_process_zero(self) -> bool:
        return self._dist is None or self.args.local_process_index == 0

    def _load_optimizer_state(self, folder: str | os.PathLike) -> None:
        """The optimizer's state from any checkpoint layout (sharded, one-process) onto this one."""
        if dist_ckpt.is_sharded(folder):
            dist_ckpt.load_sharded_optimizer(self.model, self.optimizer, folder)
            return
        state = ckpt.load_file(folder, ckpt.OPTIMIZER_NAME, map_location=self.args.device)
        if self._dist is not None and self._dist.fsdp:
            dist_ckpt.load_full_into_fsdp(self.model, self.optimizer, {}, state)
        else:
            self.optimizer.load_state_dict(state)
            restore_projectors(self.optimizer)  # GaLore's, saved as their matrices

    def _sum_over_ranks(self, value: torch.Tensor) -> torch.Tensor:
        """A per-rank share (of a loss) summed over the ranks: the global value, the same on every rank."""
        with dist_train.collective_errors(self._dist, "summing the loss over ranks"):
            return dist_train.sum_over_ranks(value, self._dist, "summing the loss over ranks")

    def _load_rng_state(self, folder: str | os.PathLike) -> dict | None:
        return dist_ckpt.load_rng_state(folder, self._dist.rank if self._dist is not None else 0)

    def _save_distributed_checkpoint(self):
        """checkpoint-<step> written by every rank (collective); rank 0 rotates old ones."""
        self._update_best(Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}")
        with dist_train.collective_errors(self._dist, f"saving checkpoint-{self.state.global_step}"):
            path = dist_ckpt.save_checkpoint(self)
        if self.args.should_save:
            ckpt.rotate_checkpoints(self.args.output_dir, self.args.save_total_limit, self.state.best_model_checkpoint)
        dist_train.barrier(self._dist, "rotating checkpoints")
        self._event("on_save")
        return path

    def _load_weights_distributed(self, folder: str | os.PathLike) -> bool:
        """Load a sharded checkpoint (any world size), or a whole one into FSDP shards; False: neither applies."""
        if dist_ckpt.is_sharded(folder):
            dist_ckpt.load_sharded_model(self.model, folder)
            return True
        if self._dist is None or not self._dist.fsdp:
            return False
        from .loading.checkpoint import find_weight_files, iter_tensors
        state = {key: tensor for key, tensor in iter_tensors(find_weight_files(str(folder)))}
        dist_ckpt.load_full_into_fsdp(self.model, None, state, None)
        return True
