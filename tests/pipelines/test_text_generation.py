"""pipeline("text-generation") against transformers 4.45.2's pipeline on a tiny checkpoint (greedy)."""
from __future__ import annotations

import pytest

from formers import AutoModelForCausalLM, AutoTokenizer, TextGenerationPipeline, pipeline
from formers.errors import UnknownTaskError

PROMPTS = ["The with statement", "A list", "Hello world, this is a"]
CHAT = [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "What is a tuple?"}]


@pytest.fixture(scope="module")
def pipes(generator_checkpoint):
    import transformers

    ours = pipeline("text-generation", model=str(generator_checkpoint))
    theirs = transformers.pipeline("text-generation", model=str(generator_checkpoint), device="cpu")
    return ours, theirs


CASES = [
    ("one string", PROMPTS[0], {}),
    ("strings", PROMPTS, {}),
    ("strings, batch_size=2 (left-padded)", PROMPTS, {"batch_size": 2}),
    ("new text only", PROMPTS[1], {"return_full_text": False}),
    ("token ids", PROMPTS[1], {"return_tensors": True}),
    ("chat", CHAT, {}),
    ("chat, reply only", CHAT, {"return_full_text": False}),
    ("chats, batch_size=2", [CHAT, CHAT[1:], [{"role": "user", "content": "Hi"}]], {"batch_size": 2}),
    ("continue the assistant's message", CHAT + [{"role": "assistant", "content": "A tuple"}], {}),
    ("stop sequence", PROMPTS[0], {"stop_sequence": " the"}),
    ("no cleanup", PROMPTS[2], {"clean_up_tokenization_spaces": False}),
]


@pytest.mark.parametrize("name,inputs,kwargs", CASES, ids=[c[0] for c in CASES])
def test_outputs_equal_transformers(pipes, name, inputs, kwargs):
    ours, theirs = pipes
    options = dict(max_new_tokens=6, do_sample=False, **kwargs)
    expected = theirs(inputs, **options)
    assert ours(inputs, **options) == expected


def test_num_return_sequences_groups_samples_per_prompt(pipes):
    """Sampled sequences come back grouped per prompt, decoded as model.generate's output for the same seed."""
    from formers import set_seed

    ours, _ = pipes
    options = dict(max_new_tokens=5, do_sample=True, top_k=20, num_return_sequences=3)
    set_seed(7)
    got = ours(PROMPTS[0], **options)
    set_seed(7)
    inputs = ours.tokenizer(PROMPTS[0], return_tensors="pt")
    sequences = ours.model.generate(**inputs, generation_config=ours.generation_config, **options)
    prompt_chars = len(ours.tokenizer.decode(inputs["input_ids"][0], skip_special_tokens=True))
    expected = [PROMPTS[0] + ours.tokenizer.decode(s, skip_special_tokens=True)[prompt_chars:] for s in sequences]
    assert [r["generated_text"] for r in got] == expected and len(expected) == 3
    assert [len(group) for group in ours(PROMPTS[:2], **options)] == [3, 3]


def test_greedy_num_return_sequences_is_refused_like_transformers(pipes):
    ours, theirs = pipes
    with pytest.raises(ValueError) as oracle_error:
        theirs(PROMPTS[0], max_new_tokens=3, do_sample=False, num_return_sequences=2)
    with pytest.raises(ValueError, match="num_return_sequences"):
        ours(PROMPTS[0], max_new_tokens=3, do_sample=False, num_return_sequences=2)
    assert "num_return_sequences" in str(oracle_error.value)


def test_model_and_tokenizer_objects_device_and_dtype(generator_checkpoint):
    import torch

    model = AutoModelForCausalLM.from_pretrained(generator_checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(generator_checkpoint)
    by_object = pipeline("text-generation", model=model, tokenizer=tokenizer, device="cpu")
    by_path = pipeline("text-generation", model=str(generator_checkpoint), torch_dtype="bfloat16", device=-1)
    assert isinstance(by_object, TextGenerationPipeline) and by_object.device == torch.device("cpu")
    assert by_path.torch_dtype == torch.bfloat16
    assert by_object(PROMPTS[0], max_new_tokens=4, do_sample=False)[0]["generated_text"].startswith(PROMPTS[0])
    assert model.generation_config.max_new_tokens is None  # the pipeline's tweaks stay on its own copy


def test_streamer_receives_the_new_text(generator_checkpoint):
    from formers import TextIteratorStreamer

    pipe = pipeline("text-generation", model=str(generator_checkpoint))
    streamer = TextIteratorStreamer(pipe.tokenizer, skip_prompt=True)
    out = pipe(PROMPTS[0], max_new_tokens=5, do_sample=False, streamer=streamer, return_full_text=False)
    assert "".join(streamer) == out[0]["generated_text"]


def test_unknown_task_lists_the_supported_ones():
    with pytest.raises(UnknownTaskError, match="text-generation") as info:
        pipeline("zero-shot-classification", model="unused")
    assert isinstance(info.value, KeyError) and "zero-shot-classification" in str(info.value)


def test_batches_are_left_padded_whatever_the_tokenizer_says(generator_checkpoint):
    """formers pads pipeline batches on the left even when the tokenizer's padding_side is "right" (4.45.2's
    pipeline follows padding_side and so right-pads, which corrupts a decoder's continuation): batched outputs
    equal the per-prompt ones and 4.45.2's pipeline run with a left-padding tokenizer."""
    import transformers

    model = AutoModelForCausalLM.from_pretrained(generator_checkpoint)
    right = AutoTokenizer.from_pretrained(generator_checkpoint, padding_side="right")
    assert right.padding_side == "right"
    ours = pipeline("text-generation", model=model, tokenizer=right)
    oracle = transformers.pipeline("text-generation", model=str(generator_checkpoint), device="cpu",
                                   tokenizer=transformers.AutoTokenizer.from_pretrained(generator_checkpoint,
                                                                                        padding_side="left"))
    prompts = ["Hello", PROMPTS[2], "A list is a mutable sequence; a", PROMPTS[1]]  # lengths differ
    for options in ({}, dict(return_full_text=False), dict(return_tensors=True)):
        options.update(max_new_tokens=8, do_sample=False)
        batched = ours(prompts, batch_size=4, **options)
        assert batched == oracle(prompts, batch_size=4, **options)
        for prompt, [row] in zip(prompts, batched):
            [alone] = ours(prompt, **options)
            if "return_tensors" in options:  # a batched row keeps its left padding: the same ids after it
                pads = len(row["generated_token_ids"]) - len(alone["generated_token_ids"])
                assert row["generated_token_ids"][:pads] == [right.pad_token_id] * pads
                row = {"generated_token_ids": row["generated_token_ids"][pads:]}
            assert row == alone
    assert right.padding_side == "right"  # the pipeline left the caller's tokenizer as it was
