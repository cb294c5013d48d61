"""Loading GGUF files: logits against the safetensors model and against transformers 4.45.2 loading the
same file; configs, the tied stories260K head, and errors for bad files."""
from __future__ import annotations

import shutil
import struct

import gguf
import numpy as np
import pytest
import torch
import transformers

import formers
from formers.errors import CheckpointError

from .conftest import IDS, gguf_of


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_f32_file_equals_safetensors_model(family, llama_dir, qwen2_dir):
    folder = {"llama": llama_dir, "qwen2": qwen2_dir}[family]
    file = gguf_of(folder, "F32", arch=family)
    ours = formers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=file)
    assert type(ours).__name__ == {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}[family]
    assert not ours.config.tie_word_embeddings
    reference = formers.AutoModelForCausalLM.from_pretrained(folder)
    torch.testing.assert_close(logits(ours), logits(reference), rtol=0, atol=1e-5)


@pytest.mark.parametrize("qtype", ["F16", "Q8_0", "Q5_0", "Q3_K", "Q5_K"])  # every type: test_dequant.py
def test_parity_with_transformers_445(qtype, llama_dir):
    """Same file, same dequantized weights (Q/K rows un-permuted alike): same logits."""
    file = gguf_of(llama_dir, qtype)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(llama_dir, gguf_file=file)
    ours = formers.AutoModelForCausalLM.from_pretrained(llama_dir, gguf_file=file)
    torch.testing.assert_close(logits(ours), logits(theirs), rtol=0, atol=1e-5)


@pytest.mark.parametrize("qtype", ["IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_NL",
                                   "IQ4_XS"])
def test_importance_matrix_types_with_transformers_445(qtype, llama_dir):
    """The IQ types 4.45 lists (random blocks: the gguf package has no quantizer for them)."""
    file = gguf_of(llama_dir, qtype)
    reader = gguf.GGUFReader(llama_dir / file)
    assert {t.tensor_type.name for t in reader.tensors} == {"F32", qtype}
    theirs = transformers.AutoModelForCausalLM.from_pretrained(llama_dir, gguf_file=file)
    ours = formers.AutoModelForCausalLM.from_pretrained(llama_dir, gguf_file=file)
    got = logits(ours)
    assert bool(torch.isfinite(got).all()) and float(got.std()) > 1e-3
    # (random IQ4_XS blocks give logits in the hundreds: the bound is relative to their size)
    torch.testing.assert_close(got, logits(theirs), rtol=0, atol=1e-5 * max(1.0, float(got.abs().max())))
    greedy = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(IDS[:1], **greedy), theirs.generate(IDS[:1], **greedy))


@pytest.mark.parametrize("family,arch", [("qwen2", "qwen2"), ("mistral", "llama")])
def test_parity_other_families(family, arch, qwen2_dir, mistral_dir):
    folder = {"qwen2": qwen2_dir, "mistral": mistral_dir}[family]
    file = gguf_of(folder, "Q4_1", arch=arch, name=family)  # general.name "mistral" selects the family
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=file)
    ours = formers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=file)
    assert ours.config.model_type == theirs.config.model_type == family
    torch.testing.assert_close(logits(ours), logits(theirs), rtol=0, atol=1e-5)


def test_llama3_rope_scaling_from_rope_freqs(tmp_path):
    """Llama 3.1-style files: the rope scaling is recovered from llama.cpp's rope_freqs tensor."""
    from tests.conftest import STORIES, build_oracle_checkpoint

    from .conftest import UNTIED
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}
    build_oracle_checkpoint(tmp_path, "llama", base=UNTIED, rope_scaling=scaling)
    shutil.copy(STORIES / "tokenizer.model", tmp_path)
    file = gguf_of(tmp_path, "F32")
    ours = formers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=file)
    assert ours.config.rope_scaling == scaling
    reference = formers.AutoModelForCausalLM.from_pretrained(tmp_path)
    torch.testing.assert_close(logits(ours), logits(reference), rtol=0, atol=1e-5)


