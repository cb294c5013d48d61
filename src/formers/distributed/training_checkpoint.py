"""Checkpoints of a distributed Trainer, and their way back to a normal `save_pretrained` folder.

checkpoint-<step>/ under FSDP (torch.distributed.checkpoint, every rank writes its shards):
  pytorch_model_fsdp_0/  the model's sharded state dict      optimizer_0/  the optimizer's, keyed by name
  config.json, distributed.json (world size and fsdp options that wrote it), scheduler.pt,
  rng_state_<rank>.pth (one per rank), training_args.json, trainer_state.json (written last)
Under DDP every rank holds the same weights, so rank 0 writes the one-process files (model.safetensors,
optimizer.pt) and each rank its rng_state_<rank>.pth. Both resume on any world size, DDP, FSDP or one
process: torch.distributed.checkpoint reshards on load, and a one-process checkpoint is loaded whole.
The folder is staged under tmp-checkpoint-<step> and renamed into place by rank 0 once every rank is done.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ..errors import CheckpointError
from ..loading.swap import fsync_folder, recover_folder, replace_folder
from .. import trainer_checkpoint as ckpt
from ..trainer_galore import optimizer_state_for_saving
from ..trainer_utils import PREFIX_CHECKPOINT_DIR
from .training import barrier

MODEL_DIR = "pytorch_model_fsdp_0"
OPTIMIZER_DIR = "optimizer_0"
LAYOUT_NAME = "distributed.json"


def rng_state_name(rank: int) -> str:
    return f"rng_state_{rank}.pth"


def is_sharded(folder: str | os.PathLike) -> bool:
    return (Path(folder) / MODEL_DIR).is_dir()


def _state_dict_api():
    from torch.distributed.checkpoint import state_dict as api
    return api


# --- saving ------------------------------------------------------------------------------------------
def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict on the CPU, gathered from FSDP shards (collective; rank 0 gets it)."""
    api = _state_dict_api()
    return api.get_model_state_dict(model, options=api.StateDictOptions(full_state_dict=True, cpu_offload=True))


def write_model_folder(trainer, output_dir: str | os.PathLike, state: dict[str, torch.Tensor] | None) -> None:
    """Trainer.save_model's files from this process, with `state` (whole tensors) in place of the
    model's own state dict when given (the model's parameters are FSDP shards)."""
    model = trainer.model
    if state is None:
        trainer._write_model(output_dir)
        return
    model.state_dict = lambda *args, **kwargs: state  # what save_pretrained reads, for this call only
    try:
        trainer._write_model(output_dir)
    finally:
        del model.state_dict


def save_model(trainer, output_dir: str | os.PathLike) -> None:
    """Trainer.save_model under torch.distributed: a normal folder (model.safetensors + config), written by
    rank 0 from the gathered weights. Every rank must call it."""
    group = trainer._dist
    state = full_model_state(trainer.model) if group.fsdp else None
    if trainer.args.should_save:
        write_model_folder(trainer, output_dir, state)
    barrier(group, f"save_model({str(output_dir)!r})")


