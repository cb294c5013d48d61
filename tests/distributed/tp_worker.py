"""One rank of a test process group (launched by launch.py with torchrun's environment variables).

argv[1] is a JSON job: {"kind": "parity" | "rss" | "kill", "out": folder, "timeout": seconds, ...}.
Results go to <out>/rank<R>.pt; errors are recorded, not raised, where the job expects them.
"""
from __future__ import annotations

import json
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from formers import AutoModelForCausalLM  # noqa: E402
from tests.distributed.tp_cases import IDS, MASK, run_cases  # noqa: E402


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # kB
    raise AssertionError(f"/proc/self/status has no {field}")


def peak_rss_bytes() -> int:
    """This process image's peak RSS. Not getrusage's ru_maxrss: Linux carries that across fork + exec,
    so a worker started from a large pytest process would report the parent's size."""
    return _status_bytes("VmHWM")


def current_rss_bytes() -> int:
    return _status_bytes("VmRSS")


def parity(job: dict, rank: int) -> dict:
    results = {}
    for name, (path, static) in job["checkpoints"].items():
        model = AutoModelForCausalLM.from_pretrained(path, tp_plan="auto")
        results[name] = run_cases(model, static)
        if name in job.get("save", {}):  # every rank calls it; rank 0 writes the whole model
            model.save_pretrained(job["save"][name])
    errors = {}
    for name, path in job.get("refused", {}).items():
        try:
            AutoModelForCausalLM.from_pretrained(path, tp_plan="auto")
            errors[name] = None
        except Exception as exc:  # recorded for the test to check type and message
            errors[name] = (type(exc).__name__, str(exc))
    mismatched = job.get("mismatched")
    if mismatched is not None:  # each rank loads another checkpoint
        try:
            AutoModelForCausalLM.from_pretrained(mismatched[rank], tp_plan="auto")
            errors["mismatched"] = None
        except Exception as exc:
            errors["mismatched"] = (type(exc).__name__, str(exc))
    results["refused"] = errors
    return results


def warm_up() -> None:
    """One forward of a small model of the same width, so the kernels' code pages (oneDNN, ~20 MiB) are in
    the baseline of both the one-process and the tensor-parallel figure rather than in their increase."""
    from formers import AutoConfig

    config = AutoConfig.for_model("llama", vocab_size=256, hidden_size=1024, intermediate_size=1024,
                                  num_hidden_layers=1, num_attention_heads=8, num_key_value_heads=4)
    with torch.no_grad():
        AutoModelForCausalLM.from_config(config)(input_ids=IDS, attention_mask=MASK, use_cache=False)


def rss(job: dict, rank: int) -> dict:
    warm_up()
    baseline = current_rss_bytes()
    kwargs = {"tp_plan": "auto"} if job["tp"] else {}
    model = AutoModelForCausalLM.from_pretrained(job["path"], **kwargs)
    with torch.no_grad():  # touch every weight
        logits = model(input_ids=IDS, attention_mask=MASK, use_cache=False).logits
    return {"baseline": baseline, "peak": peak_rss_bytes(), "logits": logits}


def kill(job: dict, rank: int) -> dict:
    model = AutoModelForCausalLM.from_pretrained(job["path"], tp_plan="auto")
    Path(job["out"], f"ready{rank}").touch()
    deadline = time.monotonic() + job["timeout"] * 3
    while time.monotonic() < deadline:  # until the parent kills a peer: the next collective must fail
        with torch.no_grad():
            model(input_ids=IDS, attention_mask=MASK, use_cache=False)
    return {"finished": True}


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    dist.init_process_group("gloo", timeout=timedelta(seconds=job["timeout"]))
    rank = dist.get_rank()
    torch.set_num_threads(1)
    result = {"parity": parity, "rss": rss, "kill": kill}[job["kind"]](job, rank)
    torch.save(result, Path(job["out"], f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
