"""The mixture-of-experts decode kernels (formers/kernels/moe.py, moe.h): `moe_block` equals the module path of
the shared SparseMoeBlock for every routing variant, and a Mixtral / Qwen2-MoE decode step runs each layer as
one `moe_layer` call whose logits, router logits, greedy and sampled tokens equal transformers 4.45.2's on
left-padded batches of 1 to 8 rows."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import formers.kernels.moe as moe_kernel
import formers.modeling.moe as moe_module
from formers.kernels.linear import kernels_available
from formers.modeling.mlp import GatedMLP
from formers.modeling.moe import SparseMoeBlock

from .cases.mixtral import CASES as MIXTRAL_CASES
from .cases.qwen2_moe import CASES as QWEN2_MOE_CASES
from .family_checks import build, load_pair, max_diff

pytestmark = pytest.mark.skipif(not kernels_available(), reason="formers' C++ kernels cannot be built here")

VARIANTS = {
    "renorm": dict(norm_topk_prob=True),
    "no-renorm": dict(norm_topk_prob=False),
    "shared-gated": dict(norm_topk_prob=False, shared_expert_intermediate_size=24, shared_expert_gated=True),
    "shared-ungated": dict(norm_topk_prob=True, shared_expert_intermediate_size=20),
    "p-norm": dict(norm_topk_prob=False, normalize_p=2.0),
    "p-norm-1": dict(norm_topk_prob=False, normalize_p=1.0),
    "softmax-after-topk+fused": dict(norm_topk_prob=False, softmax_after_topk=True,
                                     expert_factory=lambda: GatedMLP(16, 12, "silu", fused=True)),
}


def _module_path(block: SparseMoeBlock, x: torch.Tensor, monkeypatch) -> tuple[torch.Tensor, torch.Tensor]:
    with monkeypatch.context() as patch:
        patch.setattr(moe_module, "moe_block", lambda block, tokens: None)
        return block(x)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("top_k", [1, 3])
def test_moe_block_kernel_equals_the_module_path(variant, top_k, monkeypatch):
    torch.manual_seed(top_k)
    block = SparseMoeBlock(16, 12, 5, top_k, **VARIANTS[variant]).eval()
    with torch.no_grad():
        for rows in (1, 3, 8):
            x = torch.randn(rows, 1, 16)
            assert moe_kernel.moe_block(block, x.reshape(rows, 16)) is not None  # the kernel computes this block
            out, logits = block(x)
            ref_out, ref_logits = _module_path(block, x, monkeypatch)
            assert out.shape == ref_out.shape and logits.shape == ref_logits.shape == (rows, 5)
            assert max_diff(out, ref_out) <= 1e-6 and max_diff(logits, ref_logits) <= 1e-6


def test_moe_block_kernel_steps_aside():
    """Autograd, training, more than 8 rows, a hooked expert, another activation: the modules run."""
    block = SparseMoeBlock(16, 12, 4, 2, norm_topk_prob=True).eval()
    x = torch.randn(2, 16)
    assert moe_kernel.moe_block(block, x) is None  # grad enabled
    with torch.no_grad():
        assert moe_kernel.moe_block(block, x) is not None
        assert moe_kernel.moe_block(block, torch.randn(9, 16)) is None
        assert moe_kernel.moe_block(block, x.double()) is None
        handle = block.experts[3].register_forward_hook(lambda *args: None)
        assert moe_kernel.moe_block(block, x) is None
        handle.remove()
        block.train()
        assert moe_kernel.moe_block(block, x) is None
        gelu = SparseMoeBlock(16, 12, 4, 2, norm_topk_prob=True, hidden_act="gelu").eval()
        assert moe_kernel.moe_block(gelu, x) is None


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    cases = {"mixtral": replace(MIXTRAL_CASES["mixtral-top2-gqa"],
                                config={**MIXTRAL_CASES["mixtral-top2-gqa"].config, "num_local_experts": 8}),
             "qwen2_moe": QWEN2_MOE_CASES["qwen2_moe-top4-gqa"]}
    return {name: build(case, tmp_path_factory.mktemp(name)) for name, case in cases.items()}


def _left_padded(rows: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 128, (rows, length), generator=generator)
    mask = torch.ones_like(ids)
    for row in range(1, rows):
        mask[row, :row % 5] = 0
    return ids.masked_fill(mask == 0, 0), mask


@pytest.fixture
def layer_calls(monkeypatch):
    """Counts the decoder layers the fused MoE kernel computed."""
    calls = []
    original = moe_kernel.moe_layer

    def counting(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append(out is not None)
        return out
    monkeypatch.setattr(moe_kernel, "moe_layer", counting)
    return calls


@pytest.mark.parametrize("name", ["mixtral", "qwen2_moe"])
@pytest.mark.parametrize("rows", [1, 8])
def test_decode_steps_run_one_kernel_call_per_layer_and_equal_4_45(folders, name, rows, layer_calls):
    """Each cached step: logits and every layer's router logits within 1e-5 of 4.45.2's, each layer one call."""
    ours, ref = load_pair(folders[name])
    ids, mask = _left_padded(rows, 9, seed=rows)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        past_a = ours(ids[:, :5], attention_mask=mask[:, :5], position_ids=positions[:, :5]).past_key_values
        past_b = ref(ids[:, :5], attention_mask=mask[:, :5], position_ids=positions[:, :5]).past_key_values
        layer_calls.clear()
        for t in range(5, 9):
            kwargs = dict(attention_mask=mask[:, :t + 1], position_ids=positions[:, t:t + 1], output_router_logits=True)
            # the base models (4.45.2's ForCausalLM computes an aux loss that crashes on a cached padded step)
            a = ours.model(ids[:, t:t + 1], past_key_values=past_a, use_cache=True, **kwargs)
            b = ref.model(ids[:, t:t + 1], past_key_values=past_b, use_cache=True, **kwargs)
            assert max_diff(ours.lm_head(a.last_hidden_state), ref.lm_head(b.last_hidden_state)) <= 1e-5
            assert len(a.router_logits) == len(b.router_logits)
            assert max(max_diff(x, y) for x, y in zip(a.router_logits, b.router_logits)) <= 1e-5
            past_a, past_b = a.past_key_values, b.past_key_values
    layers = ours.config.num_hidden_layers
    assert layer_calls == [True] * (4 * layers)


@pytest.mark.parametrize("name", ["mixtral", "qwen2_moe"])
def test_greedy_beam_and_sampling_on_a_padded_batch_of_8_equal_4_45(folders, name, layer_calls):
    ours, ref = load_pair(folders[name])
    ids, mask = _left_padded(8, 7, seed=11)
    kwargs = dict(attention_mask=mask, max_new_tokens=12, pad_token_id=0, eos_token_id=None)
    for options in (dict(do_sample=False), dict(do_sample=True, top_k=20, temperature=0.9)):
        torch.manual_seed(5)
        a = ours.generate(ids, **kwargs, **options)
        torch.manual_seed(5)
        b = ref.generate(ids, **kwargs, **options)
        assert torch.equal(a, b)
    assert layer_calls and all(layer_calls)
    beams = dict(attention_mask=mask[:2], max_new_tokens=8, pad_token_id=0, eos_token_id=None, num_beams=3)
    assert torch.equal(ours.generate(ids[:2], **beams), ref.generate(ids[:2], **beams))
