"""BART and mBART against transformers 4.45.2: learned positions (offset 2), embedding LayerNorm,
scale_embedding, post-norm (BART) and pre-norm + final norms (mBART), final_logits_bias, mBART's
wrapped label shift; forward (eager and SDPA), cache, generate, loss and save parity."""
from __future__ import annotations

import pytest
import torch

import formers
from tests.models import seq2seq_checks as checks

TINY = {"vocab_size": 128, "d_model": 32, "encoder_layers": 2, "decoder_layers": 3, "encoder_attention_heads": 4,
            "decoder_attention_heads": 2, "encoder_ffn_dim": 40, "decoder_ffn_dim": 48, "max_position_embeddings": 64,
            "init_std": 0.2}  # large weights: logits far from zero, so the 1e-5 bound means something
VARIANTS = {
    "bart": ("bart", {}),
    "bart_scaled": ("bart", {"scale_embedding": True, "activation_function": "relu"}),
    "mbart": ("mbart", {"scale_embedding": True}),
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def folder(request, tmp_path_factory):
    model_type, fields = VARIANTS[request.param]
    return checks.build_seq2seq_checkpoint(tmp_path_factory.mktemp(request.param), model_type,
                                           **{**TINY, **fields})


@pytest.fixture(scope="module")
def pair(folder):
    return checks.load_pair(folder, "eager")


@pytest.mark.parametrize("name", ["BartConfig", "MBartConfig"])
def test_config_defaults_equal_4_45(name):
    import transformers

    theirs, ours = getattr(transformers, name)().to_dict(), getattr(formers, name)().to_dict()
    fields = type(getattr(formers, name)())._fields
    assert set(fields) - set(theirs) == set()
    assert {k: ours[k] for k in fields if k in theirs and k != "torch_dtype"} == \
        {k: theirs[k] for k in fields if k in theirs and k != "torch_dtype"}


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_forward_parity_on_padded_batch(folder, pair, implementation):
    theirs = pair[0]
    ours = formers.AutoModelForSeq2SeqLM.from_pretrained(folder, attn_implementation=implementation)
    checks.check_forward(theirs, ours, *checks.padded_batch(128, 1))


def test_incremental_decoding_with_legacy_cache(pair):
    checks.check_incremental(*pair, *checks.padded_batch(128, 1, seed=1))


@pytest.mark.parametrize("kwargs", [
    {"max_new_tokens": 12},
    {"max_new_tokens": 10, "num_beams": 4, "num_return_sequences": 2},
    {"max_new_tokens": 10, "do_sample": True, "top_p": 0.9},
    {"max_new_tokens": 8, "forced_bos_token_id": 5, "num_beams": 2, "return_dict_in_generate": True, "output_scores": True},
], ids=["greedy", "beams", "sample", "forced_bos_beams"])
def test_generate_equals_4_45(pair, kwargs):
    ids, mask, _ = checks.padded_batch(128, 1, seed=2)
    checks.check_generate(*pair, ids, mask, **kwargs)


def test_labels_loss_equals_4_45(pair):
    ids, mask, decoder = checks.padded_batch(128, 1, seed=4)
    labels = decoder.clone()
    labels[1, -2:] = -100
    checks.check_loss(*pair, ids, mask, labels)


def test_mbart_label_shift_equals_4_45():
    from transformers.models.mbart.modeling_mbart import shift_tokens_right

    from formers.models.mbart import shift_tokens_right_wrapped
    labels = torch.tensor([[5, 6, 7, 2, 9], [5, 6, 2, 1, 1], [4, 3, -100, -100, -100]])
    assert torch.equal(shift_tokens_right_wrapped(labels, 1), shift_tokens_right(labels.clone(), 1))


def test_save_round_trip_loads_in_4_45(pair, tmp_path):
    ids, mask, decoder = checks.padded_batch(128, 1, seed=5)
    checks.check_save_round_trip(pair[1], tmp_path / "saved", ids, mask, decoder)


def test_cross_attention_keys_are_projected_once_per_generate(pair):
    """The encoder states are projected to cross-attention K/V on the first step only (then read from the
    EncoderDecoderCache), and the encoder runs once."""
    ours = pair[1]
    calls = {"k": 0, "encoder": 0}

    def count(name):
        def hook(module, args, output):
            calls[name] += 1
        return hook

    handles = [ours.model.decoder.layers[0].encoder_attn.k_proj.register_forward_hook(count("k")),
               ours.model.encoder.register_forward_hook(count("encoder"))]
    try:
        ids, mask, _ = checks.padded_batch(128, 1, seed=6)
        out = ours.generate(ids, attention_mask=mask, max_new_tokens=6, min_new_tokens=6, num_beams=2)
    finally:
        for handle in handles:
            handle.remove()
    assert out.shape[1] == 7 and calls == {"k": 1, "encoder": 1}


def test_input_longer_than_the_position_table_is_refused_by_name(pair):
    ours = pair[1]
    too_long = torch.full((1, 65), 5)
    with pytest.raises(formers.errors.GenerationError, match="encoder input of 65 positions.*max_position_embeddings=64"):
        ours(input_ids=too_long, decoder_input_ids=too_long[:, :2])
    with pytest.raises(formers.errors.GenerationError, match="decoder input of 65 positions"):
        ours.generate(too_long[:, :8], max_new_tokens=70, min_new_tokens=70)
