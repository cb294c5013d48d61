"""The Trainer against transformers 4.45.2's on the same weights, data and arguments: the order of callback
events, a callback that stops training, bf16 autocast on CPU and the reduce_lr_on_plateau schedule."""
from __future__ import annotations

import pytest
import torch

from formers import AutoModelForCausalLM, DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments
from formers.trainer_callback import _EVENTS

from .helpers import tiny_model, tiny_tokenizer, token_rows

pytest.importorskip("accelerate")  # transformers' Trainer needs it (the `test` extra installs it)

BASE = dict(per_device_train_batch_size=4, learning_rate=1e-2, report_to="none", disable_tqdm=True, warmup_steps=0)


def _recorder(base: type, events):
    """A callback (subclass of `base`) that records (event, global_step) for every event named in `events`."""
    seen: list[tuple[str, int]] = []

    def make(name):
        return lambda self, args, state, control, **kwargs: seen.append((name, state.global_step))

    return type("Recorder", (base,), {name: make(name) for name in events})(), seen


def _stopper(base: type, at_step: int):
    """A callback (subclass of `base`) that sets control.should_training_stop at the end of step `at_step`."""
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == at_step:
            control.should_training_stop = True
        return control

    return type("Stopper", (base,), {"on_step_end": on_step_end})()


