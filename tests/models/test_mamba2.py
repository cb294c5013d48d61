"""Mamba-2 / Codestral Mamba against transformers 4.45.2's torch path.

Where 4.45.2's torch path is right, formers matches it: logits <= 1e-5 on a left-padded batch, greedy
and seeded sampling on a padded batch of 3, the saved folder. Where it is wrong, each test below runs
4.45.2 in a setting it gets right and shows the defect:
  - prompts longer than `chunk_size`: 4.45.2 carries the state across chunks wrongly, so the oracle runs
    with one chunk (chunk_size >= prompt; the math does not depend on the chunk size);
  - n_groups < num_heads: its prefill reads group h % G for head h, its decoding (and the CUDA kernels)
    h // (H / G); formers uses the latter everywhere, checked against 4.45.2 on a head-permuted copy;
  - beam search: it never reorders `cache_params`, so the oracle beams without a cache.
"""
from __future__ import annotations

import pytest
import torch
import transformers

import formers
from formers.errors import CacheError
from formers.models.mamba2.modeling_mamba2 import Mamba2Cache

from ..conftest import build_oracle_checkpoint
from .family_checks import check_streamer_and_stop_strings, max_diff, padded_batch

# head_dim 16, 8 heads, one per group (4.45.2's prefill and decoding agree there); chunk 8 < prompts
BASE = dict(vocab_size=128, hidden_size=64, num_heads=8, head_dim=16, n_groups=8, state_size=16,
            num_hidden_layers=2, chunk_size=8, time_step_min=1e-9, bos_token_id=1, eos_token_id=2, pad_token_id=0)
CASES = {
    "groups-8": {},
    "groups-1-odd-state-kernel3": dict(n_groups=1, state_size=13, conv_kernel=3),
    "bias-no-fp32-residual": dict(num_heads=4, head_dim=32, n_groups=4, use_bias=True, use_conv_bias=False,
                                  residual_in_fp32=False),
    "time-step-limit": dict(time_step_min=0.02, time_step_limit=(0.02, float("inf"))),  # the clamp bites
}
ONE_CHUNK = 256  # the oracle's chunk size: every prompt here fits one chunk, which 4.45.2 computes right
CODESTRAL = dict(vocab_size=32768, hidden_size=4096, num_heads=128, head_dim=64, n_groups=8, state_size=128,
                 num_hidden_layers=64, chunk_size=256, conv_kernel=4, expand=2, time_step_rank=256,
                 residual_in_fp32=True, rms_norm=True, use_bias=False, use_conv_bias=True,
                 layer_norm_epsilon=1e-5, tie_word_embeddings=False, bos_token_id=0, eos_token_id=0,
                 pad_token_id=0)


def build(tmp_path, **overrides):
    return build_oracle_checkpoint(tmp_path / "ckpt", "mamba2", base=BASE, **overrides)


def load_pair(folder, **oracle_kwargs):
    ours = formers.AutoModelForCausalLM.from_pretrained(folder)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, chunk_size=ONE_CHUNK, **oracle_kwargs)
    return ours, theirs


@pytest.mark.parametrize("fields", [{}, CODESTRAL], ids=["defaults", "codestral"])
def test_config_equals_4_45(fields):
    ours, theirs = formers.Mamba2Config(**fields).to_diff_dict(), transformers.Mamba2Config(**fields).to_diff_dict()
    ours.pop("formers_version", None)
    theirs.pop("transformers_version", None)
    assert ours == theirs
    assert formers.Mamba2Config(**fields).time_step_rank == transformers.Mamba2Config(**fields).time_step_rank


