"""Learning-rate schedules: formers' values equal transformers 4.45.2's for the same arguments."""
from __future__ import annotations

import pytest
import torch

from formers import TrainingArguments, get_scheduler
from formers.errors import ConfigError

STEPS = 40
CASES = [
    ("linear", 5, {}),
    ("linear", 0, {}),
    ("cosine", 7, {}),
    ("cosine", 3, {"num_cycles": 1.5}),
    ("cosine_with_restarts", 4, {"num_cycles": 3}),
    ("polynomial", 6, {"lr_end": 1e-5, "power": 2.0}),
    ("constant", None, {}),
    ("constant_with_warmup", 9, {}),
    ("inverse_sqrt", 6, {}),
    ("cosine_with_min_lr", 5, {"min_lr_rate": 0.1}),
    ("cosine_with_min_lr", 5, {"min_lr": 1e-4}),
    ("warmup_stable_decay", 5, {"num_stable_steps": 10, "num_decay_steps": 20, "min_lr_ratio": 0.05}),
]


def _lrs(get, name, warmup, kwargs) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = get(name, optimizer, num_warmup_steps=warmup, num_training_steps=STEPS,
                    scheduler_specific_kwargs=dict(kwargs))
    values = []
    for _ in range(STEPS + 5):  # past the end too
        values.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return values


@pytest.mark.parametrize("name,warmup,kwargs", CASES)
def test_schedule_matches_transformers(name, warmup, kwargs):
    import transformers

    assert _lrs(get_scheduler, name, warmup, kwargs) == _lrs(transformers.get_scheduler, name, warmup, kwargs)


@pytest.mark.parametrize("ratio,steps", [(0.1, 95), (0.33, 10), (0.0, 7)])
def test_warmup_ratio_matches_transformers(tmp_path, ratio, steps):
    import transformers

    ours = TrainingArguments(output_dir=str(tmp_path), warmup_ratio=ratio)
    theirs = transformers.TrainingArguments(output_dir=str(tmp_path), warmup_ratio=ratio, report_to="none")
    assert ours.get_warmup_steps(steps) == theirs.get_warmup_steps(steps)


def test_scheduler_state_dict_loads_weights_only(tmp_path):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=2, num_training_steps=10)
    torch.save(scheduler.state_dict(), tmp_path / "scheduler.pt")
    assert torch.load(tmp_path / "scheduler.pt", weights_only=True)["last_epoch"] == 0


def test_unknown_scheduler_and_missing_arguments_raise():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    with pytest.raises(ConfigError, match="unknown scheduler 'cosinus'.*'linear'"):
        get_scheduler("cosinus", optimizer)
    with pytest.raises(ConfigError, match="needs `num_training_steps`"):
        get_scheduler("linear", optimizer, num_warmup_steps=1)
    with pytest.raises(ConfigError, match="lr_scheduler_type='cosinus'"):
        TrainingArguments(output_dir="x", lr_scheduler_type="cosinus")
