"""model.dequantize() (4.45's PreTrainedModel API): quantized linear layers back to full-precision ones.

The oracle for bitsandbytes is 4.45.2's own `dequantize_and_replace` applied to the reference model of
test_bitsandbytes.py (4.45.2 with the package's layers put in by hand: its from_pretrained stops on this machine)."""
from __future__ import annotations

import pytest
import torch

import formers
from formers.modeling.layers import Linear
from tests.conftest import build_oracle_checkpoint
from tests.quantization.test_bitsandbytes import IDS, reference

bnb = pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed (it comes with the test extra)")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_oracle_checkpoint(tmp_path_factory.mktemp("dequantize"), "llama", tie_word_embeddings=False,
                                   intermediate_size=128)


def _linears(model) -> dict[str, torch.Tensor]:
    return {name: module.weight for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}


@pytest.mark.parametrize("settings", [dict(load_in_4bit=True, bnb_4bit_quant_type="nf4"),
                                      dict(load_in_4bit=True, bnb_4bit_use_double_quant=True)],
                         ids=["nf4", "fp4-double"])
def test_4bit_layers_dequantize_as_4_45_does(checkpoint, settings, tmp_path):
    """Every Linear4bit becomes a plain linear layer whose weight equals 4.45.2's dequantization of the same layer,
    bit for bit, and so do the logits; the config no longer records a quantization, so the saved folder is a
    full-precision model with those logits."""
    import transformers
    from transformers.integrations.bitsandbytes import dequantize_and_replace

    ours = formers.AutoModelForCausalLM.from_pretrained(
        checkpoint, quantization_config=formers.BitsAndBytesConfig(**settings))
    assert ours.is_quantized and ours.quantization_method == "bitsandbytes"  # the attributes 4.45 sets
    assert ours.is_loaded_in_4bit and not ours.is_loaded_in_8bit
    assert ours.dequantize() is ours
    assert not ours.is_quantized and not ours.is_loaded_in_4bit
    theirs = dequantize_and_replace(reference(checkpoint, settings), ["lm_head"],
                                    quantization_config=transformers.BitsAndBytesConfig(**settings))
    assert type(ours.model.layers[0].self_attn.q_proj) is Linear
    assert not any("bitsandbytes" in type(m).__module__ for m in ours.modules())
    mine, want = _linears(ours), _linears(theirs)
    assert mine.keys() == want.keys()
    assert all(torch.equal(mine[name], want[name]) for name in mine)
    with torch.no_grad():
        got = ours(IDS).logits
        torch.testing.assert_close(got, theirs(IDS).logits, rtol=0, atol=1e-6)
    assert getattr(ours.config, "quantization_config", None) is None
    ours.save_pretrained(tmp_path / "saved")
    reloaded = formers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert reloaded.model.layers[1].mlp.down_proj.weight.dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(reloaded(IDS).logits, got)


def test_8bit_layers_dequantize_on_a_cpu(checkpoint):
    """4.45.2 stops on an 8-bit layer here (its dequantization calls bitsandbytes' CUDA-only functions, gone from the
    CPU package); formers gives each weight as bitsandbytes defines it, int8 x row scale / 127, and the model then
    computes close to the quantized one (which also rounds its inputs to int8)."""
    import transformers
    from transformers.integrations.bitsandbytes import dequantize_and_replace

    with pytest.raises(AttributeError, match="double_quant"):
        dequantize_and_replace(reference(checkpoint, dict(load_in_8bit=True)), ["lm_head"],
                               quantization_config=transformers.BitsAndBytesConfig(load_in_8bit=True))
    ours = formers.AutoModelForCausalLM.from_pretrained(
        checkpoint, quantization_config=formers.BitsAndBytesConfig(load_in_8bit=True))
    assert ours.is_loaded_in_8bit and not ours.is_loaded_in_4bit
    layer = ours.model.layers[0].mlp.up_proj
    expected = layer.weight.data.float() * layer.weight.SCB.float()[:, None] / 127
    with torch.no_grad():
        before = ours(IDS).logits
        ours.dequantize()
        after = ours(IDS).logits
    assert torch.allclose(ours.model.layers[0].mlp.up_proj.weight, expected, rtol=1e-6, atol=0)
    full = formers.AutoModelForCausalLM.from_pretrained(checkpoint)
    assert float((ours.model.layers[0].mlp.up_proj.weight - full.model.layers[0].mlp.up_proj.weight).abs().max()) < (
        float(full.model.layers[0].mlp.up_proj.weight.abs().max()) / 127)  # within one int8 step of the original
    torch.testing.assert_close(after, before, rtol=0, atol=1e-2)


def test_formers_own_layers_dequantize(checkpoint):
    """TorchAoConfig's int8 layers (4.45 has no dequantize for torchao; formers does): each becomes a plain layer
    holding its dequantized weight, and the logits stay those of the quantized model within float32 rounding."""
    ours = formers.AutoModelForCausalLM.from_pretrained(
        checkpoint, quantization_config=formers.TorchAoConfig("int8_weight_only"))
    assert ours.is_quantized and ours.quantization_method == "torchao"
    expected = ours.model.layers[1].self_attn.o_proj.dequantized_weight()
    with torch.no_grad():
        before = ours(IDS).logits
        ours.dequantize()
        after = ours(IDS).logits
    assert type(ours.model.layers[1].self_attn.o_proj) is Linear
    assert torch.equal(ours.model.layers[1].self_attn.o_proj.weight, expected)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)


def test_what_cannot_be_dequantized_is_named(checkpoint):
    full = formers.AutoModelForCausalLM.from_pretrained(checkpoint)
    with pytest.raises(ValueError, match="You need to first quantize your model in order to dequantize it"):
        full.dequantize()
    pytest.importorskip("quanto", reason="quanto is not installed (it comes with the test extra)")
    quantized = formers.AutoModelForCausalLM.from_pretrained(checkpoint,
                                                            quantization_config=formers.QuantoConfig(weights="int8"))
    with pytest.raises(NotImplementedError, match="quanto has no implementation of `dequantize`"):
        quantized.dequantize()


@pytest.mark.parametrize("tied", [False, True])
def test_gguf_blocks_kept_quantized_dequantize(tmp_path, tied):
    """A Q8_0 GGUF file kept quantized (layers and embedding in the file's blocks): dequantize() gives the model that
    loading the file dequantized gives, layer for layer and logit for logit, its tied head tied to the table again."""
    import shutil

    from tests.conftest import STORIES
    from tests.gguf.conftest import UNTIED, gguf_of

    build_oracle_checkpoint(tmp_path, "llama", base={**UNTIED, "tie_word_embeddings": tied})
    shutil.copy(STORIES / "tokenizer.model", tmp_path)
    file = gguf_of(tmp_path, "Q8_0")
    kept = formers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=file, keep_quantized=True)
    assert kept.is_quantized and type(kept.model.embed_tokens).__name__ == "QuantizedEmbedding"
    kept.dequantize()
    plain = formers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=file)
    assert not any("Quantized" in type(m).__name__ for m in kept.modules())
    ours, theirs = kept.state_dict(), plain.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert (kept.lm_head.weight is kept.model.embed_tokens.weight) == tied
    with torch.no_grad():
        assert torch.equal(kept(IDS).logits, plain(IDS).logits)
