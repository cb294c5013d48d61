"""Seq2SeqTrainer / Seq2SeqTrainingArguments against transformers 4.45.2's on a tiny T5 written by 4.45.2:
per-step training losses with DataCollatorForSeq2Seq, and predict / evaluate with predict_with_generate
(generated ids padded as 4.45 pads them, labels, loss)."""
from __future__ import annotations

import numpy as np
import pytest

from formers import (
    AutoTokenizer,
    GenerationConfig,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    T5ForConditionalGeneration,
    TrainingArguments,
)
from formers.errors import ConfigError

from ..docs_examples.seq2seq_folders import t5_folder

pytest.importorskip("accelerate")  # transformers' Trainer needs it

PAIRS = [("translate English to French: the cat sat", "le chat"), ("summarize: a long day at the market", "a day"),
         ("translate English to French: good morning to you all", "bonjour"), ("hello there", "salut les amis")]
ARGS = dict(per_device_train_batch_size=4, per_device_eval_batch_size=3, learning_rate=1e-2, max_steps=4,
            logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, warmup_steps=1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return t5_folder(tmp_path_factory.mktemp("t5"), dropout_rate=0.0)


def _rows(tokenizer, pairs):
    return [dict(input_ids=tokenizer(src)["input_ids"], labels=tokenizer(text_target=tgt)["input_ids"])
            for src, tgt in pairs]


def _recording(base):
    class Recorder(base):
        def training_step(self, model, inputs, *args, **kwargs):
            loss = super().training_step(model, inputs, *args, **kwargs)
            self.losses.append(float(loss))
            return loss
    return Recorder


def _pair(folder, tmp_path, **arguments):
    """formers' and 4.45.2's Seq2SeqTrainer on the same checkpoint, data and arguments."""
    import transformers
    made = []
    for lib, model_cls in ((__import__("formers"), T5ForConditionalGeneration),
                           (transformers, transformers.T5ForConditionalGeneration)):
        tokenizer = lib.AutoTokenizer.from_pretrained(folder)
        model = model_cls.from_pretrained(folder)
        extra = dict(use_cpu=True) if lib is transformers else {}
        args = lib.Seq2SeqTrainingArguments(output_dir=str(tmp_path / lib.__name__), **{**ARGS, **arguments}, **extra)
        trainer = _recording(lib.Seq2SeqTrainer)(
            model=model, args=args, tokenizer=tokenizer, train_dataset=_rows(tokenizer, PAIRS),
            data_collator=lib.DataCollatorForSeq2Seq(tokenizer, model=model))
        trainer.losses = []
        made.append(trainer)
    return made


def test_training_losses_match_transformers(folder, tmp_path):
    ours, theirs = _pair(folder, tmp_path)
    ours.train()
    theirs.train()
    assert len(ours.losses) == len(theirs.losses) == 4
    np.testing.assert_allclose(ours.losses, theirs.losses, atol=1e-5, rtol=0)
    assert ours.losses[0] != ours.losses[-1]  # the model learned: the comparison is not of constants


EVAL = [("translate English to French: the cat", "le chat noir"), ("summarize: market", "jour"),
        ("hello", "salut"), ("translate English to French: good morning to you all, friends", "bonjour")]


@pytest.mark.parametrize("setup", [
    dict(arguments=dict(predict_with_generate=True), gen_kwargs={}),
    dict(arguments=dict(predict_with_generate=True, generation_max_length=6, generation_num_beams=2), gen_kwargs={}),
    dict(arguments=dict(predict_with_generate=True), gen_kwargs=dict(max_new_tokens=25)),
    dict(arguments=dict(predict_with_generate=False), gen_kwargs={}),  # logits, on the untrained checkpoint
])
def test_predict_matches_transformers(folder, tmp_path, setup):
    ours, theirs = _pair(folder, tmp_path, **setup["arguments"])
    if setup["arguments"]["predict_with_generate"]:  # trained weights agree to ~1e-6, logits then drift past 1e-5
        ours.train()
        theirs.train()
    results = []
    for trainer in (ours, theirs):
        rows = _rows(trainer.tokenizer, EVAL)
        results.append(trainer.predict(rows, **setup["gen_kwargs"]))
    mine, oracle = results
    if setup["arguments"]["predict_with_generate"]:
        assert mine.predictions.shape == oracle.predictions.shape
        np.testing.assert_array_equal(mine.predictions, oracle.predictions)
    else:
        np.testing.assert_allclose(mine.predictions, oracle.predictions[0], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(mine.label_ids, oracle.label_ids)
    assert abs(mine.metrics["test_loss"] - oracle.metrics["test_loss"]) < 1e-5


def test_evaluate_with_compute_metrics_matches_transformers(folder, tmp_path):
    ours, theirs = _pair(folder, tmp_path, predict_with_generate=True, generation_max_length=7)
    seen = []

    def exact(prediction):
        predictions, labels = prediction
        seen.append(predictions)
        return {"exact": float((predictions[:, :labels.shape[1]] == labels).mean())}

    metrics = []
    for trainer in (ours, theirs):
        trainer.compute_metrics = exact
        metrics.append(trainer.evaluate(_rows(trainer.tokenizer, EVAL)))
    np.testing.assert_array_equal(seen[0], seen[1])
    assert metrics[0]["eval_exact"] == metrics[1]["eval_exact"]
    assert abs(metrics[0]["eval_loss"] - metrics[1]["eval_loss"]) < 1e-5


def test_generation_config_argument_replaces_the_models(folder, tmp_path):
    config = GenerationConfig(max_length=5, decoder_start_token_id=0, eos_token_id=1, pad_token_id=0)
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), generation_config=config, report_to="none")
    trainer = Seq2SeqTrainer(model=T5ForConditionalGeneration.from_pretrained(folder), args=args,
                             tokenizer=AutoTokenizer.from_pretrained(folder))
    assert trainer.model.generation_config.max_length == 5
    assert args.to_dict()["generation_config"]["max_length"] == 5


def test_bad_arguments_raise_config_errors(folder, tmp_path):
    with pytest.raises(ConfigError, match="generation_num_beams"):
        Seq2SeqTrainingArguments(output_dir=str(tmp_path), generation_num_beams=0)
    with pytest.raises(ConfigError, match="Seq2SeqTrainingArguments"):
        Seq2SeqTrainer(model=T5ForConditionalGeneration.from_pretrained(folder),
                       args=TrainingArguments(output_dir=str(tmp_path)))


def test_evaluation_during_training_matches_transformers(folder, tmp_path):
    """eval_strategy="steps" runs Seq2SeqTrainer.evaluate inside train(): the logged eval losses equal 4.45.2's."""
    ours, theirs = _pair(folder, tmp_path, predict_with_generate=True, eval_strategy="steps", eval_steps=2)
    for trainer in (ours, theirs):
        trainer.eval_dataset = _rows(trainer.tokenizer, EVAL)
        trainer.train()
    losses = [[r["eval_loss"] for r in t.state.log_history if "eval_loss" in r] for t in (ours, theirs)]
    assert len(losses[0]) == len(losses[1]) == 2
    np.testing.assert_allclose(losses[0], losses[1], atol=1e-5, rtol=0)
