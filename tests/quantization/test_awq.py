"""AWQ checkpoints (AutoAWQ's "gemm" layout) read without autoawq (formers/quantization/awq.py).

The reference is AutoAWQ's own unpacking, `awq.utils.packing_utils.dequantize_gemm` (the test extra installs
autoawq 0.2.7.post3; the file is loaded by itself, its package's import being a GPU library's): formers' weights
equal its numbers, and formers' logits equal transformers 4.45.2 running a plain model of those weights. 4.45.2
itself loads AWQ only on a GPU, and autoawq 0.2.7.post3's CPU fallback stops in an UnboundLocalError, so 4.45.2 +
autoawq cannot be run here. Each checkpoint is written here from random codes, zero points and float16 scales of a
tiny model's block layers: what the folder means is what AutoAWQ computes from it, however its bits were chosen."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import formers
from formers.errors import CheckpointError, ConfigError
from tests.conftest import build_oracle_checkpoint
from tests.models.cases.falcon import FALCON_BASE
from tests.quantization.awq_writer import awq_checkpoint
from tests.quantization.edits import edit_checkpoint
from tests.quantization.greedy import assert_greedy_equal_but_near_ties

if importlib.util.find_spec("awq") is None:
    pytest.skip("autoawq is not installed (it comes with the test extra)", allow_module_level=True)
_spec = importlib.util.spec_from_file_location(
    "awq_packing_utils", Path(importlib.util.find_spec("awq").submodule_search_locations[0]) / "utils/packing_utils.py")
packing_utils = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(packing_utils)

IDS = torch.tensor([[1, 5, 9, 33, 7, 64, 3], [1, 90, 12, 4, 77, 21, 50]])
FAMILIES = {
    "llama": (None, dict(tie_word_embeddings=False, intermediate_size=128)),
    "qwen2": (None, dict(tie_word_embeddings=False, intermediate_size=128)),  # q/k/v biases
    "mixtral": (None, dict(tie_word_embeddings=False, intermediate_size=64, num_local_experts=4,
                           num_experts_per_tok=2)),  # experts quantized one by one, the router left in full precision
    "phi": (None, dict(intermediate_size=128)),  # checkpoint names formers renames (dense, fc1, fc2)
    "falcon": (FALCON_BASE, {}),  # query_key_value quantized as one layer: formers' key map splits its weight
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {family: build_oracle_checkpoint(tmp_path_factory.mktemp(family), family, base=base, **overrides)
            for family, (base, overrides) in FAMILIES.items()}


def reference_weights(folder: Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Each AWQ layer's weight [out, in] as AutoAWQ's dequantize_gemm computes it, from scales in `dtype` (float16:
    its own computation; float32: the exact products)."""
    state = load_file(folder / "model.safetensors")
    group_size = json.loads((folder / "config.json").read_text())["quantization_config"]["group_size"]
    return {f"{layer}.weight": packing_utils.dequantize_gemm(state[f"{layer}.qweight"], state[f"{layer}.qzeros"],
                                                             state[f"{layer}.scales"].to(dtype), 4, group_size).t()
            for layer in (key[:-len(".qweight")] for key in state if key.endswith(".qweight"))}


def reference_model(folder: Path, out: Path):
    """transformers 4.45.2's plain model of AutoAWQ's float32 weights of `folder`."""
    import transformers

    state = {key: value for key, value in load_file(folder / "model.safetensors").items()
             if not key.endswith((".qweight", ".qzeros", ".scales"))}
    state = {key: value.float().contiguous()
             for key, value in {**state, **reference_weights(folder, torch.float32)}.items()}
    shutil.copytree(folder, out)
    save_file(state, out / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((out / "config.json").read_text())
    del config["quantization_config"]
    (out / "config.json").write_text(json.dumps(config))
    return transformers.AutoModelForCausalLM.from_pretrained(out)


@pytest.mark.parametrize("family, group_size", [("llama", 32), ("llama", 64), ("qwen2", 32), ("mixtral", 32),
                                                 ("phi", 32), ("falcon", 16)])
def test_logits_and_tokens_equal_4_45_on_autoawqs_weights(folders, tmp_path, family, group_size):
    folder = awq_checkpoint(folders[family], tmp_path / "awq", group_size)
    ours, theirs = formers.AutoModelForCausalLM.from_pretrained(folder), reference_model(folder, tmp_path / "ref")
    assert ours.dtype == torch.float32  # as for GPTQ (4.45 switches AWQ to float16)
    with torch.no_grad():
        got, want = ours(IDS).logits, theirs(IDS).logits
    print(f"{family}: max |delta logits| {float((got - want).abs().max()):.3g}")
    torch.testing.assert_close(got, want, rtol=0, atol=2e-6)
    greedy = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(IDS[:1], **greedy), theirs.generate(IDS[:1], **greedy))
    assert not hasattr(ours.config, "quantization_config")  # dequantized at load: a plain model from here on


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_weights_are_autoawqs(folders, tmp_path, dtype):
    """float16: AutoAWQ's own numbers bit for bit (it computes the weight in float16); float32: the exact products."""
    folder = awq_checkpoint(folders["llama"], tmp_path / "awq", 32)
    ours = formers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype)
    expected = reference_weights(folder, dtype)
    assert len(expected) == 2 * 7
    for name, weight in expected.items():
        assert torch.equal(ours.get_parameter(name), weight), name


