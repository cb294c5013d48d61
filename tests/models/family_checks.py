"""The checks every model family must pass against transformers 4.45.2, written once.

A family lists its tiny checkpoints in `tests/models/cases/<family>.py`:
    CASES = {"gemma-mqa": Case("gemma", {...config fields...}), ...}
`test_families.py` runs every check below on every case; a `Case` says which checks 4.45 allows for
that family (static cache, bf16 greedy). Family-specific behaviour gets its own test file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers

import formers

from ..conftest import TINY, build_oracle_checkpoint

VOCAB = 128  # every case's vocab_size: the batches below draw ids from [3, 128)


@dataclass(frozen=True)
class Case:
    model_type: str
    config: dict  # fields given to the oracle's config class on top of `base`
    base: dict = field(default_factory=lambda: dict(TINY))  # families whose configs name fields otherwise pass theirs
    # cache_implementation="static": True compares with 4.45's static cache, "oracle_dynamic" with 4.45's
    # default cache (where 4.45's static cache crashes for this layout), False skips
    static_cache: bool | str = True
    bf16_greedy: bool = False  # also check bf16 greedy tokens
    seed: int = 0
    # where 4.45.2's SDPA path is wrong for this config (it drops a score scale, say), the oracle runs eager
    oracle_attention: str | None = None
    half_exact: bool = False  # bf16 and fp16 logits bit-equal to 4.45.2's (families that match its numerics)
    outputs_check: bool = True  # False where 4.45.2's eager path (used for output_attentions) is wrong
    # False where 4.45.2's cached forward is wrong or unusable for the family (Gemma2: its forward builds a
    # HybridCache only as long as the input and reads no tuple cache; its HybridCache misplaces the left
    # padding once the window slides): the oracle then recomputes every step without a cache, which it
    # gets right, and the tuple cache it hands formers comes from its DynamicCache's prefill
    oracle_cache: bool = True


def oracle_generate_kwargs(case: Case) -> dict:
    """What the oracle's generate() gets on top of the shared arguments."""
    return {} if case.oracle_cache else {"use_cache": False, "cache_implementation": None}


