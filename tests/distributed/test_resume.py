"""Checkpoints of distributed training resume on the same and on another world size (2 ranks -> 1,
1 -> 2, FSDP and DDP) and reproduce the uninterrupted losses; a sharded checkpoint of another model is
refused with formers' error."""
from __future__ import annotations

import json

import pytest
import torch

from formers.errors import CheckpointError

from . import launch
from .test_ddp import ONE_PROCESS, PER_RANK, WORKER
from .train_cases import build_trainer

SAVE = {"save_strategy": "steps", "save_steps": 4}


def _close(a, b):
    torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), rtol=0, atol=1e-5)


def test_resume_across_world_sizes(tmp_path):
    single = build_trainer({**ONE_PROCESS, **SAVE}, str(tmp_path / "single"))
    single.train()
    fsdp = {**PER_RANK, **SAVE, "fsdp": "full_shard offload auto_wrap"}
    runs = [{"args": fsdp, "out_dir": str(tmp_path / "fsdp")},
            {"args": fsdp, "out_dir": str(tmp_path / "fsdp_again"), "resume": str(tmp_path / "fsdp" / "checkpoint-4")},
            {"args": fsdp, "out_dir": str(tmp_path / "from_one"), "resume": str(tmp_path / "single" / "checkpoint-4")},
            {"args": {**PER_RANK, **SAVE}, "out_dir": str(tmp_path / "ddp")}]
    (tmp_path / "run").mkdir()
    ranks = launch.run({"kind": "train", "runs": runs}, tmp_path / "run", worker=WORKER, timeout=300)
    uninterrupted = single.step_losses
    for rank in ranks:
        _close(rank[0]["grad_norms"], single.grad_norms)
        _close(rank[3]["grad_norms"], single.grad_norms)
        _close(rank[0]["losses"], uninterrupted)
        _close(rank[1]["losses"], uninterrupted[4:])  # FSDP 2 ranks -> 2 ranks
        _close(rank[2]["losses"], uninterrupted[4:])  # one process -> FSDP 2 ranks
        _close(rank[3]["losses"], uninterrupted)
    for source in ("fsdp", "ddp"):  # rank 0 alone wrote the log: each step once
        logged = [json.loads(line) for line in (tmp_path / source / "trainer_log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in logged if "loss" in r] == list(range(1, 9))
    for source in ("fsdp", "ddp"):  # 2 ranks -> one process
        resumed = build_trainer({**ONE_PROCESS, **SAVE}, str(tmp_path / f"{source}_to_one"))
        resumed.train(resume_from_checkpoint=str(tmp_path / source / "checkpoint-4"))
        _close(resumed.step_losses, uninterrupted[4:])
        assert resumed.state.global_step == 8
        for key, value in single.model.state_dict().items():
            _close(resumed.model.state_dict()[key], value)
    # a sharded checkpoint whose tensors do not fit the model (another config) names itself and its layout
    other = build_trainer({**ONE_PROCESS, **SAVE}, str(tmp_path / "other"), intermediate_size=64)
    with pytest.raises(CheckpointError, match=r"checkpoint-4.*saved by LlamaForCausalLM on 2 ranks with "
                                              r"fsdp='full_shard offload auto_wrap'.*cannot be resharded"):
        other.train(resume_from_checkpoint=str(tmp_path / "fsdp" / "checkpoint-4"))
