"""The Trainer under DDP on a real 2-rank gloo group (127.0.0.1) against one process with the same global
batch; a killed rank; ranks that disagree; a distributed setting without a process group."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from formers import AutoModelForCausalLM
from formers.errors import DistributedError

from . import launch
from .train_cases import build_trainer

WORKER = Path(__file__).resolve().parent / "train_worker.py"
PER_RANK = dict(per_device_train_batch_size=2, gradient_accumulation_steps=2)
ONE_PROCESS = dict(per_device_train_batch_size=4, gradient_accumulation_steps=2)  # the same global batch
GALORE = dict(optim="galore_adamw", optim_target_modules=["self_attn", "mlp"], optim_args="rank=4, update_proj_gap=2")


def reference(tmp_path: Path, **extra):
    trainer = build_trainer({**ONE_PROCESS, **extra}, str(tmp_path / "single"))
    trainer.train()
    return trainer


@pytest.mark.slow  # the default run checks DDP's losses and gradient norms in test_resume.py
def test_ddp_and_galore_under_ddp_match_one_process_and_rank_zero_writes(tmp_path):
    (tmp_path / "run").mkdir()
    runs = [{"args": PER_RANK, "out_dir": str(tmp_path / "ddp"), "save_model": str(tmp_path / "final")},
            {"args": {**PER_RANK, **GALORE}, "out_dir": str(tmp_path / "galore")}]
    both = launch.run({"kind": "train", "runs": runs}, tmp_path / "run", worker=WORKER, timeout=240)
    ranks = [rank[0] for rank in both]
    single = reference(tmp_path)
    galore = build_trainer({**ONE_PROCESS, **GALORE}, str(tmp_path / "galore_single"))
    galore.train()
    for rank in both:  # GaLore projects the all-reduced gradients: the same on every rank and as one process
        torch.testing.assert_close(torch.tensor(rank[1]["losses"]), torch.tensor(galore.step_losses), rtol=0, atol=1e-5)
        torch.testing.assert_close(torch.tensor(rank[1]["grad_norms"]), torch.tensor(galore.grad_norms), rtol=0,
                                   atol=1e-5)
    assert len(single.step_losses) == 8
    for result in ranks:  # every rank reports the global loss
        torch.testing.assert_close(torch.tensor(result["losses"]), torch.tensor(single.step_losses),
                                   rtol=0, atol=1e-5)
        torch.testing.assert_close(torch.tensor(result["grad_norms"]), torch.tensor(single.grad_norms),
                                   rtol=0, atol=1e-5)
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(ranks[0]["local_state"][key], value, rtol=0, atol=1e-5)
        torch.testing.assert_close(ranks[1]["local_state"][key], ranks[0]["local_state"][key], rtol=0, atol=0)
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    for key, value in saved.state_dict().items():
        torch.testing.assert_close(value, single.model.state_dict()[key], rtol=0, atol=1e-5)
    logged = [json.loads(line) for line in (tmp_path / "ddp" / "trainer_log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in logged if "loss" in r]
    assert steps == list(range(1, 9))  # one writer: no step twice
    tokens = [r for r in ranks[0]["log_history"] if "train_runtime" in r]
    assert tokens and single.state.num_input_tokens_seen > 0


def test_killed_rank_makes_the_other_fail_fast(tmp_path):
    (tmp_path / "run").mkdir()
    timeout = 10
    job = {"kind": "kill", "args": {**PER_RANK, "max_steps": 100_000, "ddp_timeout": timeout, "logging_steps": 1000},
           "out_dir": str(tmp_path / "ddp"), "timeout": timeout}
    returncode, err, elapsed = launch.kill_one_rank(job, tmp_path / "run", timeout, worker=WORKER)
    assert returncode != 0
    assert "DistributedError" in err and "a peer rank has died" in err and "rank 0 of 2" in err, err[-2000:]
    assert elapsed < timeout + 30


def test_ranks_with_different_arguments_are_refused(tmp_path):
    (tmp_path / "run").mkdir()
    ranks = launch.run({"kind": "mismatch", "args": PER_RANK, "out_dir": str(tmp_path / "ddp")}, tmp_path / "run",
                       worker=WORKER)
    for result in ranks:
        kind, message = result["error"]
        assert kind == "DistributedError" and "TrainingArguments" in message and "ranks [1] differ" in message


def test_fsdp_without_a_process_group_is_refused(tmp_path, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(DistributedError, match=r"fsdp='full_shard auto_wrap' needs a torch.distributed process group"):
        build_trainer({"fsdp": "full_shard auto_wrap"}, str(tmp_path))
