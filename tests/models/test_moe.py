"""Mixture of experts against transformers 4.45.2: config defaults, router logits, the load-balancing loss
and the loss with labels, Trainer fine-tuning, the routing variants of the shared block, and expert compute
that touches only the experts a token chose (the family checks in test_families.py cover logits and
generation on tests/models/cases/{mixtral,qwen2_moe}.py)."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
import torch
import transformers

import formers
from formers.modeling.mlp import GatedMLP
from formers.modeling.moe import SparseMoeBlock, load_balancing_loss_func

from .cases.mixtral import CASES as MIXTRAL_CASES
from .cases.qwen2_moe import CASES as QWEN2_MOE_CASES
from .family_checks import build, load_pair, max_diff, padded_batch

CASES = {**MIXTRAL_CASES, **QWEN2_MOE_CASES}
# 8 experts, top-2: the shape whose decode the expert-touch test counts
EIGHT_EXPERTS = {"num_local_experts": 8, "num_experts_per_tok": 2}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    built = {}

    def folder(name: str, **config):
        key = (name, tuple(sorted(config.items())))
        if key not in built:
            case = CASES[name]
            built[key] = build(replace(case, config={**case.config, **config}), tmp_path_factory.mktemp(name))
        return built[key]
    return folder


@pytest.mark.parametrize("name", ["Mixtral", "Qwen2Moe"])
def test_config_defaults_equal_4_45(name):
    ours = getattr(formers, f"{name}Config")().to_diff_dict()
    theirs = getattr(transformers, f"{name}Config")().to_diff_dict()
    ours.pop("formers_version", None)
    theirs.pop("transformers_version", None)
    assert ours == theirs


@pytest.mark.parametrize("name", sorted(CASES))
def test_router_logits_aux_loss_and_loss_equal_4_45(folders, name):
    ours, ref = load_pair(folders(name))
    ids, mask = padded_batch(length=10)
    labels = ids.masked_fill(mask == 0, -100)
    for kwargs in ({"attention_mask": mask, "labels": labels}, {}):  # padding masked out of the aux loss; none
        with torch.no_grad():
            a = ours(ids, output_router_logits=True, **kwargs)
            b = ref(ids, output_router_logits=True, **kwargs)
        assert len(a.router_logits) == len(b.router_logits) > 0  # one per MoE layer (Qwen2-MoE: dense ones skip)
        assert max(max_diff(x, y) for x, y in zip(a.router_logits, b.router_logits)) <= 1e-5
        assert abs(a.aux_loss.item() - b.aux_loss.item()) <= 1e-5
        if "labels" in kwargs:
            assert abs(a.loss.item() - b.loss.item()) <= 1e-5
            assert a.aux_loss.item() > 0 and a.loss.item() != pytest.approx(ours(ids, **kwargs).loss.item(), abs=1e-9)


def test_router_logits_follow_the_config_and_tuple_layout_equals_4_45(folders):
    folder = folders("qwen2_moe-top2-norm-step2", output_router_logits=True)
    ours, ref = load_pair(folder)
    ids, mask = padded_batch(length=8)
    with torch.no_grad():
        a = ours(ids, attention_mask=mask, labels=ids, return_dict=False)
        b = ref(ids, attention_mask=mask, labels=ids, return_dict=False)
        base_a, base_b = ours.model(ids, return_dict=False), ref.model(ids, return_dict=False)
    # (loss, aux_loss, logits, cache, router_logits); the base model: (hidden, cache, router_logits)
    assert len(a) == len(b) == 5 and len(base_a) == len(base_b) == 3
    assert abs(a[0].item() - b[0].item()) <= 1e-5 and abs(a[1].item() - b[1].item()) <= 1e-5
    assert len(a[4]) == len(b[4]) == 1  # layer 1 of 3 is sparse (decoder_sparse_step 2)
    assert max_diff(base_a[2][0], base_b[2][0]) <= 1e-5
    with torch.no_grad():
        assert ours(ids, output_router_logits=False).router_logits is None


@pytest.mark.parametrize("top_k", [1, 2, 4])
@pytest.mark.parametrize("masked", [False, True])
def test_load_balancing_loss_equals_4_45(top_k, masked):
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func as reference

    generator = torch.Generator().manual_seed(top_k)
    logits = tuple(torch.randn(3 * 7, 6, generator=generator) for _ in range(3))  # 3 layers, B=3, T=7, E=6
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, :2], mask[2, :5] = 0, 0
    kwargs = {"attention_mask": mask} if masked else {}
    ours, theirs = load_balancing_loss_func(logits, 6, top_k, **kwargs), reference(logits, 6, top_k, **kwargs)
    assert abs(ours.item() - theirs.item()) <= 1e-6
    assert load_balancing_loss_func(None, 6, top_k) == reference(None, 6, top_k) == 0


def test_generate_with_router_logits_in_the_config_equals_4_45(folders):
    folder = folders("mixtral-top2-gqa", output_router_logits=True)
    ours, ref = load_pair(folder)
    ids, mask = padded_batch()
    kwargs = dict(attention_mask=mask, pad_token_id=0, max_new_tokens=12, do_sample=False)
    assert torch.equal(ours.generate(ids, **kwargs), ref.generate(ids, **kwargs))


def _count_expert_calls(model) -> tuple[Counter, list]:
    calls: Counter = Counter()
    handles = []
    for layer_idx, layer in enumerate(model.model.layers):
        moe = getattr(layer, "block_sparse_moe", None) or layer.mlp  # 4.45's Mixtral name, or formers'
        for expert_idx, expert in enumerate(moe.experts):
            handles.append(expert.register_forward_hook(
                lambda module, args, out, key=(layer_idx, expert_idx): calls.update({key: args[0].shape[0]})))
    return calls, handles


def test_batch_one_decode_runs_only_the_chosen_experts(folders):
    """A decode step at batch 1 runs exactly top_k experts per layer on one row each; 4.45.2 calls all 8."""
    ours, ref = load_pair(folders("mixtral-top2-gqa", **EIGHT_EXPERTS))
    ids = torch.randint(3, 128, (1, 6), generator=torch.Generator().manual_seed(0))
    counts = {}
    for name, model in (("ours", ours), ("ref", ref)):
        with torch.no_grad():
            past = model(ids[:, :5], use_cache=True).past_key_values
            calls, handles = _count_expert_calls(model)
            model(ids[:, 5:], past_key_values=past, use_cache=True)
        for handle in handles:
            handle.remove()
        counts[name] = calls
    layers = ours.config.num_hidden_layers
    assert len(counts["ours"]) == 2 * layers and set(counts["ours"].values()) == {1}
    assert len(counts["ref"]) == 8 * layers  # the loop this replaces (0-row calls included)


@pytest.mark.parametrize("name", ["mixtral-top2-gqa", "qwen2_moe-top4-gqa"])
def test_batch_one_decode_steps_and_greedy_equal_4_45(folders, name):
    """The one-token expert path (decoding at batch 1): each step's logits within 1e-5 of 4.45.2's, and
    greedy tokens identical."""
    ours, ref = load_pair(folders(name, **(EIGHT_EXPERTS if name.startswith("mixtral") else {})))
    ids = torch.randint(3, 128, (1, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        past_a = ours(ids[:, :4], use_cache=True).past_key_values
        past_b = ref(ids[:, :4], use_cache=True, past_key_values=transformers.DynamicCache()).past_key_values
        for position in range(4, 7):
            step = ids[:, position:position + 1]
            a = ours(step, past_key_values=past_a, use_cache=True)
            b = ref(step, past_key_values=past_b, use_cache=True)
            assert max_diff(a.logits, b.logits) <= 1e-5
            past_a, past_b = a.past_key_values, b.past_key_values
    kwargs = dict(max_new_tokens=16, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert torch.equal(ours.generate(ids, **kwargs), ref.generate(ids, **kwargs))


def test_prefill_runs_each_chosen_expert_once_on_its_tokens(folders):
    ours, _ = load_pair(folders("mixtral-top2-gqa", **EIGHT_EXPERTS))
    ids, mask = padded_batch(length=10)
    calls, handles = _count_expert_calls(ours)
    with torch.no_grad():
        routers = ours(ids, attention_mask=mask, output_router_logits=True).router_logits
    for handle in handles:
        handle.remove()
    for layer_idx, logits in enumerate(routers):
        chosen = logits.topk(2, dim=-1).indices.reshape(-1).bincount(minlength=8)
        expected = {(layer_idx, e): int(n) for e, n in enumerate(chosen) if n > 0}
        assert {k: v for k, v in calls.items() if k[0] == layer_idx} == expected


def _dense_reference(block: SparseMoeBlock, x: torch.Tensor, weights_of) -> torch.Tensor:
    """Every expert on every token, weighted by `weights_of(router logits)` [N, E] (zero off the top-k)."""
    tokens = x.reshape(-1, x.shape[-1])
    dense = weights_of(block.gate(tokens))
    out = sum(dense[:, e:e + 1] * expert(tokens) for e, expert in enumerate(block.experts))
    if block.shared_expert is not None:
        shared = block.shared_expert(tokens)
        out = out + (torch.sigmoid(block.shared_expert_gate(tokens)) * shared if block.shared_expert_gate is not None
                     else shared)
    return out.reshape(x.shape)


def _scatter_top_k(scores: torch.Tensor, top: torch.Tensor, k: int) -> torch.Tensor:
    idx = top.topk(k, dim=-1).indices
    return torch.zeros_like(scores).scatter(1, idx, scores.gather(1, idx))


@pytest.mark.parametrize("variant", ["renorm", "no-renorm+shared", "p-norm", "softmax-after-topk", "router-bias"])
def test_block_routing_variants_against_a_dense_reference(variant):
    torch.manual_seed(0)
    k, experts = 3, 5
    options = {"renorm": dict(norm_topk_prob=True),
               "no-renorm+shared": dict(norm_topk_prob=False, shared_expert_intermediate_size=24,
                                        shared_expert_gated=True),
               "p-norm": dict(norm_topk_prob=False, normalize_p=2.0),
               "softmax-after-topk": dict(norm_topk_prob=False, softmax_after_topk=True),
               "router-bias": dict(norm_topk_prob=True, router_bias=True,
                                   expert_factory=lambda: GatedMLP(16, 8, "gelu", bias=True))}[variant]
    block = SparseMoeBlock(16, 12, experts, k, **options)
    x = torch.randn(2, 7, 16)

    def weights_of(logits):
        probs = logits.softmax(-1)
        top = _scatter_top_k(probs, probs, k)
        if variant == "softmax-after-topk":
            masked = logits.masked_fill(top == 0, float("-inf"))
            return masked.softmax(-1)
        if variant == "p-norm":
            return top / top.norm(p=2.0, dim=-1, keepdim=True)
        return top / top.sum(-1, keepdim=True) if options["norm_topk_prob"] else top

    with torch.no_grad():
        out, logits = block(x)
        assert logits.shape == (14, experts)
        assert max_diff(out, _dense_reference(block, x, weights_of)) <= 1e-6


def test_top_k_out_of_range_is_refused():
    with pytest.raises(formers.errors.ConfigError, match="num_experts_per_tok"):
        SparseMoeBlock(8, 8, 4, 5, norm_topk_prob=True)


def test_router_jitter_only_in_training(folders):
    model = formers.AutoModelForCausalLM.from_pretrained(folders("mixtral-top2-gqa"), router_jitter_noise=0.5)
    ids, _ = padded_batch(length=8)
    with torch.no_grad():
        plain = model(ids).logits
        assert torch.equal(model(ids).logits, plain)  # eval: no noise
        model.train()
        assert max_diff(model(ids).logits, plain) > 1e-4


def test_trainer_fine_tunes_mixtral_as_transformers_trainer(tmp_path):
    """4 steps of formers' Trainer and of 4.45.2's on the same weights and batches: the loss (with the
    router aux loss) and grad norm of every step agree, and so do the final weights."""
    pytest.importorskip("accelerate")
    from ..trainer.helpers import TINY_TRAIN, tiny_tokenizer, token_rows

    config = dict(TINY_TRAIN, num_local_experts=4, num_experts_per_tok=2, output_router_logits=True,
                  router_aux_loss_coef=0.5)  # a large coefficient so the aux loss shows in the loss
    torch.manual_seed(3)
    transformers.MixtralForCausalLM(transformers.MixtralConfig(**config)).save_pretrained(tmp_path / "init")
    args = dict(per_device_train_batch_size=8, learning_rate=1e-2, max_steps=4, warmup_steps=1, logging_steps=1,
                save_strategy="no", report_to="none", disable_tqdm=True, max_grad_norm=0.5)
    data = token_rows(8, 12)
    tokenizer = tiny_tokenizer()
    oracle_tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer,
                                                            pad_token="<pad>")
    ours_model = formers.MixtralForCausalLM.from_pretrained(tmp_path / "init")
    ours = formers.Trainer(
        model=ours_model, args=formers.TrainingArguments(output_dir=str(tmp_path / "a"), **args),
        train_dataset=data, data_collator=formers.DataCollatorForLanguageModeling(tokenizer, mlm=False))
    ours.train()
    theirs_model = transformers.MixtralForCausalLM.from_pretrained(tmp_path / "init")
    theirs = transformers.Trainer(
        model=theirs_model, args=transformers.TrainingArguments(output_dir=str(tmp_path / "b"), use_cpu=True, **args),
        train_dataset=data, data_collator=transformers.DataCollatorForLanguageModeling(oracle_tokenizer, mlm=False))
    theirs.train()
    steps_a = [r for r in ours.state.log_history if "loss" in r]
    steps_b = [r for r in theirs.state.log_history if "loss" in r]
    assert len(steps_a) == len(steps_b) == 4
    for a, b in zip(steps_a, steps_b):
        assert a["loss"] == pytest.approx(b["loss"], abs=2e-4)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in steps_a)
    theirs_state = theirs_model.state_dict()
    ours_state = ours_model.checkpoint_keys.to_checkpoint(ours_model.state_dict(), ours_model.config)
    assert sorted(ours_state) == sorted(theirs_state)
    for key, value in ours_state.items():
        torch.testing.assert_close(value, theirs_state[key], rtol=1e-4, atol=1e-5)
