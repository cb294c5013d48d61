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
