"""Marian (Opus-MT) against transformers 4.45.2: sinusoidal positions from 0 (not in checkpoints),
post-norm layers, no embedding norm, final_logits_bias, pad as decoder start; forward, cache,
generate, loss and save parity."""
from __future__ import annotations

import pytest

import formers
from tests.models import seq2seq_checks as checks

TINY = {"vocab_size": 128, "d_model": 32, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
            "decoder_attention_heads": 2, "encoder_ffn_dim": 40, "decoder_ffn_dim": 48, "max_position_embeddings": 64,
            "init_std": 0.2, "pad_token_id": 1, "decoder_start_token_id": 1, "eos_token_id": 2, "forced_eos_token_id": 2,
            "scale_embedding": True, "activation_function": "swish"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return checks.load_pair(checks.build_seq2seq_checkpoint(tmp_path_factory.mktemp("marian"), "marian", **TINY))


def test_config_defaults_equal_4_45():
    import transformers

    theirs, ours = transformers.MarianConfig().to_dict(), formers.MarianConfig().to_dict()
    assert set(formers.MarianConfig._fields) - set(theirs) == set()
    shared = [k for k in formers.MarianConfig._fields if k != "torch_dtype"]
    assert {k: ours[k] for k in shared} == {k: theirs[k] for k in shared}


def test_separate_vocabularies_are_refused_by_field_name():
    with pytest.raises(formers.errors.ConfigError, match="share_encoder_decoder_embeddings"):
        formers.MarianConfig(share_encoder_decoder_embeddings=False)


def test_sinusoidal_table_equals_4_45():
    from transformers.models.marian.modeling_marian import (
        MarianSinusoidalPositionalEmbedding,
    )

    from formers.models.marian import marian_sinusoidal_table
    for dim in (32, 33):
        expected = MarianSinusoidalPositionalEmbedding(70, dim).weight
        assert (marian_sinusoidal_table(70, dim) - expected).abs().max() <= 1e-7


def test_forward_and_cache_parity(pair):
    checks.check_forward(*pair, *checks.padded_batch(128, 1))
    checks.check_incremental(*pair, *checks.padded_batch(128, 1, seed=1))


@pytest.mark.parametrize("kwargs", [{"max_new_tokens": 12}, {"max_new_tokens": 10, "num_beams": 4},
                                    {"max_new_tokens": 10, "do_sample": True}], ids=["greedy", "beams", "sample"])
def test_generate_equals_4_45(pair, kwargs):
    ids, mask, _ = checks.padded_batch(128, 1, seed=2)
    checks.check_generate(*pair, ids, mask, **kwargs)


def test_loss_and_save_round_trip(pair, tmp_path):
    ids, mask, decoder = checks.padded_batch(128, 1, seed=4)
    checks.check_loss(*pair, ids, mask, decoder)
    checks.check_save_round_trip(pair[1], tmp_path / "saved", ids, mask, decoder)