def unpadded_rows(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits [B, T, V] with each row computed alone without its pads (zeros at pad positions)."""
    out = torch.zeros(*ids.shape, model.config.vocab_size)
    for row in range(ids.shape[0]):
        real = mask[row].bool()
        out[row, real] = model(ids[row:row + 1, real]).logits[0]
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_logits_equal_4_45_on_a_padded_batch_longer_than_a_chunk(tmp_path, name):
    ours, theirs = load_pair(build(tmp_path, **CASES[name]))
    ids, mask = padded_batch(length=21)  # 21 > chunk_size 8: three chunks
    with torch.no_grad():
        logits = ours(ids, attention_mask=mask).logits
        alone = unpadded_rows(theirs, ids, mask)
        assert max_diff(logits, alone, mask) <= 1e-5  # a padded row reads as its tokens alone
        padded = theirs(ids, attention_mask=mask).logits
        if CASES[name].get("use_bias"):  # 4.45.2 leaves in_proj's bias of pad positions in the conv window
            assert max_diff(padded, alone, mask) > 1e-3
        else:
            assert max_diff(logits, padded, mask) <= 1e-5
        # without a cache formers masks the pads the same way (4.45.2 then lets them leak into the state)
        assert max_diff(ours(ids, attention_mask=mask, use_cache=False).logits, logits, mask) <= 1e-5


def test_4_45_multi_chunk_scan_is_wrong_and_formers_does_not_depend_on_chunk_size(tmp_path):
    folder = build(tmp_path)
    ids, _ = padded_batch(rows=2, length=21)
    ours, one_chunk = load_pair(folder)
    ours_one_chunk = formers.AutoModelForCausalLM.from_pretrained(folder, chunk_size=ONE_CHUNK)
    many_chunks = transformers.AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        assert max_diff(ours(ids).logits, ours_one_chunk(ids).logits) <= 1e-5
        assert max_diff(many_chunks(ids).logits, one_chunk(ids).logits) > 1e-3  # 4.45.2's defect


def _head_permuted(model, heads: int, groups: int):
    """A copy of the 4.45.2 model whose head j is formers' head (j % G) * R + j // G: 4.45.2's prefill,
    reading group j % G for head j, then computes what formers computes with group h // R for head h."""
    per_group, head_dim = heads // groups, model.config.head_dim
    order = torch.tensor([(j % groups) * per_group + j // groups for j in range(heads)])
    channels = (order[:, None] * head_dim + torch.arange(head_dim)).reshape(-1)  # per-head blocks of head_dim
    inner = model.config.num_heads * head_dim
    state = model.state_dict()
    for layer in range(model.config.num_hidden_layers):
        key = f"backbone.layers.{layer}.mixer."
        total = state[key + "in_proj.weight"].shape[0]  # rows: gate z | x | B | C | dt
        rows = torch.cat([channels, inner + channels, torch.arange(2 * inner, total - heads), total - heads + order])
        state[key + "in_proj.weight"] = state[key + "in_proj.weight"][rows]
        conv_rows = torch.cat([channels, torch.arange(inner, state[key + "conv1d.weight"].shape[0])])
        state[key + "conv1d.weight"] = state[key + "conv1d.weight"][conv_rows]
        state[key + "conv1d.bias"] = state[key + "conv1d.bias"][conv_rows]
        for name in ("dt_bias", "A_log", "D"):
            state[key + name] = state[key + name][order]
        state[key + "norm.weight"] = state[key + "norm.weight"][channels]
        state[key + "out_proj.weight"] = state[key + "out_proj.weight"][:, channels]
    permuted = type(model)(model.config).eval()
    permuted.load_state_dict(state)
    return permuted


def test_grouped_heads_read_group_h_div_heads_per_group(tmp_path):
    """Codestral's layout (8 groups of 16 heads), small: 8 heads in 2 groups."""
    ours, theirs = load_pair(build(tmp_path, n_groups=2))
    ids, mask = padded_batch(length=12)
    with torch.no_grad():
        logits = ours(ids, attention_mask=mask).logits
        reference = _head_permuted(theirs, 8, 2)(ids, attention_mask=mask).logits
        assert max_diff(logits, reference, mask) <= 1e-5
        assert max_diff(theirs(ids, attention_mask=mask).logits, reference, mask) > 1e-3  # 4.45.2's prefill
        # formers' prefill agrees with its own token-by-token decoding (4.45.2's do not, see above)
        cache = ours(ids[:1, :4]).cache_params
        steps = [ours(ids[:1, t:t + 1], cache_params=cache).logits for t in range(4, 12)]
        assert max_diff(torch.cat(steps, dim=1), logits[:1, 4:]) <= 1e-5


def test_cached_continuation_equals_the_full_forward(tmp_path):
    """One token at a time (the recurrence) and several at once (the chunked scan from a state) both
    continue a cache exactly; 4.45.2 reads only the first of several new tokens."""
    ours = formers.AutoModelForCausalLM.from_pretrained(build(tmp_path))
    ids, mask = padded_batch(length=24)
    with torch.no_grad():
        full = ours(ids, attention_mask=mask).logits
        out = ours(ids[:, :10], attention_mask=mask[:, :10])
        one = ours(ids[:, 10:11], cache_params=out.cache_params, attention_mask=mask[:, :11]).logits
        several = ours(ids[:, 11:24], cache_params=out.cache_params, attention_mask=mask).logits
    assert out.cache_params.get_seq_length() == out.cache_params.seqlen_offset == 24
    assert max_diff(torch.cat([one, several], dim=1), full[:, 10:]) <= 1e-5


def test_cache_params_step_by_step_as_4_45(tmp_path):
    """4.45's manual loop, `cache_params` and `cache_position` as 4.45 names them: a 6-token prefill with
    use_cache, then one token at a time; logits and every layer's states agree. 4.45.2's single-token step
    works at batch 1 only (at batch B it multiplies y [B, 1, I] by the gate [B, I] and returns [B, B, V]
    logits), so the oracle runs each row alone; formers' batched steps equal those rows."""
    ours, theirs = load_pair(build(tmp_path, **CASES["groups-1-odd-state-kernel3"]))  # 4.45.2's prefill: G in {1, H}
    ids, _ = padded_batch(rows=3, length=16)
    with torch.no_grad():
        a, batched = ours(ids[:, :6], use_cache=True), ours(ids[:, :6], use_cache=True)
        assert isinstance(a.cache_params, Mamba2Cache) and a.cache_params.get_seq_length() == 6
        rows = [theirs(ids[r:r + 1, :6], use_cache=True) for r in range(3)]
        for t in range(6, 16):
            position = torch.tensor([t])
            a = ours(ids[:, t:t + 1], cache_params=a.cache_params, cache_position=position, use_cache=True)
            rows = [theirs(ids[r:r + 1, t:t + 1], cache_params=rows[r].cache_params, cache_position=position,
                           use_cache=True) for r in range(3)]
            assert a.logits.shape == (3, 1, 128)
            assert max_diff(a.logits, torch.cat([row.logits for row in rows])) <= 1e-5
        broken = theirs(ids[:, 6:7], cache_params=batched.cache_params, cache_position=torch.tensor([6]), use_cache=True)
        assert broken.logits.shape == (3, 3, 128)  # 4.45.2's batched step
    assert a.cache_params.get_seq_length() == rows[0].cache_params.seqlen_offset == 16
    for layer in range(ours.config.num_hidden_layers):
        for states in ("ssm_states", "conv_states"):
            theirs_states = torch.cat([getattr(row.cache_params, states)[layer] for row in rows])
            assert max_diff(getattr(a.cache_params, states)[layer], theirs_states) <= 1e-5


def test_streamer_and_stop_strings_as_4_45(tmp_path):
    ours, theirs = load_pair(build(tmp_path))
    ids, mask = padded_batch(rows=1, length=12)
    check_streamer_and_stop_strings(ours, theirs, ids, mask)


GENERATE = dict(max_new_tokens=32, pad_token_id=0)


@pytest.mark.parametrize("name", ["groups-8", "groups-1-odd-state-kernel3"])
def test_greedy_and_sampling_equal_4_45_on_a_padded_batch_of_3(tmp_path, name):
    ours, theirs = load_pair(build(tmp_path, **CASES[name]))
    ids, mask = padded_batch(length=12)
    expected = theirs.generate(ids, attention_mask=mask, do_sample=False, **GENERATE)
    assert torch.equal(ours.generate(ids, attention_mask=mask, do_sample=False, **GENERATE), expected)
    torch.manual_seed(7)
    expected = theirs.generate(ids, attention_mask=mask, do_sample=True, top_k=20, **GENERATE)
    torch.manual_seed(7)
    assert torch.equal(ours.generate(ids, attention_mask=mask, do_sample=True, top_k=20, **GENERATE), expected)


def test_beam_search_equals_4_45_without_its_unreordered_cache(tmp_path):
    """Batch of 2 unpadded prompts: 4.45.2 without a cache masks nothing after the convolution, which
    matters only for padded prompts."""
    ours, theirs = load_pair(build(tmp_path))
    ids, _ = padded_batch(rows=2, length=12)
    beams = dict(num_beams=4, num_return_sequences=2, do_sample=False, max_new_tokens=10, pad_token_id=0)
    expected = theirs.generate(ids, use_cache=False, **beams)
    assert torch.equal(ours.generate(ids, **beams), expected)
    assert not torch.equal(theirs.generate(ids, **beams), expected)  # 4.45.2's beams keep stale states


def test_generation_paths_4_45_refuses_or_lacks(tmp_path):
    """Beyond 4.45.2 (which refuses assisted decoding for stateful models): a Mamba2 draft and prompt lookup
    roll the state back through snapshots and give the greedy tokens; prompts as inputs_embeds and
    cache_implementation="mamba" as 4.45.2."""
    folder = build(tmp_path)
    ours, theirs = load_pair(folder)
    draft = formers.AutoModelForCausalLM.from_pretrained(build_oracle_checkpoint(tmp_path / "draft", "mamba2", seed=1,
                                                                                 base=BASE))
    ids, _ = padded_batch(rows=1, length=12)
    greedy = ours.generate(ids, do_sample=False, **GENERATE)
    assert torch.equal(greedy, theirs.generate(ids, do_sample=False, **GENERATE))
    assert torch.equal(ours.generate(ids, do_sample=False, assistant_model=draft, **GENERATE), greedy)
    assert torch.equal(ours.generate(ids, do_sample=False, prompt_lookup_num_tokens=3, **GENERATE), greedy)
    assert torch.equal(ours.generate(ids, do_sample=False, cache_implementation="mamba", **GENERATE), greedy)
    with torch.no_grad():
        embeds = ours.get_input_embeddings()(ids)
    assert torch.equal(ours.generate(inputs_embeds=embeds, do_sample=False, **GENERATE),
                       theirs.generate(inputs_embeds=embeds, do_sample=False, **GENERATE))


def test_legacy_embedding_name_loads(tmp_path):
    """4.45.2's load hook renames `backbone.embedding.weight` (mamba_ssm's name) to `embeddings`."""
    from safetensors.torch import load_file, save_file
    folder = build(tmp_path)
    tensors = load_file(folder / "model.safetensors")
    tensors["backbone.embedding.weight"] = tensors.pop("backbone.embeddings.weight")
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    ours, theirs = load_pair(folder)
    assert torch.equal(ours.backbone.embeddings.weight, theirs.backbone.embeddings.weight)


def test_dt_is_clamped_by_time_step_limit_not_time_step_min(tmp_path):
    """4.45.2's torch path clamps dt below at time_step_min (an initialisation setting); the CUDA kernels
    and the reference implementation clamp to time_step_limit, default (0, inf): no clamp."""
    folder = build(tmp_path, time_step_min=0.05)
    ours, theirs = load_pair(folder)
    ids, mask = padded_batch(length=12)
    with torch.no_grad():
        clamped = theirs(ids, attention_mask=mask).logits
        for layer in theirs.backbone.layers:
            layer.mixer.time_step_min = 0.0  # clamp(dt, 0) does nothing: softplus > 0
        unclamped = theirs(ids, attention_mask=mask).logits
        logits = ours(ids, attention_mask=mask).logits
    assert max_diff(logits, unclamped, mask) <= 1e-5
    assert max_diff(clamped, unclamped, mask) > 1e-4


def test_save_round_trip_loads_in_4_45(tmp_path):
    folder = build(tmp_path, n_groups=4)
    ours = formers.AutoModelForCausalLM.from_pretrained(folder)
    ours.save_pretrained(tmp_path / "saved")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    original = transformers.AutoModelForCausalLM.from_pretrained(folder)
    assert type(reloaded) is transformers.Mamba2ForCausalLM
    theirs, mine = original.state_dict(), reloaded.state_dict()
    assert theirs.keys() == mine.keys() and all(torch.equal(theirs[k], mine[k]) for k in theirs)
    assert reloaded.config.to_diff_dict()["n_groups"] == 4


def test_hidden_states_and_tuple_outputs_as_4_45(tmp_path):
    ours, theirs = load_pair(build(tmp_path))
    ids, mask = padded_batch(length=12)
    with torch.no_grad():
        a = ours(ids, attention_mask=mask, output_hidden_states=True, labels=ids)
        b = theirs(ids, attention_mask=mask, output_hidden_states=True, labels=ids)
        assert len(a.hidden_states) == len(b.hidden_states) == 3  # each layer's output, then the final norm
        for x, y in zip(a.hidden_states, b.hidden_states):
            assert max_diff(x, y, mask) <= 1e-5
        assert abs(a.loss.item() - b.loss.item()) <= 1e-5
        base = ours.backbone(ids, attention_mask=mask, return_dict=False)
        assert len(base) == 2 and isinstance(base[1], Mamba2Cache)


def test_mamba2_cache_rows_snapshots_and_refusals():
    config = formers.Mamba2Config(**BASE)
    cache = Mamba2Cache(config, batch_size=3, dtype=torch.float32)
    assert cache.conv_states[0].shape == (3, 64 * 2 + 2 * 8 * 16, 4)
    assert cache.ssm_states[1].shape == (3, 8, 16, 16)
    cache.ssm_states.copy_(torch.arange(3.0).reshape(1, 3, 1, 1, 1).expand_as(cache.ssm_states))
    cache.advance(5)
    saved = cache.snapshot()
    cache.reorder_cache(torch.tensor([2, 2, 0]))
    assert cache.ssm_states[:, :, 0, 0, 0].tolist() == [[2.0, 2.0, 0.0]] * 2
    cache.restore(saved)
    assert cache.ssm_states[:, :, 0, 0, 0].tolist() == [[0.0, 1.0, 2.0]] * 2
    with pytest.raises(CacheError):
        cache.crop(3)
    cache.batch_select_indices(torch.tensor([1]))
    assert cache.ssm_states.shape[1] == 1 and cache.get_seq_length() == 5
    cache.reset()
    assert cache.seqlen_offset == 0 and not cache.ssm_states.any()


def test_prompts_take_the_chunked_scan_and_tokens_the_recurrence(tmp_path, monkeypatch):
    """No per-token loop over a prompt: a 21-token prefill is one chunked scan per layer; each later
    token is one recurrence step per layer."""
    from formers.models.mamba2 import modeling_mamba2
    ours = formers.AutoModelForCausalLM.from_pretrained(build(tmp_path))
    calls = {"scan": 0, "step": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper
    monkeypatch.setattr(modeling_mamba2, "ssd_chunked", counted("scan", modeling_mamba2.ssd_chunked))
    monkeypatch.setattr(modeling_mamba2, "ssd_step", counted("step", modeling_mamba2.ssd_step))
    ids, mask = padded_batch(length=21)
    ours.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert calls == {"scan": 2, "step": 2 * 4}  # 2 layers; the first new token comes from the prefill


@pytest.mark.parametrize("name", ["groups-8", "groups-1-odd-state-kernel3"])
def test_bf16_greedy_equals_4_45(tmp_path, name):
    """bf16 weights, float32 residual stream and scan: the same 32 greedy tokens on a padded batch of 3."""
    folder = build(tmp_path, **CASES[name])
    ours = formers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.bfloat16)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.bfloat16, chunk_size=ONE_CHUNK)
    ids, mask = padded_batch(length=12)
    assert torch.equal(ours.generate(ids, attention_mask=mask, do_sample=False, **GENERATE),
                       theirs.generate(ids, attention_mask=mask, do_sample=False, **GENERATE))
