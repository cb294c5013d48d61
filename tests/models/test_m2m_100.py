"""M2M100 / NLLB (model_type m2m_100) against transformers 4.45.2: sinusoidal positions counted from the
ids (pads at the padding row), scaled embeddings, pre-norm layers with final norms, 4.45's per-layer
layerdrop draws (seeded sampling stays in step); forward, cache, generate, loss and save parity."""
from __future__ import annotations

import pytest
import torch

import formers
from tests.models import seq2seq_checks as checks

TINY = {"vocab_size": 128, "d_model": 32, "encoder_layers": 2, "decoder_layers": 3, "encoder_attention_heads": 4,
            "decoder_attention_heads": 2, "encoder_ffn_dim": 40, "decoder_ffn_dim": 48, "max_position_embeddings": 64,
            "init_std": 0.2}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return checks.build_seq2seq_checkpoint(tmp_path_factory.mktemp("m2m"), "m2m_100", **TINY)


@pytest.fixture(scope="module")
def pair(folder):
    return checks.load_pair(folder, "eager")


def test_config_defaults_equal_4_45():
    import transformers

    theirs, ours = transformers.M2M100Config().to_dict(), formers.M2M100Config().to_dict()
    assert set(formers.M2M100Config._fields) - set(theirs) == set()
    shared = [k for k in formers.M2M100Config._fields if k != "torch_dtype"]
    assert len(shared) > 20 and {k: ours[k] for k in shared} == {k: theirs[k] for k in shared}


def test_sinusoidal_table_equals_4_45():
    from transformers.models.m2m_100.modeling_m2m_100 import (
        M2M100SinusoidalPositionalEmbedding,
    )

    from formers.models.m2m_100 import sinusoidal_table
    for dim in (32, 33):
        expected = M2M100SinusoidalPositionalEmbedding.get_embedding(66, dim, 1)
        assert torch.equal(sinusoidal_table(66, dim, 1), expected)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_forward_parity_on_padded_batch(folder, pair, implementation):
    ours = formers.AutoModelForSeq2SeqLM.from_pretrained(folder, attn_implementation=implementation)
    checks.check_forward(pair[0], ours, *checks.padded_batch(128, 1))


def test_incremental_decoding_with_legacy_cache(pair):
    checks.check_incremental(*pair, *checks.padded_batch(128, 1, seed=1))


@pytest.mark.parametrize("kwargs", [
    {"max_new_tokens": 12},
    {"max_new_tokens": 10, "num_beams": 4, "num_return_sequences": 2},
    {"max_new_tokens": 10, "do_sample": True, "temperature": 0.8},
    {"max_new_tokens": 8, "forced_bos_token_id": 9, "num_beams": 3},  # NLLB's target-language token
], ids=["greedy", "beams", "sample", "forced_bos"])
def test_generate_equals_4_45(pair, kwargs):
    ids, mask, _ = checks.padded_batch(128, 1, seed=2)
    checks.check_generate(*pair, ids, mask, **kwargs)


def test_labels_loss_equals_4_45(pair):
    ids, mask, decoder = checks.padded_batch(128, 1, seed=4)
    checks.check_loss(*pair, ids, mask, decoder)


def test_save_round_trip_loads_in_4_45(pair, tmp_path):
    checks.check_save_round_trip(pair[1], tmp_path / "saved", *checks.padded_batch(128, 1, seed=5))