def _run_both(tmp_path, data, eval_data=None, callbacks=lambda lib: [], **arguments):
    """Train formers' Trainer and 4.45.2's from the same saved initial weights -> (ours, theirs)."""
    import transformers
    init = tmp_path / "init"
    tiny_model(seed=3).save_pretrained(init)
    tokenizer = tiny_tokenizer()
    oracle_tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer,
                                                            pad_token="<pad>")
    import formers

    arguments = {**BASE, **arguments}
    ours = Trainer(model=AutoModelForCausalLM.from_pretrained(init),
                   args=TrainingArguments(output_dir=str(tmp_path / "ours"), **arguments),
                   train_dataset=data, eval_dataset=eval_data, callbacks=callbacks(formers),
                   data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
    theirs = transformers.Trainer(
        model=transformers.LlamaForCausalLM.from_pretrained(init), callbacks=callbacks(transformers),
        args=transformers.TrainingArguments(output_dir=str(tmp_path / "theirs"), use_cpu=True, **arguments),
        train_dataset=data, eval_dataset=eval_data,
        data_collator=transformers.DataCollatorForLanguageModeling(oracle_tokenizer, mlm=False))
    ours.train()
    theirs.train()
    return ours, theirs


def _oracle_events(recorded: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """4.45.2's events restricted to those formers defines, without its duplicate final save: when the last step
    also ends an epoch under save_strategy="epoch", 4.45.2 writes the same checkpoint at the step's end and again
    at the epoch's end; formers writes it once, at the epoch's end (a deliberate difference)."""
    events = [event for event in recorded if event[0] in _EVENTS]
    return [event for i, event in enumerate(events)
            if not (event[0] == "on_save" and events[i + 1:i + 2] == [("on_epoch_end", event[1])]
                    and ("on_save", event[1]) in events[i + 1:])]


def _steps(history, key="loss"):
    return [record for record in history if key in record]


@pytest.mark.parametrize("setup", [
    dict(max_steps=5, logging_steps=2, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2),
    dict(max_steps=-1, num_train_epochs=2, logging_strategy="epoch", eval_strategy="epoch", save_strategy="epoch"),
    dict(max_steps=4, logging_steps=1, gradient_accumulation_steps=2, per_device_train_batch_size=2),
], ids=["steps-ending-mid-epoch", "epochs", "accumulation"])
def test_callback_events_arrive_in_transformers_order(tmp_path, setup):
    """Every event formers defines, recorded with the step it came at, equals 4.45.2's sequence of those events."""
    recorders = {}

    def callbacks(lib):
        recorders[lib.__name__] = _recorder(lib.TrainerCallback, _EVENTS)
        return [recorders[lib.__name__][0]]

    _run_both(tmp_path, token_rows(12), token_rows(4, seed=9), callbacks, **setup)
    ours, theirs = recorders["formers"][1], recorders["transformers"][1]
    assert {"on_init_end", "on_epoch_begin", "on_step_begin", "on_epoch_end", "on_log"} <= {name for name, _ in ours}
    assert ours == _oracle_events(theirs)


@pytest.mark.parametrize("save_strategy", ["steps", "epoch"])
def test_callback_stops_training_like_transformers(tmp_path, save_strategy):
    """control.should_training_stop set at step 3 (of 3 per epoch x 3 epochs) ends training there: same steps,
    losses, events and checkpoints as 4.45.2's."""
    recorders = {}

    def callbacks(lib):
        recorders[lib.__name__] = _recorder(lib.TrainerCallback, _EVENTS)
        return [_stopper(lib.TrainerCallback, at_step=3), recorders[lib.__name__][0]]

    ours, theirs = _run_both(tmp_path, token_rows(10), callbacks=callbacks, max_steps=-1, num_train_epochs=3,
                             logging_steps=1, save_strategy=save_strategy, save_steps=2)
    assert ours.state.global_step == theirs.state.global_step == 3
    assert recorders["formers"][1] == _oracle_events(recorders["transformers"][1])
    assert [r["step"] for r in _steps(ours.state.log_history)] == [r["step"] for r in _steps(theirs.state.log_history)]
    checkpoints = [sorted(p.name for p in (tmp_path / side).glob("checkpoint-*")) for side in ("ours", "theirs")]
    assert checkpoints[0] == checkpoints[1] and checkpoints[0]


def test_bf16_autocast_on_cpu_matches_transformers(tmp_path, monkeypatch):
    """bf16=True on CPU trains under bfloat16 autocast (fp32 master weights) like 4.45.2: the step losses agree
    to bf16 precision, the weights stay float32 and agree but for Adam's rare sign flips on tiny gradients."""
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)  # 4.45.2's bf16=True sets it for good
    ours, theirs = _run_both(tmp_path, token_rows(8), max_steps=3, logging_steps=1, save_strategy="no",
                             per_device_train_batch_size=8, bf16=True)
    assert all(p.dtype == torch.float32 for p in ours.model.parameters())
    for a, b in zip(_steps(ours.state.log_history), _steps(theirs.state.log_history), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=2e-2)
    theirs_state = theirs.model.state_dict()
    for key, value in ours.model.state_dict().items():
        far = (value - theirs_state[key]).abs() > 2e-3
        assert far.float().mean() < 0.01, key  # measured: 1 element of 2048 in one tensor (0.02 = 2 x lr)

    seen = []
    handle = ours.model.lm_head.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    batch = DataCollatorForLanguageModeling(ours.tokenizer or tiny_tokenizer(), mlm=False)(token_rows(2))
    ours.training_step(ours.model, batch)
    handle.remove()
    assert seen == [torch.bfloat16]  # the forward really ran in bf16


def test_reduce_lr_on_plateau_learning_rates_match_transformers(tmp_path):
    """The plateau schedule steps on each evaluation's eval_loss (never per optimizer step): the logged learning
    rates equal 4.45.2's, and they really fall."""
    ours, theirs = _run_both(tmp_path, token_rows(8), token_rows(4, seed=9), max_steps=8, logging_steps=1,
                             per_device_train_batch_size=8, eval_strategy="steps", eval_steps=1, save_strategy="no",
                             learning_rate=3e-2, lr_scheduler_type="reduce_lr_on_plateau",
                             lr_scheduler_kwargs={"patience": 0, "factor": 0.5, "threshold": 0.05})
    rates = [r["learning_rate"] for r in _steps(ours.state.log_history)]
    assert rates == pytest.approx([r["learning_rate"] for r in _steps(theirs.state.log_history)], rel=1e-12)
    assert len(rates) == 8 and rates[0] == 3e-2 and rates[-1] < rates[0]
    assert ours.optimizer.param_groups[0]["lr"] == pytest.approx(theirs.optimizer.param_groups[0]["lr"], rel=1e-12)
    losses = [r["eval_loss"] for r in _steps(ours.state.log_history, "eval_loss")]
    assert losses == pytest.approx([r["eval_loss"] for r in _steps(theirs.state.log_history, "eval_loss")], abs=1e-4)
