"""T5 / Flan-T5 / mT5 against transformers 4.45.2: relative position buckets, unscaled scores, RMS norms,
ReLU and gated-GELU feed-forwards, the tied-embedding rescale; forward, generate, loss and save parity."""
from __future__ import annotations

import pytest
import torch

import formers
from tests.models import seq2seq_checks as checks

TINY = {"vocab_size": 128, "d_model": 32, "d_kv": 8, "d_ff": 48, "num_layers": 2, "num_decoder_layers": 3, "num_heads": 4,
            "relative_attention_num_buckets": 8, "relative_attention_max_distance": 20, "decoder_start_token_id": 0}
VARIANTS = {
    "t5_relu_tied": ("t5", {}),
    "flan_gated_untied": ("t5", {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}),
    "mt5_gated_silu": ("mt5", {"feed_forward_proj": "gated-silu", "num_heads": 3, "d_kv": 12}),
}


def _build(name: str, tmp_path_factory):
    model_type, fields = VARIANTS[name]
    folder = checks.build_seq2seq_checkpoint(tmp_path_factory.mktemp(name), model_type,
                                             **{**TINY, **fields})
    return checks.load_pair(folder)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request, tmp_path_factory):
    return _build(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def gated_pair(tmp_path_factory):
    """Every decoding strategy runs on the gated, untied variant (Flan-T5's layout)."""
    return _build("flan_gated_untied", tmp_path_factory)


@pytest.mark.parametrize("name", ["T5Config", "MT5Config"])
def test_config_defaults_equal_4_45(name):
    import transformers

    theirs, ours = getattr(transformers, name)().to_dict(), getattr(formers, name)().to_dict()
    skip = {"transformers_version", "formers_version", "_name_or_path"}
    expected = {k: v for k, v in theirs.items() if k in ours and k not in skip}
    assert {k: ours[k] for k in expected} == expected
    assert set(type(getattr(formers, name)())._fields) - set(theirs) == set()
    for field in ("d_model", "num_heads", "d_kv", "dense_act_fn", "is_gated_act", "num_decoder_layers"):
        assert field in ours and ours[field] == theirs[field]


def test_bad_feed_forward_proj_names_the_field():
    with pytest.raises(formers.errors.ConfigError, match="feed_forward_proj"):
        formers.T5Config(feed_forward_proj="swish-gated-gelu")


def test_relative_position_buckets_equal_4_45():
    from transformers.models.t5.modeling_t5 import T5Attention

    from formers.models.t5.modeling_t5 import relative_position_bucket
    offsets = torch.arange(-300, 300)[None, :]
    for bidirectional in (True, False):
        for buckets, distance in ((32, 128), (8, 20)):
            expected = T5Attention._relative_position_bucket(offsets, bidirectional, buckets, distance)
            assert torch.equal(relative_position_bucket(offsets, bidirectional, buckets, distance), expected)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_forward_parity_on_padded_batch(pair, implementation):
    theirs, ours = pair
    ours.config._attn_implementation = implementation  # both kernels read it per call
    for module in ours.modules():
        if hasattr(module, "implementation"):
            module.implementation = implementation
    try:
        checks.check_forward(theirs, ours, *checks.padded_batch(128, 0))
    finally:
        for module in ours.modules():
            if hasattr(module, "implementation"):
                module.implementation = "eager"


def test_incremental_decoding_with_legacy_cache(pair):
    checks.check_incremental(*pair, *checks.padded_batch(128, 0, seed=1))


@pytest.mark.parametrize("kwargs", [
    {"max_new_tokens": 12},
    {"max_new_tokens": 10, "num_beams": 4, "num_return_sequences": 2},
    {"max_new_tokens": 10, "do_sample": True, "top_k": 20},
    {"max_new_tokens": 8, "num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 0.5},
    {"max_new_tokens": 8, "penalty_alpha": 0.6, "top_k": 4},
    {"max_new_tokens": 8, "forced_bos_token_id": 5, "forced_eos_token_id": 6, "min_new_tokens": 3},
    {"max_new_tokens": 8, "return_dict_in_generate": True, "output_scores": True},
    {"max_new_tokens": 8, "num_beams": 3, "return_dict_in_generate": True, "output_scores": True},
    {"max_new_tokens": 8, "no_repeat_ngram_size": 2, "encoder_no_repeat_ngram_size": 2, "repetition_penalty": 1.3},
    {"max_new_tokens": 8, "encoder_repetition_penalty": 1.5},
    {"max_new_tokens": 8, "num_beams": 3, "force_words_ids": [[5, 6]]},
    {"max_new_tokens": 8, "num_beams": 2, "do_sample": True},
], ids=["greedy", "beams", "sample", "group_beams", "contrastive", "forced", "dict", "beam_dict", "encoder_ngrams",
        "encoder_penalty", "constrained", "beam_sample"])
def test_generate_equals_4_45(gated_pair, kwargs):
    ids, mask, _ = checks.padded_batch(128, 0, seed=2)
    checks.check_generate(*gated_pair, ids, mask, **kwargs)


def test_greedy_and_beams_equal_4_45_on_every_variant(pair):
    ids, mask, _ = checks.padded_batch(128, 0, seed=6)
    checks.check_generate(*pair, ids, mask, max_new_tokens=10)
    checks.check_generate(*pair, ids, mask, max_new_tokens=8, num_beams=3)


def test_generate_with_decoder_input_ids_and_encoder_outputs(gated_pair):
    theirs, ours = gated_pair
    ids, mask, decoder = checks.padded_batch(128, 0, seed=3)
    checks.check_generate(theirs, ours, ids, mask, decoder_input_ids=decoder[:, :2], max_new_tokens=6)
    encoded = ours.get_encoder()(input_ids=ids, attention_mask=mask)
    reused = ours.generate(encoder_outputs=encoded, attention_mask=mask, max_new_tokens=6)
    assert torch.equal(reused, theirs.generate(ids, attention_mask=mask, max_new_tokens=6))


def test_labels_loss_equals_4_45(pair):
    ids, mask, decoder = checks.padded_batch(128, 0, seed=4)
    labels = decoder.clone()
    labels[0, -2:] = -100
    checks.check_loss(*pair, ids, mask, labels)
    ours = pair[1]
    shifted = ours.prepare_decoder_input_ids_from_labels(labels)
    assert shifted[0, 0] == 0 and shifted[0, -1] == ours.config.pad_token_id and torch.equal(shifted[:, 1:4], labels[:, :3])


def test_save_round_trip_loads_in_4_45(pair, tmp_path):
    ids, mask, decoder = checks.padded_batch(128, 0, seed=5)
    checks.check_save_round_trip(pair[1], tmp_path / "saved", ids, mask, decoder)


@pytest.mark.parametrize("num_beams", [1, 2])
def test_generate_returns_encoder_decoder_outputs_as_4_45(gated_pair, num_beams):
    theirs, ours = gated_pair
    ids, mask, _ = checks.padded_batch(128, 0, seed=8)
    kwargs = {"max_new_tokens": 4, "num_beams": num_beams, "return_dict_in_generate": True, "output_attentions": True,
                  "output_hidden_states": True, "output_scores": True}
    a, b = theirs.generate(ids, attention_mask=mask, **kwargs), ours.generate(ids, attention_mask=mask, **kwargs)
    assert type(a).__name__ == type(b).__name__ and torch.equal(a.sequences, b.sequences)
    for name in ("encoder_attentions", "encoder_hidden_states"):
        assert all(checks.max_diff(x, y) <= 1e-5 for x, y in zip(getattr(a, name), getattr(b, name)))
    for name in ("decoder_attentions", "cross_attentions", "decoder_hidden_states"):
        theirs_steps, ours_steps = getattr(a, name), getattr(b, name)
        assert len(theirs_steps) == len(ours_steps) == 4
        for x_step, y_step in zip(theirs_steps, ours_steps):
            assert all(checks.max_diff(x, y) <= 1e-5 for x, y in zip(x_step, y_step))


def test_assisted_and_prompt_lookup_equal_4_45(gated_pair, tmp_path_factory):
    """An encoder-decoder assistant drafts from its own encoder states (as 4.45); batch of one, as 4.45 allows."""
    theirs, ours = gated_pair
    small = dict(TINY, num_layers=1, num_decoder_layers=1, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    folder = checks.build_seq2seq_checkpoint(tmp_path_factory.mktemp("assistant"), "t5", seed=3, **small)
    their_assistant, our_assistant = checks.load_pair(folder)
    ids, mask, _ = checks.padded_batch(128, 0, seed=2)
    outputs = set()
    for row in range(3):
        one, one_mask = ids[row:row + 1], mask[row:row + 1]
        a = theirs.generate(one, attention_mask=one_mask, assistant_model=their_assistant, max_new_tokens=10)
        b = ours.generate(one, attention_mask=one_mask, assistant_model=our_assistant, max_new_tokens=10)
        assert torch.equal(a, b)
        outputs.update(a[0].tolist())
        checks.check_generate(theirs, ours, one, one_mask, prompt_lookup_num_tokens=2, max_new_tokens=10)
    assert len(outputs) > 4  # the model does not just repeat one token
