"""generate() gives transformers 4.45.2's tokens: greedy, seeded sampling, padded batches, caches."""
from __future__ import annotations

import pytest
import torch
import transformers

import formers

from ..conftest import STORIES, requires_shared


def _pair(folder, **kwargs):
    return (formers.AutoModelForCausalLM.from_pretrained(folder, **kwargs),
            transformers.AutoModelForCausalLM.from_pretrained(folder, **kwargs))


def _padded_batch(pad_id: int = 0):
    torch.manual_seed(3)
    ids = torch.randint(3, 128, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :7] = 0
    return ids.masked_fill(mask == 0, pad_id), mask


@pytest.mark.parametrize("model_type,overrides", [
    ("llama", {}), ("llama", {"tie_word_embeddings": True}), ("mistral", {"sliding_window": 6}), ("qwen2", {}),
])
def test_greedy_32_tokens_on_left_padded_batch(tiny_checkpoint, model_type, overrides):
    ours, ref = _pair(tiny_checkpoint(model_type, **overrides))
    ids, mask = _padded_batch()
    kwargs = dict(attention_mask=mask, max_new_tokens=32, do_sample=False, pad_token_id=0)
    a = ours.generate(ids, **kwargs)
    b = ref.generate(ids, **kwargs)
    assert a.shape == (3, 44)
    assert torch.equal(a, b)


def test_rows_finish_independently_and_are_padded(tiny_checkpoint):
    ours, ref = _pair(tiny_checkpoint("llama"))
    ids, mask = _padded_batch()
    first = ref.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
    eos = [int(first[0, 13]), int(first[2, 15])]  # tokens rows 0 and 2 produce early: make them EOS
    kwargs = dict(attention_mask=mask, max_new_tokens=20, do_sample=False, pad_token_id=0, eos_token_id=eos)
    a, b = ours.generate(ids, **kwargs), ref.generate(ids, **kwargs)
    assert torch.equal(a, b)
    assert (a[0, 14:] == 0).all()


@pytest.mark.parametrize("sampling", [
    dict(temperature=0.7), dict(top_k=5), dict(top_p=0.8), dict(min_p=0.1, temperature=1.3),
    dict(repetition_penalty=1.3, top_k=20, top_p=0.9), dict(num_return_sequences=3),
])
def test_seeded_sampling_matches(tiny_checkpoint, sampling):
    ours, ref = _pair(tiny_checkpoint("llama"))
    ids, mask = _padded_batch()
    kwargs = dict(attention_mask=mask, max_new_tokens=24, do_sample=True, pad_token_id=0, **sampling)
    formers.set_seed(1234)
    a = ours.generate(ids, **kwargs)
    transformers.set_seed(1234)
    b = ref.generate(ids, **kwargs)
    assert torch.equal(a, b)


def test_min_new_tokens_eos_list_and_max_length(tiny_checkpoint):
    ours, ref = _pair(tiny_checkpoint("qwen2"))
    ids, mask = _padded_batch()
    first = ref.generate(ids, attention_mask=mask, max_new_tokens=3, do_sample=False, pad_token_id=0)
    eos = [int(first[0, 12]), 2]
    kwargs = dict(attention_mask=mask, max_length=30, min_new_tokens=5, eos_token_id=eos, pad_token_id=0)
    assert torch.equal(ours.generate(ids, **kwargs), ref.generate(ids, **kwargs))


def test_use_cache_false_and_inputs_embeds(tiny_checkpoint):
    ours, ref = _pair(tiny_checkpoint("llama"))
    ids, mask = _padded_batch()
    kwargs = dict(attention_mask=mask, max_new_tokens=10, pad_token_id=0)
    assert torch.equal(ours.generate(ids, use_cache=False, **kwargs), ref.generate(ids, use_cache=False, **kwargs))
    embeds = ours.get_input_embeddings()(ids).detach()
    a = ours.generate(inputs_embeds=embeds, **kwargs)
    b = ref.generate(inputs_embeds=embeds, **kwargs)
    assert a.shape == (3, 10)  # only the new tokens, as transformers returns for embeds-only input
    assert torch.equal(a, b)
    a = ours.generate(inputs_embeds=embeds, max_length=15, attention_mask=mask, pad_token_id=0)
    b = ref.generate(inputs_embeds=embeds, max_length=15, attention_mask=mask, pad_token_id=0)
    assert torch.equal(a, b)


def test_return_dict_in_generate(tiny_checkpoint):
    ours, ref = _pair(tiny_checkpoint("llama"))
    ids, mask = _padded_batch()
    kwargs = dict(attention_mask=mask, max_new_tokens=5, pad_token_id=0, return_dict_in_generate=True,
                  output_scores=True, output_logits=True, do_sample=True, temperature=0.5)
    formers.set_seed(0)
    a = ours.generate(ids, **kwargs)
    transformers.set_seed(0)
    b = ref.generate(ids, **kwargs)
    assert torch.equal(a.sequences, b.sequences)
    assert len(a.scores) == len(b.scores) == 5
    for x, y in zip(a.scores + a.logits, b.scores + b.logits):
        assert torch.allclose(x, y, atol=1e-5, equal_nan=True)
        assert torch.equal(torch.isinf(x), torch.isinf(y))
    assert isinstance(a.past_key_values, tuple)  # the default cache comes back in legacy form, as in 4.45
    assert a.past_key_values[0][0].shape == b.past_key_values[0][0].shape
    assert torch.allclose(a.past_key_values[1][1], b.past_key_values[1][1], atol=1e-5)
    assert a["sequences"] is a.sequences and a[0] is a.sequences


