"""bitsandbytes layers of families whose checkpoints fuse, transpose or rename projections (GPT-2: q/k/v fused in a
transposed Conv1D; Bloom, GPT-NeoX: q/k/v fused head by head; Falcon: multi-query q/k/v end to end; Phi: renamed),
saved and loaded in 4.45's layout: one bitsandbytes state per checkpoint layer, in nn.Linear's orientation. The
reference is the one of test_bitsandbytes.py: 4.45.2's model with the package's layers put in by hand."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import formers
from formers.errors import CheckpointError
from tests.conftest import build_oracle_checkpoint
from tests.quantization.test_bitsandbytes import IDS, SETTINGS, reference, same_bits

bnb = pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed (it comes with the test extra)")

FAMILIES = {  # (base config, overrides): inputs of every quantized layer a multiple of 64 (bitsandbytes' 4-bit blocks)
    "gpt2": (dict(n_embd=64, n_layer=2, n_head=4, vocab_size=128, n_positions=64), {}),
    "bloom": (dict(hidden_size=64, n_layer=2, n_head=4, vocab_size=128), {}),
    # k and v of 32 rows: on AVX512_BF16 bitsandbytes' 4-bit forward needs a multiple of 32 (formers' separate k, v)
    "falcon": (dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=128), {}),
    "gpt_neox": (dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                      vocab_size=128), {}),
    "phi": (None, dict(intermediate_size=128)),
}
CASES = [(family, name) for family in FAMILIES for name in sorted(SETTINGS)]
DOUBLE = "fp4-double"  # its second quantization is re-derived for a joined layer (module doc of
# formers/quantization/bitsandbytes_layout.py): a block scale moves by up to one step of it


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folders = {}
    for family, (base, overrides) in FAMILIES.items():
        folders[family] = build_oracle_checkpoint(tmp_path_factory.mktemp(family), family, base=base, **overrides)
    return folders


def _block_scales(state: dict, layer: str) -> torch.Tensor:
    """A saved 4-bit layer's block scales, the second quantization undone."""
    parts = {key[len(layer) + len(".weight."):]: value for key, value in state.items()
             if key.startswith(layer + ".weight.")}
    quant_state = bnb.functional.QuantState.from_dict(parts, device=torch.device("cpu"))
    if not quant_state.nested:
        return quant_state.absmax
    return bnb.functional.dequantize_blockwise(quant_state.absmax, quant_state.state2) + quant_state.offset


@pytest.mark.parametrize("family,name", CASES)
def test_saved_as_4_45_saves_them(checkpoints, family, name, tmp_path):
    """formers' save equals the reference's (4.45.2's save_pretrained) key for key: the fused checkpoint layer's rows
    are the parts' rows (bit for bit: weights, int8 row scales, 4-bit block scales), its quant_state names the fused
    shape; with double quantization the block scales agree within one step of the second quantization. The saved
    folder reloads into the model's logits."""
    settings = SETTINGS[name]
    ours = formers.AutoModelForCausalLM.from_pretrained(
        checkpoints[family], quantization_config=formers.BitsAndBytesConfig(**settings))
    ours.save_pretrained(tmp_path / "saved")
    saved = load_file(tmp_path / "saved" / "model.safetensors")
    reference(checkpoints[family], settings).save_pretrained(tmp_path / "reference")
    expected = load_file(tmp_path / "reference" / "model.safetensors")
    assert saved.keys() == expected.keys()
    scale_keys = [key for key in saved if key.endswith((".absmax", ".nested_absmax", ".nested_quant_map"))
                        or ".quant_state." in key]
    for key in saved:
        if name == DOUBLE and key in scale_keys:
            continue
        assert same_bits(saved[key], expected[key]), key
    if name == DOUBLE:
        layers = {key.split(".weight.")[0] for key in scale_keys}
        for layer in layers:
            ours_scales, their_scales = _block_scales(saved, layer), _block_scales(expected, layer)
            step = their_scales.abs().max() / 127  # the second quantization's coarsest step (8-bit dynamic code)
            assert float((ours_scales - their_scales).abs().max()) <= step, layer
            ours_meta = bnb.utils.unpack_tensor_to_dict(saved[f"{layer}.weight.quant_state.bitsandbytes__fp4"])
            their_meta = bnb.utils.unpack_tensor_to_dict(expected[f"{layer}.weight.quant_state.bitsandbytes__fp4"])
            assert ours_meta.pop("nested_offset") == pytest.approx(their_meta.pop("nested_offset"), rel=1e-2)
            assert ours_meta == their_meta
    with torch.no_grad():
        got = ours(IDS).logits
        again = formers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")(IDS).logits
    if name == DOUBLE:  # the joined layer's second quantization is not the parts' (measured up to 3.7e-3, Falcon)
        torch.testing.assert_close(again, got, rtol=0, atol=1e-2)
    else:
        assert torch.equal(again, got)


@pytest.mark.parametrize("family,name", CASES)
def test_folder_saved_by_4_45_loads(checkpoints, family, name, tmp_path):
    """The reference's save_pretrained (4.45's layout and quantization_config) loads into formers' separate layers
    with the reference's logits and greedy tokens (double quantization too: a layer split from a fused one keeps the
    fused layer's block scales as it computes with them), and saves back into that layout."""
    import transformers

    settings = SETTINGS[name]
    theirs = reference(checkpoints[family], settings)
    theirs.save_pretrained(tmp_path / "saved")
    config_file = tmp_path / "saved" / "config.json"
    config = json.loads(config_file.read_text())
    config["quantization_config"] = transformers.BitsAndBytesConfig(**settings).to_dict()
    config_file.write_text(json.dumps(config))
    ours = formers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    expected_type = bnb.nn.Linear8bitLt if settings.get("load_in_8bit") else bnb.nn.Linear4bit
    assert type(ours.model.layers[1].self_attn.o_proj) is expected_type
    with torch.no_grad():
        got, want = ours(IDS).logits, theirs(IDS).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    greedy = dict(max_new_tokens=8, do_sample=False)
    assert torch.equal(ours.generate(IDS[:1], **greedy), theirs.generate(IDS[:1], **greedy))
    ours.save_pretrained(tmp_path / "again")  # the same layout again (double quantization re-derived where joined)
    assert load_file(tmp_path / "again" / "model.safetensors").keys() == load_file(
        tmp_path / "saved" / "model.safetensors").keys()
    with torch.no_grad():
        again = formers.AutoModelForCausalLM.from_pretrained(tmp_path / "again")(IDS).logits
    torch.testing.assert_close(again, got, rtol=0, atol=1e-2 if name == DOUBLE else 0)


def test_a_fused_layer_quantized_in_part_is_refused(checkpoints, tmp_path):
    """q quantized but k and v kept in full precision cannot be one checkpoint tensor: the save names the problem
    and writes nothing."""
    model = formers.AutoModelForCausalLM.from_pretrained(
        checkpoints["gpt2"], quantization_config=formers.BitsAndBytesConfig(
            load_in_8bit=True, llm_int8_skip_modules=["lm_head", "k_proj", "v_proj"]))
    with pytest.raises(CheckpointError, match="quantize all of its parts or none"):
        model.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved").exists()
