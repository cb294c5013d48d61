"""GPTQ checkpoints read without optimum or auto-gptq (formers/quantization/gptq.py), against transformers 4.45.2
loading the same folder through optimum + auto-gptq on the CPU (auto-gptq's torch path; the test extra installs
both). Each checkpoint is written here in auto-gptq's layout from random codes, zero points and float16 scales of
a tiny model's block layers: what the folder means is what 4.45.2 computes from it, however its bits were chosen."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import formers
from formers.errors import CheckpointError, ConfigError
from tests.conftest import build_oracle_checkpoint
from tests.models.cases.falcon import FALCON_BASE
from tests.quantization.edits import edit_checkpoint
from tests.quantization.gptq_writer import gptq_checkpoint
from tests.quantization.greedy import assert_greedy_equal_but_near_ties

pytest.importorskip("auto_gptq", reason="auto-gptq is not installed (it comes with the test extra)")
pytest.importorskip("optimum", reason="optimum is not installed (it comes with the test extra)")

IDS = torch.tensor([[1, 5, 9, 33, 7, 64, 3], [1, 90, 12, 4, 77, 21, 50]])
FAMILIES = {
    "llama": (None, dict(tie_word_embeddings=False, intermediate_size=128)),
    "qwen2": (None, dict(tie_word_embeddings=False, intermediate_size=128)),  # q/k/v biases
    # Conv1D projections, q/k/v fused in c_attn: formers' key map splits the dequantized weight
    "gpt2": (dict(n_embd=64, n_layer=2, n_head=4, vocab_size=128, n_positions=64), {}),
    # experts quantized one by one (formers' key map stacks them), routers left in full precision
    "mixtral": (None, dict(tie_word_embeddings=False, intermediate_size=64, num_local_experts=4,
                           num_experts_per_tok=2)),
    "qwen2_moe": (None, dict(tie_word_embeddings=False, intermediate_size=64, moe_intermediate_size=64,
                             shared_expert_intermediate_size=64, num_experts=4, num_experts_per_tok=2)),
    "phi": (None, dict(intermediate_size=128)),  # checkpoint names formers renames (dense, fc1, fc2)
    "falcon": (FALCON_BASE, {}),  # query_key_value quantized as one layer: formers' key map splits it by rows
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {family: build_oracle_checkpoint(tmp_path_factory.mktemp(family), family, base=base, **overrides)
            for family, (base, overrides) in FAMILIES.items()}


def load_both(folder, dtype=torch.float32, **kwargs):
    import transformers

    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype, device_map="cpu")
    return formers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype, **kwargs), theirs


CASES = [("llama", 4, 32, False), ("llama", 8, 32, False), ("llama", 3, 32, False), ("llama", 2, 16, False),
         ("llama", 4, 32, True), ("llama", 3, 64, True), ("qwen2", 4, 32, False), ("qwen2", 4, 32, True),
         ("gpt2", 4, 32, False), ("gpt2", 8, 64, True), ("mixtral", 4, 32, False), ("qwen2_moe", 4, 32, True)]


@pytest.mark.parametrize("family, bits, group_size, act_order", CASES)
def test_logits_and_tokens_equal_4_45(folders, tmp_path, family, bits, group_size, act_order):
    folder = gptq_checkpoint(folders[family], tmp_path / "gptq", bits, group_size, act_order)
    ours, theirs = load_both(folder)
    with torch.no_grad():
        got, want = ours(IDS).logits, theirs(IDS).logits
    torch.testing.assert_close(got, want, rtol=0, atol=2e-6)  # measured up to 5.1e-7 (Llama, float32)
    greedy = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(IDS[:1], **greedy), theirs.generate(IDS[:1], **greedy))
    assert not hasattr(ours.config, "quantization_config")  # dequantized at load: a plain model from here on


@pytest.mark.parametrize("dtype, atol", [(torch.bfloat16, 0.0), (torch.float16, 1e-3)])
def test_half_precision_weights_are_4_45s(folders, tmp_path, dtype, atol):
    """The weight is computed in the model's dtype as auto-gptq computes it (scales cast first): bfloat16 logits
    equal 4.45.2's; float16 within one step of its rounding (measured 4.9e-4 at logits ~0.55)."""
    folder = gptq_checkpoint(folders["llama"], tmp_path / "gptq", 4, 32, False)
    ours, theirs = load_both(folder, dtype)
    with torch.no_grad():
        torch.testing.assert_close(ours(IDS).logits.float(), theirs(IDS).logits.float(), rtol=0, atol=atol)