def test_prompt_longer_than_max_length_is_refused(tiny_checkpoint):
    ours, _ = _pair(tiny_checkpoint("llama"))
    ids, mask = _padded_batch()
    with pytest.raises(formers.errors.GenerationError, match="max_length"):
        ours.generate(ids, attention_mask=mask, max_length=8)


def test_dynamic_cache_reused_across_calls_equals_cold_run(tiny_checkpoint):
    ours, ref = _pair(tiny_checkpoint("llama"))
    prompt = torch.randint(3, 128, (1, 9), generator=torch.Generator().manual_seed(5))
    cache = formers.DynamicCache()
    first = ours.generate(prompt, max_new_tokens=8, past_key_values=cache, pad_token_id=0)
    follow_up = torch.cat([first, torch.tensor([[7, 8, 9]])], dim=1)
    warm = ours.generate(follow_up, max_new_tokens=8, past_key_values=cache, pad_token_id=0)
    cold = ref.generate(follow_up, max_new_tokens=8, pad_token_id=0)
    assert torch.equal(warm, cold)


def test_hand_written_cache_position_loop_equals_generate(tiny_checkpoint):
    """The manual loop of transformers' kv_cache.md, unchanged but for the import."""
    ours, ref = _pair(tiny_checkpoint("llama"))
    input_ids = torch.randint(3, 128, (1, 7), generator=torch.Generator().manual_seed(2))
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    past_key_values = formers.DynamicCache()
    generated_ids = inputs["input_ids"]
    cache_position = torch.arange(inputs["input_ids"].shape[1], dtype=torch.int64)
    for _ in range(10):
        outputs = ours(**inputs, cache_position=cache_position, past_key_values=past_key_values, use_cache=True)
        next_token_ids = outputs.logits[:, -1:].argmax(-1)
        generated_ids = torch.cat([generated_ids, next_token_ids], dim=-1)
        attention_mask = inputs["attention_mask"]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((attention_mask.shape[0], 1))], dim=-1)
        inputs = {"input_ids": next_token_ids, "attention_mask": attention_mask}
        cache_position = cache_position[-1:] + 1
    expected = ref.generate(input_ids, max_new_tokens=10, do_sample=False, pad_token_id=0)
    assert torch.equal(generated_ids, expected)
    assert torch.equal(ours.generate(input_ids, max_new_tokens=10, pad_token_id=0), expected)
    assert past_key_values.get_seq_length() == 16


@requires_shared(STORIES)
def test_stories260k_golden_greedy_ids():
    import json
    expected = json.loads((STORIES / "expected_greedy.json").read_text())
    model = formers.AutoModelForCausalLM.from_pretrained(STORIES)
    prompt = torch.tensor([expected["prompt_ids_with_bos"]])
    out = model.generate(prompt, max_new_tokens=30, do_sample=False)
    assert out[0, prompt.shape[1]:].tolist() == expected["greedy_30_new_ids"]
    out = model.generate(torch.tensor([[1]]), max_new_tokens=256, do_sample=False, eos_token_id=None)
    assert out[0, 1:].tolist() == expected["bos_only_greedy_256_new_ids"]


CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


@requires_shared(STORIES)
def test_iterative_multi_turn_generation_with_reused_cache(tmp_path):
    """kv_cache.md's "iterative generation" loop: one DynamicCache across turns equals cold runs."""
    def run(lib):
        tokenizer = lib.AutoTokenizer.from_pretrained(STORIES)
        tokenizer.chat_template = CHATML
        model = lib.AutoModelForCausalLM.from_pretrained(STORIES)
        user_prompts = ["Hello, what's your name?", "Btw, yesterday I was on a rock concert."]
        past_key_values = lib.DynamicCache()
        messages, transcript = [], []
        for prompt in user_prompts:
            messages.append({"role": "user", "content": prompt})
            inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                   return_dict=True)
            input_length = inputs["input_ids"].shape[1]
            outputs = model.generate(**inputs, do_sample=False, max_new_tokens=24, past_key_values=past_key_values)
            completion = tokenizer.decode(outputs[0, input_length:], skip_special_tokens=True)
            messages.append({"role": "assistant", "content": completion})
            transcript.append(outputs)
        return transcript, messages

    ours, ours_messages = run(formers)
    theirs, their_messages = run(transformers)
    assert ours_messages == their_messages
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_attention_mask_inferred_from_padding(tiny_checkpoint):
    ours, ref = _pair(tiny_checkpoint("llama"))
    ids, _ = _padded_batch(pad_id=0)
    kwargs = dict(max_new_tokens=8, pad_token_id=0, eos_token_id=2)
    assert torch.equal(ours.generate(ids, **kwargs), ref.generate(ids, **kwargs))


@requires_shared(STORIES)
def test_streamers_during_generate_match_transformers(capsys):
    from threading import Thread
    outputs = {}
    for lib in (formers, transformers):
        tokenizer = lib.AutoTokenizer.from_pretrained(STORIES)
        model = lib.AutoModelForCausalLM.from_pretrained(STORIES)
        inputs = tokenizer("Once upon a time", return_tensors="pt")
        model.generate(**inputs, max_new_tokens=40, streamer=lib.TextStreamer(tokenizer, skip_prompt=True))
        printed = capsys.readouterr().out
        streamer = lib.TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        thread = Thread(target=model.generate, kwargs=dict(**inputs, max_new_tokens=40, streamer=streamer))
        thread.start()
        chunks = list(streamer)
        thread.join()
        outputs[lib.__name__] = (printed, chunks)
    assert outputs["formers"] == outputs["transformers"]
    import json
    golden = json.loads((STORIES / "expected_greedy.json").read_text())["greedy_30_text"]
    assert ("Once upon a time" + "".join(outputs["formers"][1])).startswith(golden)
