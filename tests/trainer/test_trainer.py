"""Trainer: resume reproduces the uninterrupted run, accumulation equals a big batch, NEFTune only
while training, evaluation gives loss and perplexity, checkpoint rotation and the JSON-lines log."""
from __future__ import annotations

import json
import math

import pytest
import torch

from formers import DataCollatorForLanguageModeling, Trainer, TrainingArguments
from formers.errors import CheckpointError, ConfigError
from formers.trainer_utils import get_last_checkpoint

from .helpers import tiny_model, tiny_tokenizer, token_rows


def _args(tmp_path, **overrides) -> TrainingArguments:
    base = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, learning_rate=3e-3, max_steps=8,
                logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, warmup_steps=2,
                weight_decay=0.1)
    return TrainingArguments(**{**base, **overrides})


def _trainer(args, data, seed=0, **kwargs) -> Trainer:
    tokenizer = tiny_tokenizer()
    return Trainer(model=tiny_model(seed), args=args, train_dataset=data, tokenizer=tokenizer,
                   data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False), **kwargs)


def _losses(trainer) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in trainer.state.log_history if "loss" in r}


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("neftune, safetensors", [(None, True), (5.0, True), (None, False)])
def test_resume_reproduces_the_uninterrupted_run(tmp_path, neftune, safetensors):
    data = token_rows(20, (6, 14))  # 5 batches per epoch: the run crosses an epoch boundary
    common = dict(gradient_accumulation_steps=2, per_device_train_batch_size=2, neftune_noise_alpha=neftune,
                  save_safetensors=safetensors)  # False: checkpoints hold pytorch_model.bin
    full = _trainer(_args(tmp_path / "full", **common), data)
    full.train()
    first = _trainer(_args(tmp_path / "part", save_strategy="steps", save_steps=3, **common), data)
    first.args.max_steps = 8
    first.train()
    weights = "model.safetensors" if safetensors else "pytorch_model.bin"
    assert (tmp_path / "part" / "checkpoint-3" / weights).exists()
    resumed = _trainer(_args(tmp_path / "part", **common), data, seed=123)  # other init: weights come from disk
    resumed.train(resume_from_checkpoint=str(tmp_path / "part" / "checkpoint-3"))
    full_losses, resumed_losses = _losses(full), _losses(resumed)
    assert sorted(resumed_losses) == list(range(1, 9))  # log history restored from the checkpoint, then extended
    for step in range(4, 9):
        assert abs(resumed_losses[step] - full_losses[step]) <= 1e-6, step
    for key, value in _weights(full.model).items():
        torch.testing.assert_close(_weights(resumed.model)[key], value, rtol=0, atol=1e-6)


def test_resume_true_picks_the_latest_complete_checkpoint(tmp_path):
    data = token_rows(16)
    _trainer(_args(tmp_path, save_strategy="steps", save_steps=2, max_steps=4), data).train()
    (tmp_path / "checkpoint-9").mkdir()  # no trainer_state.json: incomplete, never chosen
    assert get_last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    trainer = _trainer(_args(tmp_path, max_steps=6), data)
    trainer.train(resume_from_checkpoint=True)
    assert trainer.state.global_step == 6
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        _trainer(_args(tmp_path / "empty"), data).train(resume_from_checkpoint=True)


def test_gradient_accumulation_equals_one_big_batch(tmp_path):
    data = token_rows(8, (4, 15))  # different lengths: micro-batches hold different numbers of tokens
    big = _trainer(_args(tmp_path / "big", per_device_train_batch_size=8, max_steps=1, warmup_steps=0), data)
    small = _trainer(_args(tmp_path / "small", per_device_train_batch_size=2, gradient_accumulation_steps=4,
                           max_steps=1, warmup_steps=0), data)
    big.train()
    small.train()
    assert abs(_losses(big)[1] - _losses(small)[1]) < 1e-5
    for key, value in _weights(big.model).items():
        torch.testing.assert_close(_weights(small.model)[key], value, rtol=0, atol=1e-5)


def test_neftune_noise_only_while_training_and_recorded(tmp_path):
    import transformers.trainer_utils as oracle

    from formers.trainer_utils import neftune_post_forward_hook

    data = token_rows(8)
    trainer = _trainer(_args(tmp_path, max_steps=2, neftune_noise_alpha=5.0, eval_strategy="steps", eval_steps=1),
                       data, eval_dataset=data[:4])
    embeddings = trainer.model.get_input_embeddings()
    calls = []  # (training?, clean embeddings at that moment, what the first decoder layer received)
    embeddings.register_forward_pre_hook(lambda module, args: calls.append(
        [module.training, torch.nn.functional.embedding(args[0], module.weight).detach().clone()]))
    trainer.model.model.layers[0].register_forward_pre_hook(lambda module, args: calls[-1].append(args[0]))
    trainer.train()
    assert {training for training, _, _ in calls} == {True, False}  # training steps and evaluations ran
    for training, clean, hidden in calls:
        bound = 5.0 / math.sqrt(hidden.shape[1] * hidden.shape[2])
        if training:
            noise = hidden.detach() - clean
            assert 0 < noise.abs().max() <= bound + 1e-6
        else:
            assert torch.equal(hidden, clean)
    assert not hasattr(embeddings, "neftune_noise_alpha")  # the hook is gone after train()
    trainer.model.train()
    ids = torch.tensor([data[0]["input_ids"]])
    assert torch.equal(embeddings(ids), torch.nn.functional.embedding(ids, embeddings.weight))
    records = [json.loads(line) for line in open(tmp_path / "trainer_log.jsonl")]
    assert records[0]["neftune_noise_alpha"] == 5.0 and records[-1]["neftune_noise_alpha"] == 5.0

    # the noise itself equals transformers' hook for the same RNG state, and is off in eval mode
    embeddings.neftune_noise_alpha = 5.0
    out = torch.randn(2, 7, 32)
    torch.manual_seed(3)
    ours = neftune_post_forward_hook(embeddings, None, out)
    torch.manual_seed(3)
    torch.testing.assert_close(ours, oracle.neftune_post_forward_hook(embeddings, None, out), rtol=0, atol=0)
    embeddings.eval()
    assert neftune_post_forward_hook(embeddings, None, out) is out


