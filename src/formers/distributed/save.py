"""save_pretrained of a tensor-parallel model: every rank's slices gathered back into whole tensors, then
rank 0 writes an ordinary checkpoint (the family's keys and layout), loadable by one process or by any
world size. Every rank must call save_pretrained (it is a collective); only rank 0 writes.
"""
from __future__ import annotations

import copy
import types

import torch
import torch.distributed as dist
from torch import nn

from .group import RankInfo, all_gather_last
from .plan import Slice, shard_model


def _place(full: torch.Tensor, piece: torch.Tensor, part: Slice) -> None:
    if part.zeros:
        return
    if part.cols is not None:
        full[:, part.cols[0]:part.cols[1]] = piece
        return
    if part.rows is None:  # rank 0's row-parallel bias: the whole tensor
        full.copy_(piece)
        return
    start = 0
    for a, b in part.rows:
        full[a:b] = piece[start:start + b - a]
        start += b - a


def consolidated_state_dict(model: nn.Module, full_model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict (on the CPU), from every rank's shards. `full_model` is the model built
    on meta at full size (it gives each parameter's full shape). Collective: every rank calls it."""
    info: RankInfo = model._tp_rank_info
    plans = []
    for rank in range(info.world_size):  # every rank's slices, recomputed on meta copies (no weights)
        meta = copy.deepcopy(full_model)
        plans.append(shard_model(meta, "auto", RankInfo(rank, info.world_size, info.backend)))
    full_shapes = {name: t.shape for name, t in full_model.state_dict(keep_vars=True).items()}
    state = {}
    for name, local in model.state_dict().items():
        if name not in plans[0]:
            state[name] = local.detach().cpu()
            continue
        longest = max(_rows(plans[r][name], full_shapes[name], local) for r in range(info.world_size))
        flat = local.detach().reshape(local.shape[0], -1)  # [rows here, row size] (row size equal on all ranks)
        padded = torch.zeros(longest, flat.shape[1], dtype=local.dtype, device=local.device)
        padded[: flat.shape[0]] = flat
        gathered = all_gather_last(padded.reshape(-1), f"saving {name}")  # [W * longest * row size]
        pieces = gathered.view(info.world_size, longest, flat.shape[1]).unbind(0)
        full = torch.zeros(full_shapes[name], dtype=local.dtype)
        for rank, piece in enumerate(pieces):
            part = plans[rank][name]
            rows = _rows(part, full_shapes[name], local)
            _place(full, piece[:rows].reshape(rows, *local.shape[1:]).cpu() if part.cols is None else
                   piece[:rows].cpu(), part)
        state[name] = full
    return state


def _rows(part: Slice, full_shape, local: torch.Tensor) -> int:
    """Rows a rank holds for `part` (the row size is the same on every rank; vocabulary shards may be short)."""
    if part.rows is None:  # a column slice, a whole tensor or a zeroed bias: all rows
        return full_shape[0]
    return sum(b - a for a, b in part.rows)


def install_consolidating_save(model: nn.Module, full_model: nn.Module) -> None:
    """Give the tensor-parallel `model` a save_pretrained that writes the whole model from rank 0."""
    plain_save = type(model).save_pretrained

    def save_pretrained(self, save_directory, is_main_process: bool = True, state_dict=None, **kwargs) -> None:
        full = consolidated_state_dict(self, full_model) if state_dict is None else state_dict
        if dist.get_rank() == 0 and is_main_process:
            self.state_dict = lambda *args, **kw: full  # what _state_dict_for_saving reads, for this call
            try:
                plain_save(self, save_directory, **kwargs)
            finally:
                del self.state_dict
        dist.barrier()

    model.save_pretrained = types.MethodType(save_pretrained, model)
