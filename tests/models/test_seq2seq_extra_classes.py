"""Encoder-only and decoder-only classes of the seq2seq families against transformers 4.45.2 on tiny
checkpoints 4.45.2 writes: T5EncoderModel / MT5EncoderModel (from a full checkpoint and from their own)."""
from __future__ import annotations

import logging

import pytest
import torch

import formers

from .seq2seq_checks import build_seq2seq_checkpoint, padded_batch

T5_SHAPE = dict(vocab_size=99, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3, num_heads=4,
                relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)


@pytest.fixture(scope="module", params=["t5", "mt5"])
def t5_checkpoint(request, tmp_path_factory):
    fields = dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False) if request.param == "mt5" else {}
    folder = tmp_path_factory.mktemp(request.param)
    return request.param, build_seq2seq_checkpoint(folder, request.param, **T5_SHAPE, **fields)


def _encoder_classes(model_type: str):
    import transformers
    name = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel"}[model_type]
    return getattr(formers, name), getattr(transformers, name)


def _assert_same_encoding(ours, theirs, vocab: int):
    ids, mask, _ = padded_batch(vocab, 0)
    with torch.no_grad():
        expected = theirs(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        got = ours(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert (got.last_hidden_state - expected.last_hidden_state).abs().max().item() <= 1e-5
    assert len(got.hidden_states) == len(expected.hidden_states)
    for mine, oracle in zip(got.hidden_states, expected.hidden_states):
        assert (mine - oracle).abs().max().item() <= 1e-5


def test_encoder_model_from_a_full_checkpoint_matches_transformers(t5_checkpoint, caplog):
    model_type, folder = t5_checkpoint
    ours_cls, theirs_cls = _encoder_classes(model_type)
    theirs = theirs_cls.from_pretrained(folder).eval()
    with caplog.at_level(logging.WARNING):
        ours = ours_cls.from_pretrained(folder)
    assert "not used" not in caplog.text and "not initialized" not in caplog.text, caplog.text
    assert not hasattr(ours, "decoder") and ours.get_output_embeddings() is None
    _assert_same_encoding(ours, theirs, T5_SHAPE["vocab_size"])


def test_encoder_model_keys_round_trip_with_transformers(t5_checkpoint, tmp_path):
    from safetensors import safe_open

    model_type, folder = t5_checkpoint
    ours_cls, theirs_cls = _encoder_classes(model_type)
    theirs_cls.from_pretrained(folder).save_pretrained(tmp_path / "theirs")
    ours = ours_cls.from_pretrained(tmp_path / "theirs")
    ours.save_pretrained(tmp_path / "ours")
    keys = {}
    for side in ("theirs", "ours"):
        with safe_open(str(tmp_path / side / "model.safetensors"), "pt") as f:
            keys[side] = set(f.keys())
    assert keys["ours"] == keys["theirs"]
    assert any(k.startswith("encoder.block.1.layer.1.DenseReluDense") for k in keys["ours"])
    _assert_same_encoding(ours, theirs_cls.from_pretrained(tmp_path / "ours").eval(), T5_SHAPE["vocab_size"])


BART_SHAPE = dict(vocab_size=99, d_model=16, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
                  decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=24, max_position_embeddings=64,
                  pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, init_std=0.3)
CAUSAL = {"bart": ("BartConfig", "BartForCausalLM", {}),
          "mbart": ("MBartConfig", "MBartForCausalLM", {"scale_embedding": True}),
          "marian": ("MarianConfig", "MarianForCausalLM", {"scale_embedding": True, "decoder_start_token_id": 1})}


@pytest.fixture(scope="module", params=sorted(CAUSAL))
def causal_checkpoint(request, tmp_path_factory):
    """A 4.45.2 *ForCausalLM (random, norms and biases perturbed) saved by 4.45.2."""
    import transformers

    config_name, class_name, fields = CAUSAL[request.param]
    torch.manual_seed(0)
    config = getattr(transformers, config_name)(**{**BART_SHAPE, **fields})
    model = getattr(transformers, class_name)(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                param.add_(torch.randn_like(param) * 0.1)
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    return class_name, folder


def _causal_pair(class_name, folder):
    import transformers
    theirs = getattr(transformers, class_name).from_pretrained(folder, attn_implementation="eager").eval()
    return getattr(formers, class_name).from_pretrained(folder), theirs


def test_causal_lm_logits_and_loss_match_transformers(causal_checkpoint, caplog):
    class_name, folder = causal_checkpoint
    with caplog.at_level(logging.WARNING):
        ours, theirs = _causal_pair(class_name, folder)
    assert "not used" not in caplog.text and "not initialized" not in caplog.text, caplog.text
    assert type(formers.AutoModelForCausalLM.from_pretrained(folder)) is type(ours)  # as 4.45's causal-LM mapping
    ids, mask, _ = padded_batch(BART_SHAPE["vocab_size"], BART_SHAPE["pad_token_id"])
    mask[1] = 1  # right padding only (row 2): a decoder-only prompt
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        expected = theirs(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
        got = ours(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    real = mask.bool()[..., None]
    assert ((got.logits - expected.logits) * real).abs().max().item() <= 1e-5
    assert abs(got.loss.item() - expected.loss.item()) <= 1e-5
    assert len(got.hidden_states) == len(expected.hidden_states)


def test_causal_lm_with_encoder_states_matches_transformers(causal_checkpoint):
    class_name, folder = causal_checkpoint
    ours, theirs = _causal_pair(class_name, folder)
    _, mask, decoder = padded_batch(BART_SHAPE["vocab_size"], BART_SHAPE["pad_token_id"])
    states = torch.randn(3, 9, BART_SHAPE["d_model"], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs(input_ids=decoder, encoder_hidden_states=states, encoder_attention_mask=mask).logits
        got = ours(input_ids=decoder, encoder_hidden_states=states, encoder_attention_mask=mask).logits
    assert (got - expected).abs().max().item() <= 1e-5


def test_causal_lm_greedy_generate_matches_transformers(causal_checkpoint):
    class_name, folder = causal_checkpoint
    ours, theirs = _causal_pair(class_name, folder)
    prompt = torch.tensor([[0, 17, 45, 33, 8], [0, 60, 12, 71, 90]])
    kwargs = dict(max_new_tokens=8, do_sample=False, num_beams=1)
    expected = theirs.generate(prompt, attention_mask=torch.ones_like(prompt), **kwargs)
    got = ours.generate(prompt, attention_mask=torch.ones_like(prompt), **kwargs)
    assert torch.equal(got, expected)


def test_causal_lm_keys_round_trip_with_transformers(causal_checkpoint, tmp_path):
    import transformers
    from safetensors import safe_open

    class_name, folder = causal_checkpoint
    ours, _ = _causal_pair(class_name, folder)
    ours.save_pretrained(tmp_path)
    keys = {}
    for side, path in (("ours", tmp_path), ("theirs", folder)):
        with safe_open(str(path / "model.safetensors"), "pt") as f:
            keys[side] = {k for k in f.keys() if "embed_positions" not in k or class_name != "MarianForCausalLM"}
    assert keys["ours"] == keys["theirs"]
    assert "model.decoder.embed_tokens.weight" in keys["ours"]
    reloaded = getattr(transformers, class_name).from_pretrained(tmp_path).eval()
    ids = torch.tensor([[0, 17, 45, 33, 8]])
    with torch.no_grad():
        assert (reloaded(ids).logits - ours(ids).logits).abs().max().item() <= 1e-5