def test_evaluate_reports_token_mean_loss_and_perplexity(tmp_path):
    data = token_rows(6, (5, 11))
    trainer = _trainer(_args(tmp_path), data, eval_dataset=data)
    metrics = trainer.evaluate()
    batch = DataCollatorForLanguageModeling(trainer.tokenizer, mlm=False)(data)
    with torch.no_grad():
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(),
                                                 ignore_index=-100)
    assert metrics["eval_loss"] == pytest.approx(float(expected), abs=1e-5)
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))


def test_save_total_limit_keeps_the_newest_and_the_best(tmp_path):
    """save_total_limit=2 keeps exactly the newest checkpoint and the best (older) one, and
    load_best_model_at_end leaves the best checkpoint's weights in the model."""
    from formers.loading.checkpoint import find_weight_files, iter_tensors

    data = token_rows(16)
    args = _args(tmp_path, max_steps=8, save_strategy="steps", save_steps=2, eval_strategy="steps", eval_steps=2,
                 save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="loss",
                 greater_is_better=True)  # the highest eval loss wins: an early checkpoint, not the newest
    trainer = _trainer(args, data, eval_dataset=data[:4])
    trainer.train()
    evals = {r["step"]: r["eval_loss"] for r in trainer.state.log_history if "eval_loss" in r}
    best = max(evals, key=evals.get)
    assert sorted(evals) == [2, 4, 6, 8] and trainer.state.best_metric == evals[best] and best != 8
    assert trainer.state.best_model_checkpoint == str(tmp_path / f"checkpoint-{best}")
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == sorted([f"checkpoint-{best}", "checkpoint-8"])

    saved = dict(iter_tensors(find_weight_files(str(tmp_path / f"checkpoint-{best}"))))
    weights = trainer.model.state_dict()
    for key, tensor in saved.items():
        assert torch.equal(weights[key], tensor), key
    final = dict(iter_tensors(find_weight_files(str(tmp_path / "checkpoint-8"))))
    assert any(not torch.equal(weights[key], tensor) for key, tensor in final.items())  # really replaced


def test_checkpoints_hold_training_args_json_and_no_pickles(tmp_path):
    """The training arguments are written as training_args.json (what to_dict() holds), never as the pickled
    training_args.bin of transformers; no checkpoint file needs pickle to be read."""
    trainer = _trainer(_args(tmp_path, max_steps=2, save_strategy="steps", save_steps=2), token_rows(8))
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    for folder in (tmp_path / "checkpoint-2", tmp_path / "final"):
        written = json.loads((folder / "training_args.json").read_text())
        assert written == json.loads(json.dumps(trainer.args.to_dict()))
        assert written["output_dir"] == str(tmp_path) and written["max_steps"] == 2
        assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pkl"))
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        torch.load(tmp_path / "checkpoint-2" / name, weights_only=True)  # plain tensors and containers only


def test_jsonl_log_and_trainer_state(tmp_path):
    trainer = _trainer(_args(tmp_path, max_steps=4, logging_steps=2, save_strategy="steps", save_steps=4),
                       token_rows(8))
    output = trainer.train()
    lines = [json.loads(line) for line in open(tmp_path / "trainer_log.jsonl")]
    assert lines[0]["event"] == "train_begin"
    assert [r["step"] for r in lines if "loss" in r] == [2, 4]
    assert {"loss", "grad_norm", "learning_rate", "epoch"} <= set(lines[1])
    assert output.global_step == 4 and "train_runtime" in output.metrics
    state = json.loads((tmp_path / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and state["log_history"][-1]["step"] == 4


def test_bad_arguments_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="gradient_accumulation_steps"):
        TrainingArguments(output_dir=str(tmp_path), gradient_accumulation_steps=0)
    with pytest.raises(ConfigError, match="eval_strategy='sometimes'"):
        TrainingArguments(output_dir=str(tmp_path), eval_strategy="sometimes")
    with pytest.raises(ConfigError, match="load_best_model_at_end"):
        TrainingArguments(output_dir=str(tmp_path), load_best_model_at_end=True, eval_strategy="epoch")
    with pytest.raises(ConfigError, match="train_dataset"):
        Trainer(model=tiny_model(), args=_args(tmp_path)).train()


def test_epoch_strategies_and_epoch_planning(tmp_path):
    data = token_rows(10)  # 3 batches of 4 per epoch (the last one holds 2)
    args = _args(tmp_path, max_steps=-1, num_train_epochs=2, logging_strategy="epoch", save_strategy="epoch",
                 eval_strategy="epoch")
    trainer = _trainer(args, data, eval_dataset=data[:4])
    trainer.train()
    assert trainer.state.global_step == 6 and trainer.state.epoch == 2.0
    assert [p.name for p in sorted(tmp_path.glob("checkpoint-*"))] == ["checkpoint-3", "checkpoint-6"]
    assert [r["step"] for r in trainer.state.log_history if "eval_loss" in r] == [3, 6]
    assert [r["step"] for r in trainer.state.log_history if "loss" in r] == [3, 6]