def oracle_next_logits(ref, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The oracle's last-position logits [B, 1, V] for the whole prefix, computed without a cache."""
    return ref(ids, attention_mask=mask, position_ids=positions, use_cache=False).logits[:, -1:]


def build(case: Case, folder: Path) -> Path:
    return build_oracle_checkpoint(folder, case.model_type, seed=case.seed, base=case.base, **case.config)


def load_pair(folder: Path, oracle_attention: str | None = None, **kwargs):
    """(formers model, transformers model) from `folder`; `oracle_attention` overrides the oracle's kernel."""
    ref_kwargs = {**kwargs, "attn_implementation": oracle_attention} if oracle_attention else kwargs
    return (formers.AutoModelForCausalLM.from_pretrained(folder, **kwargs),
            transformers.AutoModelForCausalLM.from_pretrained(folder, **ref_kwargs))


def padded_batch(rows: int = 3, length: int = 12, pad_id: int = 0, seed: int = 3):
    """ids [rows, length] with rows 1 and 2 left-padded by 3 and 7 tokens, and their attention mask."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (rows, length), generator=generator)
    mask = torch.ones_like(ids)
    for row, pad in zip(range(1, rows), (3, 7)):
        mask[row, :pad] = 0
    return ids.masked_fill(mask == 0, pad_id), mask


def max_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """max |a - b|; with `mask` [B, T], only over real (unpadded) positions of [B, T, ...] outputs: what a
    padded query position computes is unspecified (families mask it differently in 4.45) and unused."""
    diff = (a.float() - b.float()).abs()
    if mask is not None:
        diff = diff[mask.bool()]
    return diff.max().item()


def check_logits(folder: Path, case: Case, implementation: str) -> float:
    """fp32 logits, hidden states and attentions on a left-padded batch; returns max |delta logits|."""
    ours, ref = load_pair(folder, case.oracle_attention, attn_implementation=implementation)
    ids, mask = padded_batch(length=16)
    with torch.no_grad():
        a, b = ours(ids, attention_mask=mask), ref(ids, attention_mask=mask)
    delta = max_diff(a.logits, b.logits, mask)
    assert a.logits.shape == b.logits.shape and delta <= 1e-5, delta
    return delta


def check_outputs_and_embeds(folder: Path, case: Case) -> None:
    """output_hidden_states / output_attentions / labels / inputs_embeds agree with 4.45."""
    ours, ref = load_pair(folder, case.oracle_attention)
    ids, mask = padded_batch(length=10)
    labels = ids.masked_fill(mask == 0, -100)  # padded positions carry no loss
    kwargs = dict(attention_mask=mask, output_hidden_states=True, output_attentions=True, labels=labels)
    with torch.no_grad():
        a, b = ours(ids, **kwargs), ref(ids, **kwargs)
        embeds = ref.get_input_embeddings()(ids)
        ea = ours(inputs_embeds=embeds, attention_mask=mask).logits
        eb = ref(inputs_embeds=embeds, attention_mask=mask).logits
    assert len(a.hidden_states) == len(b.hidden_states)
    assert max(max_diff(x, y, mask) for x, y in zip(a.hidden_states, b.hidden_states)) <= 1e-5
    assert len(a.attentions) == len(b.attentions)
    for x, y in zip(a.attentions, b.attentions):  # [B, H, T, S]: real query rows, every key
        assert max_diff(x.transpose(1, 2), y.transpose(1, 2), mask) <= 1e-5
    assert abs(a.loss.item() - b.loss.item()) <= 1e-5
    assert max_diff(ea, eb, mask) <= 1e-5


def check_incremental_decoding(folder: Path, case: Case) -> None:
    """Prefill then token by token through the cache, legacy tuples in and out as 4.45 does."""
    ours, ref = load_pair(folder, case.oracle_attention)
    ids, mask = padded_batch(length=16)
    # the prefill takes the default positions 0..9, each step its position counted on the mask
    positions = torch.cat([torch.arange(10).expand(len(ids), 10), (mask.cumsum(-1) - 1).clamp(min=0)[:, 10:]], 1)
    with torch.no_grad():
        out_a = ours(ids[:, :10], attention_mask=mask[:, :10], use_cache=True)
        out_b = ref(ids[:, :10], attention_mask=mask[:, :10], use_cache=True) if case.oracle_cache else None
        cache_a, cache_b = out_a.past_key_values, out_b and out_b.past_key_values
        for t in range(10, 16):
            pos = positions[:, t:t + 1]
            a = ours(ids[:, t:t + 1], attention_mask=mask[:, :t + 1], position_ids=pos, past_key_values=cache_a)
            if case.oracle_cache:
                b = ref(ids[:, t:t + 1], attention_mask=mask[:, :t + 1], position_ids=pos, past_key_values=cache_b)
                expected, cache_b = b.logits, b.past_key_values
            else:
                expected = oracle_next_logits(ref, ids[:, :t + 1], mask[:, :t + 1], positions[:, :t + 1])
            assert max_diff(a.logits, expected) <= 1e-5
            cache_a = a.past_key_values


def _generate_both(folder: Path, case: Case, seed: int | None = None, torch_dtype=None, **kwargs):
    ours, ref = load_pair(folder, case.oracle_attention,
                          **({"torch_dtype": torch_dtype} if torch_dtype is not None else {}))
    ids, mask = padded_batch()
    kwargs = dict(input_ids=ids, attention_mask=mask, pad_token_id=0, **kwargs)
    if seed is not None:
        formers.set_seed(seed)
    a = ours.generate(**kwargs)
    if seed is not None:
        transformers.set_seed(seed)
    b = ref.generate(**{**kwargs, **oracle_generate_kwargs(case)})
    return a, b


def check_greedy(folder: Path, case: Case, torch_dtype=None, varied: bool = True) -> None:
    """32 greedy tokens on the padded batch equal 4.45.2's; with `varied`, no row repeats a single token."""
    a, b = _generate_both(folder, case, max_new_tokens=32, do_sample=False, torch_dtype=torch_dtype)
    assert a.shape == (3, 44) and torch.equal(a, b)
    # a tiny model that repeats one token would make this parity (and beam search's) hard to fail. Excluded by
    # name: test_mamba.py's "mamba-k3-n3-bias-tied", kept tied on purpose, whose tied head echoes the last token
    if varied and not (case.model_type == "mamba" and case.config.get("tie_word_embeddings")):
        distinct = [len(set(row.tolist())) for row in a[:, 12:]]
        assert min(distinct) > 1, f"greedy repeats one token in some row (distinct per row: {distinct})"


def check_beam_search(folder: Path, case: Case) -> None:
    a, b = _generate_both(folder, case, max_new_tokens=16, num_beams=4, do_sample=False, num_return_sequences=2)
    assert torch.equal(a, b)


def check_sampling(folder: Path, case: Case) -> None:
    a, b = _generate_both(folder, case, seed=1234, max_new_tokens=24, do_sample=True, top_k=20, top_p=0.9,
                          temperature=0.8)
    assert torch.equal(a, b)


def check_cache_against_oracle_default(folder: Path, case: Case, implementation: str) -> None:
    """formers with cache_implementation=`implementation` gives the tokens 4.45.2 gives with its default
    cache (for caches 4.45.2 cannot run for this family on CPU)."""
    ours, ref = load_pair(folder, case.oracle_attention)
    ids, mask = padded_batch()
    kwargs = dict(attention_mask=mask, pad_token_id=0, max_new_tokens=24, do_sample=False)
    a = ours.generate(ids, cache_implementation=implementation, **kwargs)
    assert torch.equal(a, ref.generate(ids, **kwargs, **oracle_generate_kwargs(case)))


def check_static_cache(folder: Path, case: Case) -> None:
    if case.static_cache == "oracle_dynamic":
        check_cache_against_oracle_default(folder, case, "static")
        return
    a, b = _generate_both(folder, case, cache_implementation="static", max_new_tokens=24, do_sample=False)
    assert torch.equal(a, b)


def check_round_trip(folder: Path, out: Path) -> None:
    """formers' save_pretrained writes the checkpoint's own layout: 4.45.2 loads it to the same logits."""
    ours = formers.AutoModelForCausalLM.from_pretrained(folder)
    ours.save_pretrained(out)
    ref = transformers.AutoModelForCausalLM.from_pretrained(folder)
    again = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert sorted(again.state_dict()) == sorted(ref.state_dict())
    ids, mask = padded_batch(length=10)
    with torch.no_grad():
        assert max_diff(again(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits) == 0
    base = formers.AutoModel.from_pretrained(out)  # the base model loads from the LM checkpoint too
    assert type(base).__name__ == type(ours.model).__name__


def check_oracle_tuple_cache(folder: Path, case: Case) -> None:
    """A 4.45-style tuple cache made by transformers, given to formers, gives the same next logits and
    comes back in the same tuple layout (GPTBigCode's differs from the others')."""
    ours, ref = load_pair(folder, case.oracle_attention)
    ids, mask = padded_batch(length=12)
    positions = torch.cat([torch.arange(11).expand(len(ids), 11), (mask.cumsum(-1) - 1).clamp(min=0)[:, -1:]], 1)
    pos = positions[:, -1:]
    with torch.no_grad():
        if case.oracle_cache:
            past = ref(ids[:, :11], attention_mask=mask[:, :11], use_cache=True).past_key_values
            b = ref(ids[:, 11:], attention_mask=mask, position_ids=pos, past_key_values=past)
            expected_logits, expected_cache = b.logits, b.past_key_values
        else:  # tuples only through the oracle's DynamicCache, whose prefill from empty it gets right
            empty = transformers.DynamicCache
            past = ref(ids[:, :11], attention_mask=mask[:, :11], past_key_values=empty()).past_key_values
            past = past.to_legacy_cache()
            b = ref(ids, attention_mask=mask, position_ids=positions, past_key_values=empty())
            expected_logits, expected_cache = b.logits[:, -1:], b.past_key_values.to_legacy_cache()
        a = ours(ids[:, 11:], attention_mask=mask, position_ids=pos, past_key_values=past)
    assert max_diff(a.logits, expected_logits) <= 1e-5
    flat_a = [t for layer in a.past_key_values for t in (layer if isinstance(layer, tuple) else (layer,))]
    flat_b = [t for layer in expected_cache for t in (layer if isinstance(layer, tuple) else (layer,))]
    assert [t.shape for t in flat_a] == [t.shape for t in flat_b]
    for x, y in zip(flat_a, flat_b):  # keys/values at real positions ([B, H, S, D] or GPTBigCode's [B, S, 2D])
        x, y = (x.transpose(1, 2), y.transpose(1, 2)) if x.dim() == 4 else (x, y)
        assert max_diff(x, y, mask[:, :x.shape[1]]) <= 1e-5


def check_half_precision_exact(folder: Path, case: Case, dtype: torch.dtype) -> None:
    ours, ref = load_pair(folder, case.oracle_attention, torch_dtype=dtype)
    ids, mask = padded_batch(length=16)
    with torch.no_grad():
        assert max_diff(ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits, mask) == 0


def check_streamer_and_stop_strings(ours, ref, ids: torch.Tensor, mask: torch.Tensor) -> None:
    """A streamer receives the prompt, then each greedy token, then end(); stop strings taken from the greedy
    text end generation early exactly where 4.45.2's do (one row: 4.45 streams one sequence)."""
    from ..conftest import GPT2_TOKENIZER

    class Collect:
        def __init__(self):
            self.chunks = []

        def put(self, value):
            self.chunks.append(value.reshape(-1))

        def end(self):
            self.chunks.append(None)

    streamer = Collect()
    kwargs = dict(attention_mask=mask, pad_token_id=0, max_new_tokens=20, do_sample=False)
    out = ours.generate(ids, streamer=streamer, **kwargs)
    assert streamer.chunks[-1] is None and torch.equal(torch.cat(streamer.chunks[:-1]), out[0])
    assert torch.equal(out, ref.generate(ids, **kwargs))
    tokenizers = (formers.AutoTokenizer.from_pretrained(GPT2_TOKENIZER),
                  transformers.AutoTokenizer.from_pretrained(GPT2_TOKENIZER))
    stop = tokenizers[1].decode(out[0, -4:-2])  # text the greedy continuation produces
    a = ours.generate(ids, stop_strings=[stop], tokenizer=tokenizers[0], **kwargs)
    b = ref.generate(ids, stop_strings=[stop], tokenizer=tokenizers[1], **kwargs)
    assert torch.equal(a, b) and a.shape[1] < out.shape[1]