def test_saves_a_plain_model_and_takes_4_45s_loading_config(folders, tmp_path):
    folder = gptq_checkpoint(folders["llama"], tmp_path / "gptq", 4, 32, False)
    ours = formers.AutoModelForCausalLM.from_pretrained(
        folder, quantization_config=formers.GPTQConfig(bits=4, use_exllama=False))  # as 4.45's GPTQ guide loads
    ours.save_pretrained(tmp_path / "plain")
    saved = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert "quantization_config" not in saved
    reloaded = formers.AutoModelForCausalLM.from_pretrained(tmp_path / "plain")
    with torch.no_grad():
        assert torch.equal(reloaded(IDS).logits, ours(IDS).logits)


def test_quantizing_with_gptq_is_refused(folders):
    with pytest.raises(ConfigError, match="GPTQConfig: .*calibrat.*GPTQ checkpoints"):
        formers.AutoModelForCausalLM.from_pretrained(
            folders["llama"], quantization_config=formers.GPTQConfig(bits=4, dataset="c4"))


def test_bad_checkpoints_are_named(folders, tmp_path):
    layer = "model.layers.0.self_attn.q_proj"
    cases = [
        (lambda s: s.pop(f"{layer}.g_idx"), None, rf"GPTQ layer {layer}: the checkpoint has \['qweight', 'qzeros', "
                                                  r"'scales'\] of"),
        (lambda s: s.update({f"{layer}.g_idx": s[f"{layer}.g_idx"] + 7}), None, rf"{layer}: g_idx names groups"),
        (lambda s: s.update({f"{layer}.scales": s[f"{layer}.scales"][:1]}), None, rf"{layer}: qweight .* do not fit"),
        (None, lambda q: q.update(bits=5), r"quantization_config \(GPTQ\) bits: expected one of \[2, 3, 4, 8\]"),
        (None, lambda q: q.update(checkpoint_format="gptq_v2"), r"checkpoint_format 'gptq_v2'"),
    ]
    plain = tmp_path / "plain"  # a config that says GPTQ over full-precision weights
    shutil.copytree(folders["llama"], plain)
    config = json.loads((plain / "config.json").read_text())
    (plain / "config.json").write_text(json.dumps({**config, "quantization_config": {"quant_method": "gptq",
                                                                                       "bits": 4}}))
    with pytest.raises(CheckpointError, match="says GPTQ, but the checkpoint holds no GPTQ layer"):
        formers.AutoModelForCausalLM.from_pretrained(plain)
    for index, (state_change, config_change, message) in enumerate(cases):
        folder = gptq_checkpoint(folders["llama"], tmp_path / f"bad{index}", 4, 32, False)
        edit_checkpoint(folder, state_change, config_change)
        with pytest.raises(CheckpointError, match=message):
            formers.AutoModelForCausalLM.from_pretrained(folder)


LAYERS_PER_BLOCK = {"llama": 7, "mixtral": 4 + 3 * 4, "phi": 6, "falcon": 6}  # quantized layers of one decoder layer


@pytest.mark.parametrize("family, bits, symmetric, scheme", [
    ("llama", 4, True, "q4_0"), ("llama", 4, False, "q8_0"), ("llama", 8, True, "q8_0"), ("llama", 3, False, "q8_0"),
    ("mixtral", 4, True, "q4_0"), ("phi", 4, True, "q4_0"),  # their key maps only rename these layers
    ("falcon", 4, True, "q4_0"), ("falcon", 4, False, "q8_0")])  # fused q/k/v: the blocks are split by rows
