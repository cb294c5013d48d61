"""Families transformers 4.45 does not load from GGUF (T5 at the end of the file; Gemma, Gemma2, Phi3, Starcoder2,
StableLM, GPT-2, Granite, GraniteMoE, DBRX, OLMo, OLMoE, Cohere, Nemotron, Phi, GPTBigCode, GPT-NeoX, Bloom, Falcon,
Mamba, Falcon-Mamba, Mamba2, Jamba): an F32 file written as llama.cpp writes these architectures gives the logits of the
safetensors model (rows and norms mapped back: Gemma's and Nemotron's 1 + w norms, Phi3's fused qkv / gate_up,
Starcoder2's and StableLM's biases and LayerNorms, the partial rotary of StableLM, Nemotron, Phi and GPT-NeoX, GPT-2's
Conv1D layout and position embeddings, Granite's four multipliers, GraniteMoE's experts split in gate and up halves,
DBRX's sectioned config and stacked experts, OLMo's qkv clamp, OLMoE's stacked experts and q/k norms, Cohere's logit
scale and q/k norms, Bloom's, Falcon's and GPT-NeoX's regrouped fused qkv, Mamba's -exp(A_log) and squeezed conv
weight, Falcon-Mamba's mark, Mamba2's [heads, 1] A and D, dt bias and grouped norm weight, Jamba's layer kinds
read from the tensors present)."""
from __future__ import annotations

import shutil

import pytest
import torch

import formers
from tests.conftest import STORIES, build_oracle_checkpoint

from .conftest import IDS, UNTIED, gguf_of

FAMILIES = {
    "gemma": dict(head_dim=64, tie_word_embeddings=True),
    "gemma2": dict(head_dim=64, tie_word_embeddings=True, sliding_window=4, query_pre_attn_scalar=64),
    "phi3": dict(pad_token_id=0),
    "starcoder2": dict(),
    "stablelm": dict(use_qkv_bias=True, partial_rotary_factor=0.5),
    "gpt2": dict(vocab_size=512, n_embd=64, n_layer=2, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=2),
    "granite": dict(attention_multiplier=0.3, embedding_multiplier=6.0, residual_multiplier=0.5, logits_scaling=4.0),
    "olmo": dict(clip_qkv=0.5),
    "granitemoe": dict(attention_multiplier=0.3, embedding_multiplier=6.0, residual_multiplier=0.5,
                       logits_scaling=4.0, num_local_experts=4, num_experts_per_tok=2),
    "olmoe": dict(num_experts=4, num_experts_per_tok=2, intermediate_size=128),
    "phi": dict(partial_rotary_factor=0.5, num_key_value_heads=None, intermediate_size=4 * UNTIED["hidden_size"]),
    "nemotron": dict(partial_rotary_factor=0.5, num_key_value_heads=2, attention_bias=True),
    "cohere": dict(logit_scale=0.25, use_qk_norm=True, tie_word_embeddings=True),
    "gpt_bigcode": dict(vocab_size=512, n_embd=64, n_layer=2, n_head=4, n_positions=64, multi_query=True),
    "gpt_neox": dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     rotary_pct=0.5, use_parallel_residual=False, max_position_embeddings=64,
                     tie_word_embeddings=False),
    "mamba": dict(vocab_size=512, hidden_size=64, state_size=8, num_hidden_layers=2, expand=2, conv_kernel=4,
                  time_step_rank=8, use_conv_bias=True, use_bias=False),
    "falcon_mamba": dict(vocab_size=512, hidden_size=64, state_size=8, num_hidden_layers=2, expand=2, conv_kernel=4,
                         time_step_rank=8, use_conv_bias=True, use_bias=False, mixer_rms_eps=1e-6),
    "jamba": dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, attn_layer_period=2,
                  attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=0, mamba_d_state=8, mamba_dt_rank=8,
                  use_mamba_kernels=False, tie_word_embeddings=False),
    "mamba2": dict(vocab_size=512, hidden_size=64, state_size=16, num_hidden_layers=2, expand=2, conv_kernel=4,
                   num_heads=8, head_dim=16, n_groups=2, chunk_size=8, use_conv_bias=True, use_bias=False,
                   tie_word_embeddings=False),
    "dbrx": dict(vocab_size=512, d_model=64, n_heads=4, n_layers=2, max_seq_len=64,
                 attn_config={"kv_n_heads": 2, "clip_qkv": 0.5}, ffn_config={"ffn_hidden_size": 128, "moe_top_k": 2}),
    "bloom": dict(vocab_size=512, hidden_size=64, n_layer=2, n_head=4, bos_token_id=1, eos_token_id=2),
    "falcon-7b": dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, multi_query=True,
                      new_decoder_architecture=False, parallel_attn=True, bias=False, alibi=False),
    "falcon-40b": dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_kv_heads=2,
                       new_decoder_architecture=True, parallel_attn=True, bias=True, alibi=False),
}


