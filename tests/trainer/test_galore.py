"""GaLore optimizers (galore-torch) in formers' Trainer against transformers 4.45.2's Trainer on the same
weights, data and arguments; the arguments and a missing package are refused clearly."""
from __future__ import annotations

import sys

import pytest
import torch

from formers import DataCollatorForLanguageModeling, Trainer, TrainingArguments
from formers.errors import ConfigError

from .helpers import tiny_model, tiny_tokenizer, token_rows

pytest.importorskip("galore_torch")
pytest.importorskip("accelerate")  # transformers' Trainer needs it

ARGS = dict(per_device_train_batch_size=8, learning_rate=1e-2, max_steps=5, warmup_steps=1, lr_scheduler_type="cosine",
            logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, max_grad_norm=0.5,
            optim_target_modules=["self_attn", "mlp"], optim_args="rank=4, update_proj_gap=2, scale=0.5")


class OurRecorder(Trainer):
    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.losses.append(float(loss))
        return loss


def _oracle_trainer_class():
    import transformers

    class TheirRecorder(transformers.Trainer):
        def training_step(self, model, inputs):
            loss = super().training_step(model, inputs)
            self.losses.append(float(loss))
            return loss

    return TheirRecorder


@pytest.mark.parametrize("optim", ["galore_adamw", "galore_adafactor", "galore_adamw_layerwise"])
def test_losses_and_weights_match_transformers(tmp_path, optim):
    """The layer-wise variant is compared with 4.45's galore_adamw without clipping (the same update:
    4.45's own layer-wise scheduler no longer constructs under torch 2.13, LRScheduler lost `verbose`)."""
    import transformers

    tiny_model(seed=3).save_pretrained(tmp_path / "init")
    data = token_rows(8, 12)  # one batch per step, no padding (4.45 and formers normalise alike)
    tokenizer = tiny_tokenizer()
    oracle_tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer,
                                                            pad_token="<pad>")
    args = {**ARGS, "optim": optim}
    oracle_args = dict(args)
    if optim.endswith("_layerwise"):
        args["max_grad_norm"] = oracle_args["max_grad_norm"] = 0.0
        oracle_args["optim"] = optim.removesuffix("_layerwise")
    ours = OurRecorder(model=tiny_model(seed=99), args=TrainingArguments(output_dir=str(tmp_path / "a"), **args),
                       train_dataset=data, data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
    ours._load_model_weights(tmp_path / "init")
    ours.losses = []
    ours.train()
    theirs_model = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "init")
    theirs = _oracle_trainer_class()(
        model=theirs_model, args=transformers.TrainingArguments(output_dir=str(tmp_path / "b"), use_cpu=True, **oracle_args),
        train_dataset=data, data_collator=transformers.DataCollatorForLanguageModeling(oracle_tokenizer, mlm=False))
    theirs.losses = []
    theirs.train()

    assert len(ours.losses) == len(theirs.losses) == 5
    torch.testing.assert_close(torch.tensor(ours.losses), torch.tensor(theirs.losses), rtol=0, atol=1e-5)
    theirs_state = theirs_model.state_dict()
    for key, value in ours.model.state_dict().items():
        torch.testing.assert_close(value, theirs_state[key], rtol=0, atol=1e-5)
    q_proj = ours.model.model.layers[0].self_attn.q_proj.weight
    optimizer = ours.optimizer.optimizer_dict[q_proj] if optim.endswith("layerwise") else ours.optimizer
    assert "projector" in optimizer.state[q_proj]  # the low-rank projection was used


def _trainer(tmp_path, **overrides) -> Trainer:
    args = TrainingArguments(output_dir=str(tmp_path), **{**ARGS, "optim": "galore_adamw", **overrides})
    return Trainer(model=tiny_model(), args=args, train_dataset=token_rows(8, 12),
                   data_collator=DataCollatorForLanguageModeling(tiny_tokenizer(), mlm=False))


def test_galore_arguments_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="needs optim_target_modules"):
        _trainer(tmp_path, optim_target_modules=None).create_optimizer()
    with pytest.raises(ConfigError, match=r"optim_target_modules=\['nothing'\]: matches no linear layer"):
        _trainer(tmp_path, optim_target_modules=["nothing"]).create_optimizer()
    with pytest.raises(ConfigError, match=r"optim_args: unknown keys \['rnk'\]"):
        _trainer(tmp_path, optim_args="rnk=4").create_optimizer()
    with pytest.raises(ConfigError, match="rank='four': expected a int"):
        _trainer(tmp_path, optim_args="rank=four").create_optimizer()
    with pytest.raises(ConfigError, match="needs gradient_accumulation_steps=1"):
        _trainer(tmp_path, optim="galore_adamw_layerwise", gradient_accumulation_steps=2).create_optimizer()
    with pytest.raises(ConfigError, match="TrainingArguments.optim='galore_sgd'"):
        _trainer(tmp_path, optim="galore_sgd")
    regex = _trainer(tmp_path, optim_target_modules=r".*\.mlp\.(up|down)_proj").create_optimizer()
    assert len(regex.param_groups[1]["params"]) == 4 and regex.param_groups[1]["rank"] == 4


def test_missing_package_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "galore_torch", None)  # import galore_torch -> ImportError
    with pytest.raises(ConfigError, match="needs the galore-torch package: pip install galore-torch==1.0"):
        _trainer(tmp_path).create_optimizer()


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    """The projectors (refreshed every 3 steps, so step 5 reuses step 4's) survive a checkpoint that loads
    with torch.load(weights_only=True)."""
    overrides = dict(max_steps=6, save_strategy="steps", save_steps=2, optim_args="rank=4, update_proj_gap=3")
    full = _trainer(tmp_path / "full", **overrides)
    full.train()
    resumed = _trainer(tmp_path / "resumed", **overrides)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-4"))
    for key, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=1e-6)
    ours = [r["loss"] for r in resumed.state.log_history if "loss" in r]
    assert ours == [r["loss"] for r in full.state.log_history if "loss" in r]