def test_kept_quantized_layers_are_exact_blocks(folders, tmp_path, family, bits, symmetric, scheme):
    """keep_quantized=True: each layer becomes the llama.cpp blocks that hold its weight exactly (symmetric 4-bit:
    Q4_0, d x (q - 8); otherwise Q8_0 with q = code - zero point), which formers' decoding kernels compute on;
    the logits stay within 1.5% of their range of the dequantized model's (the kernels round activations as
    llama.cpp does), the greedy tokens are the same (dense) but at near-ties within that bound (the random tiny
    Falcon has them), and the layers save and reload."""
    from formers.quantization import QuantizedLinear

    folder = gptq_checkpoint(folders[family], tmp_path / "gptq", bits, 32, False, symmetric=symmetric)
    dequantized = formers.AutoModelForCausalLM.from_pretrained(folder)
    kept = formers.AutoModelForCausalLM.from_pretrained(folder, keep_quantized=True)
    layers = [m for m in kept.modules() if isinstance(m, QuantizedLinear)]
    assert len(layers) == LAYERS_PER_BLOCK[family] * 2 and {m.scheme for m in layers} == {scheme}
    with torch.no_grad():
        for name, module in kept.named_modules():  # the blocks hold the checkpoint's weights exactly
            if isinstance(module, QuantizedLinear):
                assert torch.equal(module.dequantized_weight(), dequantized.get_submodule(name).weight), name
        expected, got = dequantized(IDS).logits, kept(IDS).logits
    span = float(expected.max() - expected.min())
    print(f"{scheme} kept vs dequantized: max |delta logits| {float((got - expected).abs().max()):.3g} "
          f"(range {span:.3g})")
    assert float((got - expected).abs().max()) <= 0.015 * span
    if family != "mixtral":  # (the random Mixtral's router has two experts 0.0023 apart at the 5th new token, which
        # the kept model's rounding swaps: the tokens part there, with the experts)
        assert_greedy_equal_but_near_ties(kept, dequantized, IDS[:1], 8, 0.015 * span)
    kept.save_pretrained(tmp_path / "saved")
    reloaded = formers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    with torch.no_grad():
        assert torch.equal(reloaded(IDS).logits, got)


def test_kept_quantized_leaves_act_order_dequantized(folders, tmp_path):
    from formers.quantization import QuantizedLinear

    act_order = gptq_checkpoint(folders["llama"], tmp_path / "act", 4, 32, True)  # groups no block layout holds
    model = formers.AutoModelForCausalLM.from_pretrained(act_order, keep_quantized=True)
    assert not any(isinstance(m, QuantizedLinear) for m in model.modules())


def test_zero_biases_of_older_auto_gptq_and_the_default_dtype(folders, tmp_path):
    """Checkpoints from older auto-gptq carry a zero `bias` for every layer of a bias-free family: ignored, as 4.45
    ignores them. 4.45 loads GPTQ in float16 when no torch_dtype is given; formers keeps float32 (CPUs compute
    float16 slowly; README, "differs on purpose"), and torch_dtype=torch.float16 gives 4.45's default model."""
    import transformers

    folder = gptq_checkpoint(folders["llama"], tmp_path / "gptq", 4, 32, False, symmetric=True)
    edit_checkpoint(folder, state_change=lambda s: s.update({key.replace(".qweight", ".bias"): torch.zeros(
        value.shape[1], dtype=torch.float16) for key, value in list(s.items()) if key.endswith(".qweight")}))
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, device_map="cpu")
    assert theirs.dtype == torch.float16
    ours = formers.AutoModelForCausalLM.from_pretrained(folder)
    assert ours.dtype == torch.float32
    half = formers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float16)
    with torch.no_grad():
        torch.testing.assert_close(half(IDS).logits, theirs(IDS).logits, rtol=0, atol=1e-3)