def save_checkpoint(trainer) -> Path:
    """checkpoint-<global_step> of every rank's state (collective)."""
    args, group, step = trainer.args, trainer._dist, trainer.state.global_step
    output_dir = Path(args.output_dir)
    final, tmp = output_dir / f"{PREFIX_CHECKPOINT_DIR}-{step}", output_dir / f"{ckpt.TMP_PREFIX}-{step}"
    if args.should_save:
        output_dir.mkdir(parents=True, exist_ok=True)
        for stale in output_dir.glob(f"{ckpt.TMP_PREFIX}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        recover_folder(final)
        tmp.mkdir()
    barrier(group, f"creating {tmp}")
    if group.fsdp:
        _save_sharded(trainer, tmp)
    elif args.should_save:
        trainer._write_model(tmp)
        if not args.save_only_model:
            torch.save(optimizer_state_for_saving(trainer.optimizer), tmp / ckpt.OPTIMIZER_NAME)
    if not args.save_only_model:
        if args.should_save:
            torch.save(trainer.lr_scheduler.state_dict(), tmp / ckpt.SCHEDULER_NAME)
        torch.save(ckpt.capture_rng_state(), tmp / rng_state_name(group.rank))
    barrier(group, f"writing {tmp}")
    if args.should_save:
        trainer.state.save_to_json(ckpt.state_path(tmp))
        fsync_folder(tmp, files=True)
        previous = replace_folder(tmp, final)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
    barrier(group, f"renaming {tmp}")
    return final


def _save_sharded(trainer, folder: Path) -> None:
    import torch.distributed.checkpoint as dcp

    api = _state_dict_api()
    if trainer.args.save_only_model:
        model_state = api.get_model_state_dict(trainer.model)
    else:
        model_state, optim_state = api.get_state_dict(trainer.model, trainer.optimizer)
        dcp.save(optim_state, checkpoint_id=folder / OPTIMIZER_DIR)
    dcp.save(model_state, checkpoint_id=folder / MODEL_DIR)
    if trainer.args.should_save:
        trainer.model.config.save_pretrained(folder)
        if trainer.tokenizer is not None:
            trainer.tokenizer.save_pretrained(folder)
        layout = {"world_size": trainer._dist.world_size, "fsdp": trainer.args.fsdp,
                  "model_class": type(trainer.model).__name__.removeprefix("FSDP")}
        (folder / LAYOUT_NAME).write_text(json.dumps(layout, indent=2) + "\n", encoding="utf-8")
        (folder / ckpt.TRAINING_ARGS_NAME).write_text(trainer.args.to_json_string(), encoding="utf-8")


# --- loading -----------------------------------------------------------------------------------------
def _layout(folder: Path) -> str:
    path = folder / LAYOUT_NAME
    if not path.is_file():
        return "an unknown layout"
    saved = json.loads(path.read_text(encoding="utf-8"))
    return f"{saved.get('model_class')} on {saved.get('world_size')} ranks with fsdp={' '.join(saved.get('fsdp', []))!r}"


def _dcp_load(state: dict, folder: Path, part: str) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        dcp.load(state, checkpoint_id=folder / part, no_dist=not dist.is_initialized())
    except (Exception, CheckpointException) as exc:  # noqa: BLE001 - CheckpointException is a BaseException
        lines = str(exc).strip().splitlines()
        first = lines[-1] if lines else type(exc).__name__  # DCP puts each rank's traceback first
        raise CheckpointError(f"checkpoint {str(folder)!r}: its {part} (saved by {_layout(folder)}) cannot be "
                              f"resharded onto this model and optimizer (another model, config or optimizer?): "
                              f"{first[:500]}") from exc


def load_sharded_model(model: nn.Module, folder: str | os.PathLike) -> None:
    """Load a sharded checkpoint's weights into `model` (plain, DDP-wrapped or FSDP), any world size."""
    api = _state_dict_api()
    state = api.get_model_state_dict(model)
    _dcp_load(state, Path(folder), MODEL_DIR)
    api.set_model_state_dict(model, state)


def load_sharded_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer, folder: str | os.PathLike) -> None:
    api = _state_dict_api()
    state = api.get_optimizer_state_dict(model, optimizer)
    _dcp_load(state, Path(folder), OPTIMIZER_DIR)
    api.set_optimizer_state_dict(model, optimizer, state)


def load_full_into_fsdp(model: nn.Module, optimizer: torch.optim.Optimizer | None, weights: dict[str, torch.Tensor],
                        optimizer_state: dict | None) -> None:
    """A one-process (or DDP) checkpoint into an FSDP model: whole tensors, each rank keeps its shard. The
    optimizer state is keyed by parameter index there; it is re-keyed by parameter name for FSDP."""
    api = _state_dict_api()
    options = api.StateDictOptions(full_state_dict=True, strict=False)
    api.set_model_state_dict(model, weights, options=options)
    if optimizer is None or optimizer_state is None:
        return
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    by_name = {"state": {order[i]: s for i, s in optimizer_state["state"].items()},
               "param_groups": [{**g, "params": [order[i] for i in g["params"]]}
                                for g in optimizer_state["param_groups"]]}
    api.set_optimizer_state_dict(model, optimizer, by_name, options=options)


def load_rng_state(folder: str | os.PathLike, rank: int) -> dict | None:
    """This rank's generator states: its own file, else the one-process file (another world size)."""
    own = ckpt.load_file(folder, rng_state_name(rank), required=False)
    return own if own is not None else ckpt.load_file(folder, ckpt.RNG_STATE_NAME, required=False)


def consolidate_checkpoint(checkpoint_dir: str | os.PathLike, output_dir: str | os.PathLike) -> None:
    """Write a normal save_pretrained folder (model.safetensors + config.json) from a sharded checkpoint,
    in one process: `formers.distributed.consolidate_checkpoint("out/checkpoint-8", "out/final")`."""
    from ..models.auto import AutoConfig, AutoModelForCausalLM

    folder = Path(checkpoint_dir)
    if not is_sharded(folder):
        raise CheckpointError(f"consolidate_checkpoint: {str(folder)!r} has no {MODEL_DIR}/ (not a sharded "
                              "checkpoint; a one-process or DDP checkpoint is already a save_pretrained folder)")
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    load_sharded_model(model, folder)
    model.save_pretrained(output_dir)
