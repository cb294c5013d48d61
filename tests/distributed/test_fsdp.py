"""The Trainer under FSDP (torch's fully_shard) on a real 2-rank gloo group against one process with the
same global batch: full_shard and shard_grad_op with activation checkpointing; a sharded checkpoint, its
consolidation and save_model's normal folder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from formers import AutoModelForCausalLM
from formers.distributed.training_checkpoint import MODEL_DIR, OPTIMIZER_DIR, consolidate_checkpoint
from formers.errors import CheckpointError, ConfigError
from formers.trainer_utils import get_last_checkpoint

from . import launch
from .test_ddp import ONE_PROCESS, PER_RANK, WORKER
from .train_cases import build_trainer

FULL = {**PER_RANK, "fsdp": "full_shard auto_wrap", "save_strategy": "steps", "save_steps": 4}
GRAD_OP = {**PER_RANK, "fsdp": "shard_grad_op auto_wrap", "fsdp_config": {"activation_checkpointing": True}}


def _close(a, b, what):
    torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), rtol=0, atol=1e-5, msg=what)


def test_fsdp_matches_one_process_and_saves_normal_folders(tmp_path):
    (tmp_path / "run").mkdir()
    runs = [{"args": FULL, "out_dir": str(tmp_path / "full"), "save_model": str(tmp_path / "final")}]
    ranks = launch.run({"kind": "train", "runs": runs}, tmp_path / "run", worker=WORKER, timeout=240)
    single = build_trainer({**ONE_PROCESS, "save_strategy": "steps", "save_steps": 4}, str(tmp_path / "single"))
    single.train()
    _same_training(ranks, single)
    # every rank holds its dim-0 shard of each weight; together they are the one-process weights
    for key, value in single.model.state_dict().items():
        joined = torch.cat([ranks[0][0]["local_state"][key], ranks[1][0]["local_state"][key]])
        _close(joined[: value.shape[0]], value, key)
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "final")  # save_model: a normal folder
    assert (tmp_path / "final" / "model.safetensors").is_file()
    for key, value in saved.state_dict().items():
        _close(value, single.model.state_dict()[key], key)

    checkpoint = Path(get_last_checkpoint(tmp_path / "full"))
    assert checkpoint.name == "checkpoint-8"
    four = tmp_path / "full" / "checkpoint-4"
    assert (four / MODEL_DIR).is_dir() and (four / OPTIMIZER_DIR).is_dir()
    assert {p.name for p in four.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert json.loads((four / "distributed.json").read_text())["world_size"] == 2
    consolidate_checkpoint(four, tmp_path / "consolidated")
    ours = AutoModelForCausalLM.from_pretrained(tmp_path / "consolidated")
    reference = AutoModelForCausalLM.from_pretrained(tmp_path / "single" / "checkpoint-4")
    for key, value in reference.state_dict().items():
        _close(ours.state_dict()[key], value, key)
    with pytest.raises(CheckpointError, match="not a sharded checkpoint"):
        consolidate_checkpoint(tmp_path / "single" / "checkpoint-4", tmp_path / "never")


@pytest.mark.slow
def test_fsdp_shard_grad_op_with_activation_checkpointing_matches_one_process(tmp_path):
    (tmp_path / "run").mkdir()
    runs = [{"args": GRAD_OP, "out_dir": str(tmp_path / "grad_op")}]
    ranks = launch.run({"kind": "train", "runs": runs}, tmp_path / "run", worker=WORKER, timeout=240)
    single = build_trainer(ONE_PROCESS, str(tmp_path / "single"))
    single.train()
    _same_training(ranks, single)


def _same_training(ranks: list[list[dict]], single) -> None:
    for rank in ranks:
        for run in rank:
            _close(run["losses"], single.step_losses, "step losses")
            _close(run["grad_norms"], single.grad_norms, "gradient norms")


def test_fsdp_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match='"offload" needs "full_shard" or "shard_grad_op"'):
        build_trainer({"fsdp": "offload"}, str(tmp_path))
    with pytest.raises(ConfigError, match="'full_shard' and 'shard_grad_op' exclude each other"):
        build_trainer({"fsdp": "full_shard shard_grad_op"}, str(tmp_path))
    with pytest.raises(ConfigError, match="hybrid_shard.*not supported"):
        build_trainer({"fsdp": "hybrid_shard"}, str(tmp_path))
    with pytest.raises(ConfigError, match=r"fsdp_config: keys \['xla'\] are not supported"):
        build_trainer({"fsdp": "full_shard", "fsdp_config": {"xla": True}}, str(tmp_path))