# families not built on UNTIED's fields
OWN_FIELDS = ("gpt2", "gpt_bigcode", "gpt_neox", "bloom", "falcon", "mamba", "falcon_mamba", "mamba2",
              "dbrx", "jamba")
# llama.cpp's name where it differs from the family's
GGUF_ARCH = {"cohere": "command-r", "phi": "phi2", "gpt_bigcode": "starcoder", "gpt_neox": "gptneox"}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_f32_file_equals_safetensors_model(family, tmp_path):
    arch = family.partition("-")[0]
    base = FAMILIES[family] if arch in OWN_FIELDS else {**UNTIED, **FAMILIES[family]}
    build_oracle_checkpoint(tmp_path, arch, base=base)
    shutil.copy(STORIES / "tokenizer.model", tmp_path)
    file = gguf_of(tmp_path, "F32", arch=GGUF_ARCH.get(arch, arch))
    ours = formers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=file)
    reference = formers.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(ours) is type(reference)
    with torch.no_grad():
        torch.testing.assert_close(ours(IDS).logits, reference(IDS).logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", ["bloom", "falcon-40b", "gpt_neox"])
def test_regrouped_qkv_blocks_come_back_in_checkpoint_order(family, tmp_path):
    """Bloom's, Falcon's and GPT-NeoX's fused qkv rows, regrouped by llama.cpp, are put back in the checkpoint's
    order while still in Q8_0 blocks (rows hold whole blocks), for the dequantized and the kept-quantized load alike."""
    arch = family.partition("-")[0]
    build_oracle_checkpoint(tmp_path, arch, base=FAMILIES[family])
    shutil.copy(STORIES / "tokenizer.model", tmp_path)
    file = gguf_of(tmp_path, "Q8_0", arch=GGUF_ARCH.get(arch, arch))
    reference = formers.AutoModelForCausalLM.from_pretrained(tmp_path)
    dequantized = formers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=file)
    kept = formers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=file, keep_quantized=True)
    assert {type(getattr(kept.model.layers[1].self_attn, f"{p}_proj")).__name__ for p in "qkv"} == {"QuantizedLinear"}
    with torch.no_grad():
        want, got, got_kept = (m(IDS).logits for m in (reference, dequantized, kept))
    span = float(want.max() - want.min())
    assert float((got - want).abs().max()) < 0.02 * span  # Q8_0's rounding only; a misplaced row moves far more
    assert float((got_kept - got).abs().max()) < 0.02 * span


@pytest.mark.parametrize("family", ["mamba", "mamba2"])
def test_mamba_blocks_kept_quantized(tmp_path, family):
    """A Q8_0 Mamba / Mamba2 file kept quantized: its head is blocks (Mamba's tied one the embedding's; the hidden
    states reach it as they are, not cast to the blocks' dtype), logits and greedy tokens as the dequantized
    model's."""
    build_oracle_checkpoint(tmp_path, family, base=FAMILIES[family])
    shutil.copy(STORIES / "tokenizer.model", tmp_path)
    file = gguf_of(tmp_path, "Q8_0", arch=family)
    dequantized = formers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=file)
    kept = formers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=file, keep_quantized=True)
    assert type(kept.lm_head).__name__ == type(kept.backbone.layers[0].mixer.in_proj).__name__ == "QuantizedLinear"
    with torch.no_grad():
        want, got = dequantized(IDS).logits, kept(IDS).logits
    assert float((got - want).abs().max()) < 0.02 * float(want.max() - want.min())
    greedy = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(kept.generate(IDS[:1], **greedy), dequantized.generate(IDS[:1], **greedy))


@pytest.mark.parametrize("gated", [False, True], ids=["t5-v1.0", "t5-v1.1"])
def test_t5_file_equals_safetensors_model(tmp_path, gated):
    """An F32 T5 file as llama.cpp writes it (enc.blk / dec.blk, the relative attention bias of each stack's first
    block, T5 v1.0's ReLU feed-forward with a tied head or v1.1's gated GELU with its own head) gives the safetensors
    model's logits and greedy tokens."""
    import transformers

    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=512, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2,
                                   num_heads=4, relative_attention_num_buckets=8, decoder_start_token_id=0,
                                   feed_forward_proj="gated-gelu" if gated else "relu",
                                   tie_word_embeddings=not gated)
    transformers.T5ForConditionalGeneration(config).save_pretrained(tmp_path)
    shutil.copy(STORIES / "tokenizer.model", tmp_path)
    file = gguf_of(tmp_path, "F32", arch="t5")
    ours = formers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path, gguf_file=file)
    reference = formers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert type(ours) is type(reference) and ours.config.is_gated_act == gated
    decoder_ids = torch.tensor([[0, 7, 3, 9], [0, 5, 5, 2]])
    with torch.no_grad():
        got = ours(input_ids=IDS, decoder_input_ids=decoder_ids).logits
        want = reference(input_ids=IDS, decoder_input_ids=decoder_ids).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    greedy = dict(max_new_tokens=6, do_sample=False)
    assert torch.equal(ours.generate(IDS, **greedy), reference.generate(IDS, **greedy))
