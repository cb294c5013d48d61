"""One rank of a distributed Trainer test (started by launch.py with torchrun's environment variables).

argv[1] is a JSON job: {"kind": "train" | "kill" | "mismatch", "out": folder, "timeout": seconds, and
"runs": [{"args": TrainingArguments overrides, "out_dir", "resume": checkpoint, "save_model": folder}]
for "train", "args" and "out_dir" for the others}.
The Trainer initialises the process group itself (from the environment). Results go to <out>/rank<R>.pt.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from tests.distributed.train_cases import build_trainer  # noqa: E402


def train(job: dict, rank: int) -> list[dict]:
    """Each of job["runs"] in turn ({"args", "out_dir", "resume", "save_model"}), in the same process group."""
    results = []
    for run in job["runs"]:
        trainer = build_trainer(run["args"], run["out_dir"])
        trainer.train(resume_from_checkpoint=run.get("resume"))
        if run.get("save_model"):
            trainer.save_model(run["save_model"])
        local = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        local = {k: (v.to_local() if hasattr(v, "to_local") else v) for k, v in local.items()}
        results.append({"losses": trainer.step_losses, "grad_norms": trainer.grad_norms,
                        "log_history": trainer.state.log_history, "local_state": local})
    return results


def kill(job: dict, rank: int) -> dict:
    trainer = build_trainer(job["args"], job["out_dir"])

    class Ready:  # a callback: after the first step, tell the parent this rank is training
        def __getattr__(self, name):
            return lambda *a, **k: None

        def on_step_end(self, args, state, control, **kwargs):
            Path(job["out"], f"ready{rank}").touch()
            return control

    trainer.add_callback(Ready())
    trainer.train()
    return {"finished": True}


def mismatch(job: dict, rank: int) -> dict:
    args = {**job["args"], "learning_rate": 1e-3 * (rank + 1)}  # ranks disagree
    try:
        build_trainer(args, job["out_dir"])
        return {"error": None}
    except Exception as exc:  # recorded for the test to check type and message
        return {"error": (type(exc).__name__, str(exc))}


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    torch.set_num_threads(1)
    import os
    rank = int(os.environ["RANK"])
    result = {"train": train, "kill": kill, "mismatch": mismatch}[job["kind"]](job, rank)
    torch.save(result, Path(job["out"], f"rank{rank}.pt"))
    import torch.distributed as dist
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
