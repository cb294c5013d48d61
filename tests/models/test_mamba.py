"""Mamba and FalconMamba against transformers 4.45.2 (its torch slow path is the reference): configs, logits on
a left-padded batch (odd state sizes, conv kernels 3 and 4, prompts longer than the scan chunk), the cache
fed one token and several tokens at a time, and everything generate() offers: greedy, sampling, beam search,
assisted decoding with Mamba drafts, streamers, stop strings, cache_implementation="mamba", save round trip.

Beam search is compared with 4.45.2 run without a cache: 4.45.2's cached beam search never reorders
`cache_params` (its reorder step only looks at `past_key_values`), so its beams continue from other beams'
states; recomputing every step it gets the right tokens, and formers' reordered MambaCache must give them.
"""
from __future__ import annotations

import pytest
import torch
import transformers

import formers
import formers.modeling.selective_scan as selective_scan
from formers.errors import GenerationError
from formers.generation.context import GenerationContext

from .family_checks import (
    Case,
    build,
    check_greedy,
    check_sampling,
    check_streamer_and_stop_strings,
    load_pair,
    max_diff,
    padded_batch,
)

# Untied heads: a tiny random Mamba with its head tied to the embedding only echoes its last input token, so
# greedy tokens, beams and drafts would barely test anything (one tied case keeps the tying itself covered)
BASE = dict(vocab_size=128, hidden_size=32, state_size=5, num_hidden_layers=2, conv_kernel=4, expand=2,
            tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
# bf16_greedy: bf16 greedy tokens equal 4.45.2's too. Not for falcon_mamba-k3: its bf16 logits differ from
# 4.45.2's by one bf16 step at a few positions (the chunked scan adds its float32 terms in another order than
# 4.45.2's token loop before the cast), and a near-tie in row 0 flips at step 10; float32 tokens are identical
CASES = {
    "mamba-k4-n5": Case("mamba", {}, base=BASE, bf16_greedy=True),
    "mamba-k3-n3-bias-tied": Case("mamba", {"conv_kernel": 3, "state_size": 3, "use_bias": True,
                                            "tie_word_embeddings": True, "time_step_rank": 3}, base=BASE, seed=1,
                                  bf16_greedy=True),
    # seed 6: with seed 2 every row of the padded batch ends on EOS before 32 tokens
    "mamba-no-fp32-residual": Case("mamba", {"residual_in_fp32": False, "use_conv_bias": False, "expand": 3},
                                   base=BASE, seed=6, bf16_greedy=True),
    "falcon_mamba-k3": Case("falcon_mamba", {"conv_kernel": 3, "mixer_rms_eps": 1e-5}, base=BASE, seed=3),
    "falcon_mamba-k4-n7": Case("falcon_mamba", {"state_size": 7}, base=BASE, seed=4, bf16_greedy=True),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case_folder(request, tmp_path_factory):
    case = CASES[request.param]
    return case, build(case, tmp_path_factory.mktemp(request.param))


@pytest.mark.parametrize("name", ["mamba", "falcon_mamba"])
def test_config_defaults_equal_4_45(name):
    ours = formers.AutoConfig.for_model(name).to_diff_dict()
    theirs = transformers.AutoConfig.for_model(name).to_diff_dict()
    ours.pop("formers_version", None)
    theirs.pop("transformers_version", None)
    assert ours.pop("tie_word_embeddings") == theirs.pop("tie_word_embeddings", True)  # formers always writes it
    assert ours == theirs
    small = formers.AutoConfig.for_model(name, hidden_size=40, expand=3)
    assert (small.intermediate_size, small.time_step_rank) == (120, 3)


def _logits(model, ids, mask, **kwargs):
    with torch.no_grad():
        return model(ids, attention_mask=mask, use_cache=False, **kwargs)


@pytest.mark.parametrize("length,chunk", [(16, None), (40, 8), (150, None)])
def test_logits_parity_on_a_padded_batch(case_folder, length, chunk, monkeypatch):
    """fp32 logits <= 1e-5 on real positions: one chunk, several small chunks, past the default chunk (128)."""
    if chunk is not None:
        monkeypatch.setattr(selective_scan, "SCAN_CHUNK", chunk)
    case, folder = case_folder
    ours, ref = load_pair(folder)
    ids, mask = padded_batch(length=length)
    a, b = _logits(ours, ids, mask), _logits(ref, ids, mask)
    assert a.logits.shape == b.logits.shape and max_diff(a.logits, b.logits, mask) <= 1e-5


def test_hidden_states_loss_and_inputs_embeds(case_folder):
    case, folder = case_folder
    ours, ref = load_pair(folder)
    ids, mask = padded_batch(length=10)
    labels = ids.masked_fill(mask == 0, -100)
    a = _logits(ours, ids, mask, labels=labels, output_hidden_states=True)
    b = _logits(ref, ids, mask, labels=labels, output_hidden_states=True)
    assert len(a.hidden_states) == len(b.hidden_states) == BASE["num_hidden_layers"] + 1
    assert max(max_diff(x, y, mask) for x, y in zip(a.hidden_states, b.hidden_states)) <= 1e-5
    assert abs(a.loss.item() - b.loss.item()) <= 1e-5
    embeds = ref.get_input_embeddings()(ids)
    with torch.no_grad():
        ea, eb = ours(inputs_embeds=embeds, attention_mask=mask).logits, ref(inputs_embeds=embeds, attention_mask=mask).logits
    assert max_diff(ea, eb, mask) <= 1e-5
    assert isinstance(ours(ids[:, :3], return_dict=False)[0], torch.Tensor)


def test_cache_params_step_by_step_as_4_45(case_folder):
    """4.45's manual loop: prefill with use_cache, then one token at a time with cache_params and cache_position."""
    case, folder = case_folder
    ours, ref = load_pair(folder)
    ids, mask = padded_batch(length=16)
    with torch.no_grad():
        a, b = ours(ids[:, :10], attention_mask=mask[:, :10], use_cache=True), ref(
            ids[:, :10], attention_mask=mask[:, :10], use_cache=True)
        assert isinstance(a.cache_params, formers.MambaCache) and a.cache_params.get_seq_length() == 10
        for t in range(10, 16):
            position = torch.tensor([t])
            a = ours(ids[:, t:t + 1], cache_params=a.cache_params, cache_position=position, use_cache=True)
            b = ref(ids[:, t:t + 1], cache_params=b.cache_params, cache_position=position, use_cache=True)
            assert max_diff(a.logits, b.logits) <= 1e-5
    assert torch.allclose(a.cache_params.ssm_states, b.cache_params.ssm_states, atol=1e-5)
    assert torch.allclose(a.cache_params.conv_states, b.cache_params.conv_states, atol=1e-5)


@pytest.mark.parametrize("step", [2, 3, 7])
def test_several_tokens_after_a_cached_prefix_equal_the_full_forward(case_folder, step):
    """Beyond 4.45 (its cached forward takes one token): blocks of `step` tokens continue the state."""
    case, folder = case_folder
    ours, ref = load_pair(folder)
    ids, mask = padded_batch(length=20)
    full = _logits(ref, ids, mask).logits
    with torch.no_grad():
        out = ours(ids[:, :6], attention_mask=mask[:, :6], use_cache=True)
        cache, pieces = out.cache_params, [out.logits]
        for start in range(6, 20, step):
            piece = ours(ids[:, start:start + step], attention_mask=mask[:, :start + step], cache_params=cache,
                         use_cache=True)
            pieces.append(piece.logits)
    assert max_diff(torch.cat(pieces, dim=1), full, mask) <= 1e-5


def test_greedy_and_sampling_equal_4_45(case_folder):
    case, folder = case_folder
    check_greedy(folder, case)
    if case.bf16_greedy:
        check_greedy(folder, case, torch_dtype=torch.bfloat16)
    check_sampling(folder, case)


def test_beam_search_reorders_the_state(case_folder):
    case, folder = case_folder
    ours, ref = load_pair(folder)
    ids, mask = padded_batch()
    kwargs = dict(input_ids=ids, attention_mask=mask, pad_token_id=0, max_new_tokens=16, num_beams=4,
                  num_return_sequences=2, do_sample=False)
    a = ours.generate(**kwargs)
    assert torch.equal(a, ref.generate(**kwargs, use_cache=False))
    assert torch.equal(a, ours.generate(**kwargs, use_cache=False))


def test_assisted_decoding_with_mamba_drafts_equals_greedy(tmp_path, monkeypatch):
    """Mamba main + FalconMamba draft (one row at a time, as 4.45 decodes), a Llama main with a Mamba draft on
    a padded batch of 3, and a Mamba main with a Llama draft: the tokens greedy search gives. Rejected draft
    tokens are undone by restoring a state snapshot (a state cache cannot be cropped), in the main model's
    cache and in the Mamba draft's."""
    restored = []
    restore = formers.MambaCache.restore
    monkeypatch.setattr(formers.MambaCache, "restore",
                        lambda cache, snapshot: restored.append(cache.conv_kernel_size) or restore(cache, snapshot))
    mamba = build(CASES["mamba-k4-n5"], tmp_path / "mamba")
    falcon = build(CASES["falcon_mamba-k3"], tmp_path / "falcon")
    llama = build(Case("llama", {"pad_token_id": 0}, seed=5), tmp_path / "llama")
    main, draft, dense = (formers.AutoModelForCausalLM.from_pretrained(f) for f in (mamba, falcon, llama))
    ids, mask = padded_batch()
    for model, assistant, rows in ((main, draft, [0, 1, 2]), (dense, main, [slice(None)]), (main, dense, [2])):
        for row in rows:
            kwargs = dict(input_ids=ids[row:row + 1] if isinstance(row, int) else ids,
                          attention_mask=mask[row:row + 1] if isinstance(row, int) else mask,
                          pad_token_id=0, max_new_tokens=32, do_sample=False)
            assert torch.equal(model.generate(**kwargs, assistant_model=assistant), model.generate(**kwargs))
        if assistant is draft:  # main (conv kernel 4) and draft (kernel 3) both rolled back
            assert set(restored) == {4, 3}
    with pytest.raises(GenerationError, match="one row at a time"):
        main.generate(ids, attention_mask=mask, max_new_tokens=4, assistant_model=draft)


def test_cache_implementation_and_user_cache(case_folder, caplog):
    case, folder = case_folder
    ours, _ = load_pair(folder)
    ids, mask = padded_batch()
    kwargs = dict(attention_mask=mask, pad_token_id=0, max_new_tokens=12, do_sample=False)
    expected = ours.generate(ids, **kwargs)
    assert torch.equal(ours.generate(ids, cache_implementation="mamba", **kwargs), expected)
    assert torch.equal(ours.generate(ids, cache_implementation="static", **kwargs), expected)
    assert "cache_implementation='static' is ignored" in caplog.text
    cache = formers.MambaCache(ours.config, batch_size=3, dtype=torch.float32)
    out = ours.generate(ids, cache_params=cache, return_dict_in_generate=True, **kwargs)
    assert torch.equal(out.sequences, expected) and cache.get_seq_length() == expected.shape[1] - 1
    for refused in (dict(penalty_alpha=0.6, top_k=4), dict(dola_layers="low")):
        with pytest.raises(GenerationError, match="stateful"):
            ours.generate(ids, **kwargs, **refused)


def test_streamer_and_stop_strings_as_4_45(case_folder):
    _, folder = case_folder
    ours, ref = load_pair(folder)
    ids, mask = padded_batch(rows=1)
    check_streamer_and_stop_strings(ours, ref, ids, mask)


def test_save_round_trip_loads_in_4_45(case_folder, tmp_path):
    case, folder = case_folder
    ours = formers.AutoModelForCausalLM.from_pretrained(folder)
    ours.save_pretrained(tmp_path)
    ref, again = (transformers.AutoModelForCausalLM.from_pretrained(f) for f in (folder, tmp_path))
    assert type(again) is type(ref) and sorted(again.state_dict()) == sorted(ref.state_dict())
    ids, mask = padded_batch(length=10)
    assert max_diff(_logits(again, ids, mask).logits, _logits(ref, ids, mask).logits) == 0
    base = formers.AutoModel.from_pretrained(tmp_path)
    assert type(base).__name__ == type(ours.backbone).__name__


def test_gradients_equal_4_45(case_folder):
    """The chunked scan trains: gradients of every parameter match 4.45's token loop."""
    case, folder = case_folder
    ours, ref = load_pair(folder)
    ids, mask = padded_batch(length=12)
    labels = ids.masked_fill(mask == 0, -100)
    for model in (ours, ref):
        model.train()
        model(ids, attention_mask=mask, labels=labels, use_cache=False).loss.backward()
    grads = dict(ref.named_parameters())
    for name, param in ours.named_parameters():
        assert torch.allclose(param.grad, grads[name].grad, atol=1e-5), name


def test_prefill_has_no_per_token_loop(monkeypatch):
    """A 256-token prompt is scanned with a handful of doubling steps per chunk, not 256 recurrence steps."""
    calls = []
    original = selective_scan._doubling_scan
    monkeypatch.setattr(selective_scan, "_doubling_scan", lambda *a: calls.append(1) or original(*a))
    config = formers.MambaConfig(**{**BASE, "num_hidden_layers": 1})
    model = formers.MambaForCausalLM(config).eval()
    with torch.no_grad():
        model(torch.randint(3, 128, (1, 256)), use_cache=False)
    assert len(calls) == 256 // selective_scan.SCAN_CHUNK


def test_generate_from_embeds_and_returned_outputs(case_folder):
    _, folder = case_folder
    ours, ref = load_pair(folder)
    ids, mask = padded_batch()
    kwargs = dict(attention_mask=mask, pad_token_id=0, max_new_tokens=10, do_sample=False)
    embeds = ref.get_input_embeddings()(ids)
    assert torch.equal(ours.generate(inputs_embeds=embeds, **kwargs), ref.generate(inputs_embeds=embeds, **kwargs))
    kwargs.update(return_dict_in_generate=True, output_scores=True, output_logits=True, output_hidden_states=True)
    a, b = ours.generate(ids, **kwargs), ref.generate(ids, **kwargs)
    assert torch.equal(a.sequences, b.sequences)
    assert max(max_diff(x, y) for x, y in zip(a.scores + a.logits, b.scores + b.logits)) <= 1e-5
    assert [len(h) for h in a.hidden_states] == [len(h) for h in b.hidden_states]
    assert max(max_diff(x, y) for xs, ys in zip(a.hidden_states, b.hidden_states) for x, y in zip(xs, ys)) <= 1e-5


def test_overshoot_steps_are_rolled_back(case_folder, monkeypatch):
    """Off the CPU generate() asks "all rows done?" only every 8 steps; the steps decoded past the end are
    undone in the returned state cache (restored from a checkpoint), so it can be continued."""
    _, folder = case_folder
    ours, _ = load_pair(folder)
    ids, mask = padded_batch()
    kwargs = dict(attention_mask=mask, pad_token_id=0, max_new_tokens=30, do_sample=False)
    free = ours.generate(ids, eos_token_id=None, **kwargs)  # no row ends early on the config's EOS
    eos = [int(free[row, 13 + row]) for row in range(3)]  # row r stops by step r + 2: all before the check at 8
    caches = [formers.MambaCache(ours.config, batch_size=3, dtype=torch.float32) for _ in range(2)]
    every_step = ours.generate(ids, eos_token_id=eos, cache_params=caches[0], **kwargs)
    monkeypatch.setattr(GenerationContext, "sync_every", lambda self, device: 8)
    assert torch.equal(ours.generate(ids, eos_token_id=eos, cache_params=caches[1], **kwargs), every_step)
    assert every_step.shape[1] <= 12 + 5
    assert caches[0].get_seq_length() == caches[1].get_seq_length() == every_step.shape[1] - 1
    assert torch.equal(caches[0].ssm_states, caches[1].ssm_states)