def test_weights_equal_reference_dequantization(llama_dir):
    """Every tensor equals gguf.quants.dequantize of the stored data, with Q/K rows back in HF order."""
    file = gguf_of(llama_dir, "Q4_K")
    model = formers.LlamaForCausalLM.from_pretrained(llama_dir, gguf_file=file)
    reader = gguf.GGUFReader(llama_dir / file)
    state = model.state_dict()
    stored = {t.name: gguf.quants.dequantize(t.data, t.tensor_type) for t in reader.tensors}
    expected = torch.from_numpy(stored["blk.1.attn_k.weight"])
    expected = expected.reshape(2, 32, 2, 256).transpose(1, 2).reshape(128, 256)  # undo llama.cpp's interleave
    torch.testing.assert_close(state["model.layers.1.self_attn.k_proj.weight"], expected, rtol=0, atol=0)
    torch.testing.assert_close(state["model.layers.0.mlp.down_proj.weight"],
                               torch.from_numpy(stored["blk.0.ffn_down.weight"]), rtol=0, atol=0)


def test_tied_head_stories260k(stories_dir, stories_gguf):
    """stories260K has no output.weight: 4.45.2 leaves lm_head uninitialised; formers ties it, so its logits
    equal the safetensors model's (and 4.45.2's are off)."""
    file = stories_gguf("F32")
    ours = formers.AutoModelForCausalLM.from_pretrained(stories_dir, gguf_file=file)
    assert ours.config.tie_word_embeddings
    assert ours.lm_head.weight.data_ptr() == ours.model.embed_tokens.weight.data_ptr()
    reference = formers.AutoModelForCausalLM.from_pretrained(stories_dir)
    torch.testing.assert_close(logits(ours), logits(reference), rtol=0, atol=1e-5)
    torch.manual_seed(0)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(stories_dir, gguf_file=file)
    assert (logits(theirs) - logits(reference)).abs().max() > 1.0


def test_auto_config_and_dtype(llama_dir):
    file = gguf_of(llama_dir, "Q8_0")
    ours = formers.AutoConfig.from_pretrained(llama_dir, gguf_file=file)
    theirs = transformers.AutoConfig.from_pretrained(llama_dir, gguf_file=file)
    for field in ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "vocab_size",
                  "max_position_embeddings", "bos_token_id", "eos_token_id"):
        assert getattr(ours, field) == getattr(theirs, field), field
    model = formers.AutoModelForCausalLM.from_pretrained(llama_dir, gguf_file=file, torch_dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16


# --- bad files ------------------------------------------------------------------------------------------------
def _tiny_file(path, arch="llama", tensor_type=gguf.GGMLQuantizationType.F32):
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32), raw_dtype=tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_wrong_magic(tmp_path):
    path = _tiny_file(tmp_path / "x.gguf")
    data = bytearray(path.read_bytes())
    data[:4] = b"GGUX"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"x\.gguf.*not a GGUF file.*GGUX"):
        formers.AutoConfig.from_pretrained(tmp_path, gguf_file="x.gguf")


def test_truncated(tmp_path):
    path = _tiny_file(tmp_path / "t.gguf")
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CheckpointError, match=r"t\.gguf.*truncated"):
        formers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="t.gguf")


def test_unknown_tensor_type(tmp_path):
    path = _tiny_file(tmp_path / "u.gguf")
    data = bytearray(path.read_bytes())
    name = b"token_embd.weight"
    at = data.index(name) + len(name) + 4 + 2 * 8  # after n_dims (u32) and two dims (u64): the type (u32)
    assert struct.unpack_from("<I", data, at)[0] == 0
    struct.pack_into("<I", data, at, 250)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"u\.gguf.*unknown ggml type"):
        formers.AutoConfig.from_pretrained(tmp_path, gguf_file="u.gguf")


def test_unsupported_tensor_type(tmp_path):
    path = _tiny_file(tmp_path / "i.gguf", tensor_type=gguf.GGMLQuantizationType.I32)
    with pytest.raises(CheckpointError, match=r"'token_embd.weight' has ggml type I32"):
        formers.LlamaForCausalLM.from_pretrained(tmp_path, gguf_file="i.gguf")


def test_unknown_architecture(tmp_path):
    _tiny_file(tmp_path / "a.gguf", arch="rwkv6")
    with pytest.raises(CheckpointError, match=r"a\.gguf.*architecture 'rwkv6' is not supported"):
        formers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="a.gguf")


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.gguf"):
        formers.AutoConfig.from_pretrained(tmp_path, gguf_file="nope.gguf")