@pytest.mark.parametrize("family, layers_per_block", [("llama", 7), ("falcon", 6)])  # Falcon: fused q/k/v split
def test_kept_quantized_layers_are_exact_q8_0_blocks(folders, tmp_path, family, layers_per_block):
    """keep_quantized=True: each layer becomes Q8_0 blocks with q = code - zero point and d = the group's scale,
    which hold its weight exactly; logits within 2% of their range of the dequantized model's (measured 1.6%: the
    kernels round activations to 8 bits per block of 32 as llama.cpp does), the same greedy tokens but at near-ties
    within that bound; the layers save and reload."""
    from formers.quantization import QuantizedLinear

    folder = awq_checkpoint(folders[family], tmp_path / "awq", 32)
    dequantized = formers.AutoModelForCausalLM.from_pretrained(folder)
    kept = formers.AutoModelForCausalLM.from_pretrained(folder, keep_quantized=True)
    layers = {name: m for name, m in kept.named_modules() if isinstance(m, QuantizedLinear)}
    assert len(layers) == 2 * layers_per_block and {m.scheme for m in layers.values()} == {"q8_0"}
    with torch.no_grad():
        for name, module in layers.items():
            assert torch.equal(module.dequantized_weight(), dequantized.get_submodule(name).weight), name
        expected, got = dequantized(IDS).logits, kept(IDS).logits
    span = float(expected.max() - expected.min())
    print(f"q8_0 kept vs dequantized: max |delta logits| {float((got - expected).abs().max()):.3g} (range {span:.3g})")
    assert float((got - expected).abs().max()) <= 0.02 * span
    assert_greedy_equal_but_near_ties(kept, dequantized, IDS[:1], 8, 0.02 * span)
    kept.save_pretrained(tmp_path / "saved")
    with torch.no_grad():
        assert torch.equal(formers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")(IDS).logits, got)


def test_takes_4_45s_loading_config_and_refuses_quantizing(folders, tmp_path):
    folder = awq_checkpoint(folders["llama"], tmp_path / "awq", 32, version="GEMM")  # as AutoAWQ spells it
    as_4_45_docs = formers.AwqConfig(bits=4, fuse_max_seq_len=512, do_fuse=True)  # 4.45's AWQ guide: fused modules
    ours = formers.AutoModelForCausalLM.from_pretrained(folder, quantization_config=as_4_45_docs)
    plain = formers.AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        assert torch.equal(ours(IDS).logits, plain(IDS).logits)
    for refused in (formers.AwqConfig(), formers.AwqConfig().to_dict()):  # (a config.json's dict names it too)
        with pytest.raises(ConfigError, match="AwqConfig: .*calibration.*AWQ checkpoints"):
            formers.AutoModelForCausalLM.from_pretrained(folders["llama"], quantization_config=refused)


def test_bad_checkpoints_are_named(folders, tmp_path):
    layer = "model.layers.0.mlp.down_proj"
    cases = [
        (lambda s: s.pop(f"{layer}.qzeros"), None, rf"AWQ layer {layer}: the checkpoint has \['qweight', 'scales'\]"),
        (lambda s: s.update({f"{layer}.scales": s[f"{layer}.scales"][:1]}), None, rf"{layer}: qweight.* do not fit"),
        (lambda s: s.update({f"{layer}.qweight": s[f"{layer}.qweight"][:40]}), None,
         rf"{layer}: qweight has 40 inputs, no multiple of group_size 32"),
        (None, lambda q: q.update(bits=8), r"quantization_config \(AWQ\) bits: expected 4"),
        (None, lambda q: q.update(version="gemv"), r"version 'gemv'"),
        (None, lambda q: q.update(backend="llm-awq"), r"backend 'llm-awq'"),
        (None, lambda q: q.update(zero_point=False), r"zero_point false"),
    ]
    for index, (state_change, config_change, message) in enumerate(cases):
        folder = awq_checkpoint(folders["llama"], tmp_path / f"bad{index}", 32)
        edit_checkpoint(folder, state_change, config_change)
        with pytest.raises(CheckpointError, match=message):
            formers.AutoModelForCausalLM.from_pretrained(folder)
    plain = tmp_path / "plain"  # a config that says AWQ over full-precision weights
    shutil.copytree(folders["llama"], plain)
    config = json.loads((plain / "config.json").read_text())
    (plain / "config.json").write_text(json.dumps({**config, "quantization_config": {"quant_method": "awq"}}))
    with pytest.raises(CheckpointError, match="says AWQ, but the checkpoint holds no AWQ layer"):
        formers.AutoModelForCausalLM.from_pretrained(plain)
