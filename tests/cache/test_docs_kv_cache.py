"""The examples of transformers 4.45's docs/source/en/kv_cache.md ("Best Practices for Generation with
Cache"), each run as written except: `transformers` -> `formers`, a tiny local checkpoint for the hub
id (stories260K with a ChatML template; a tiny Mistral for the sliding-window example) and "cpu"
where the doc says "cuda". Every output is checked against transformers 4.45.2 running the same
code. Where 4.45.2 cannot run an example on CPU, the reference is 4.45.2 running it with the cache it can
build, named in that test's docstring: the offloaded examples (4.45.2's OffloadedCache needs CUDA, its
generate() has no "offloaded", and its OffloadedStaticCache pins memory, which needs an accelerator) are
compared with 4.45.2's DynamicCache / StaticCache runs, which an offloaded cache must reproduce exactly.
"""
from __future__ import annotations

import copy

import pytest
import torch
import transformers

from ..conftest import STORIES, build_oracle_checkpoint


@pytest.fixture(scope="module")
def mistral_chat_dir(tmp_path_factory):
    """A tiny Mistral (window 8) sharing stories260K's 512-token vocabulary and tokenizer."""
    import formers

    folder = build_oracle_checkpoint(tmp_path_factory.mktemp("mistral_chat"), "mistral", vocab_size=512,
                                     sliding_window=8, max_position_embeddings=512)
    formers.AutoTokenizer.from_pretrained(STORIES).save_pretrained(folder)
    return folder


def _custom_generation_loop(library, chat_model_dir):
    import torch
    AutoTokenizer, AutoModelForCausalLM, DynamicCache = (library.AutoTokenizer, library.AutoModelForCausalLM,
                                                         library.DynamicCache)

    model_id = chat_model_dir
    model = AutoModelForCausalLM.from_pretrained(model_id, torch_dtype=torch.bfloat16, device_map="cpu")
    tokenizer = AutoTokenizer.from_pretrained(model_id)

    past_key_values = DynamicCache()
    messages = [{"role": "user", "content": "Hello, what's your name."}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True).to("cpu")

    generated_ids = inputs.input_ids
    cache_position = torch.arange(inputs.input_ids.shape[1], dtype=torch.int64, device="cpu")
    max_new_tokens = 10

    for _ in range(max_new_tokens):
        outputs = model(**inputs, cache_position=cache_position, past_key_values=past_key_values, use_cache=True)
        # Greedily sample one next token
        next_token_ids = outputs.logits[:, -1:].argmax(-1)
        generated_ids = torch.cat([generated_ids, next_token_ids], dim=-1)
        # Prepare inputs for the next generation step by leaaving unprocessed tokens, in our case we have only one new token
        # and expanding attn mask for the new token, as explained above
        attention_mask = inputs["attention_mask"]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((attention_mask.shape[0], 1))], dim=-1)
        inputs = {"input_ids": next_token_ids, "attention_mask": attention_mask}
        cache_position = cache_position[-1:] + 1 # add one more position for the next token

    text = tokenizer.batch_decode(generated_ids, skip_special_tokens=True)[0]
    return generated_ids, text


def test_custom_generation_loop_with_cache_position(chat_model_dir):
    import formers

    generated_ids, text = _custom_generation_loop(formers, chat_model_dir)
    expected_ids, expected_text = _custom_generation_loop(transformers, chat_model_dir)
    assert torch.equal(generated_ids, expected_ids) and text == expected_text
    assert text.startswith("<|im_start|>user") and generated_ids.shape[1] > 10


@pytest.fixture(scope="module")
def head_dim_64_dir(tmp_path_factory):
    """A tiny Llama with 64-wide heads (quanto groups 64 values of every row: stories260K's 8-wide heads
    cannot be grouped so), sharing stories260K's tokenizer."""
    import formers

    folder = build_oracle_checkpoint(tmp_path_factory.mktemp("head_dim_64"), "llama", vocab_size=512,
                                     hidden_size=128, num_attention_heads=2, num_key_value_heads=1)
    formers.AutoTokenizer.from_pretrained(STORIES).save_pretrained(folder)
    return folder


def _quantized_cache_example(library, ckpt):
    import torch
    AutoTokenizer, AutoModelForCausalLM = library.AutoTokenizer, library.AutoModelForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    model = AutoModelForCausalLM.from_pretrained(ckpt, torch_dtype=torch.float16).to("cpu")
    inputs = tokenizer("I like rock music because", return_tensors="pt").to(model.device)

    out = model.generate(**inputs, do_sample=False, max_new_tokens=20, cache_implementation="quantized", cache_config={"nbits": 4, "backend": "quanto"})
    quantized = tokenizer.batch_decode(out, skip_special_tokens=True)[0]

    out = model.generate(**inputs, do_sample=False, max_new_tokens=20)
    plain = tokenizer.batch_decode(out, skip_special_tokens=True)[0]
    return quantized, plain


def test_quantized_cache_example(head_dim_64_dir):
    pytest.importorskip("quanto")  # the example's backend (the `test` extra installs it)
    import formers

    ours = _quantized_cache_example(formers, head_dim_64_dir)
    assert ours == _quantized_cache_example(transformers, head_dim_64_dir)
    assert ours[0].startswith("I like rock music because")


def test_offloaded_cache_example(chat_model_dir):
    """Reference: 4.45.2's generate() with its DynamicCache (its OffloadedCache needs CUDA, and its generate()
    does not accept cache_implementation="offloaded"); offloading must not change a token."""
    import torch
    from formers import AutoTokenizer, AutoModelForCausalLM
    ckpt = chat_model_dir

    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    model = AutoModelForCausalLM.from_pretrained(ckpt, torch_dtype=torch.float16).to("cpu")
    inputs = tokenizer("Fun fact: The shortest", return_tensors="pt").to(model.device)

    out = model.generate(**inputs, do_sample=False, max_new_tokens=23, cache_implementation="offloaded")
    offloaded = tokenizer.batch_decode(out, skip_special_tokens=True)[0]

    out = model.generate(**inputs, do_sample=False, max_new_tokens=23)
    assert tokenizer.batch_decode(out, skip_special_tokens=True)[0] == offloaded

    reference = transformers.AutoModelForCausalLM.from_pretrained(ckpt, torch_dtype=torch.float16)
    expected = reference.generate(**inputs, do_sample=False, max_new_tokens=23)
    assert torch.equal(out, expected) and offloaded == tokenizer.batch_decode(expected, skip_special_tokens=True)[0]


def _resilient_generate_example(ckpt, first_generate_hook=None, library=None):
    import torch
    import formers
    library = formers if library is None else library
    AutoTokenizer, AutoModelForCausalLM = library.AutoTokenizer, library.AutoModelForCausalLM
    def resilient_generate(model, *args, **kwargs):
        oom = False
        try:
            return model.generate(*args, **kwargs)
        except torch.cuda.OutOfMemoryError as e:
            print(e)
            print("retrying with cache_implementation='offloaded'")
            oom = True
        if oom:
            torch.cuda.empty_cache()
            kwargs["cache_implementation"] = "offloaded"
            return model.generate(*args, **kwargs)

    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    model = AutoModelForCausalLM.from_pretrained(ckpt, torch_dtype=torch.float16).to("cpu")
    if first_generate_hook is not None:
        first_generate_hook(model)
    prompt = ["okay "*100 + "Fun fact: The most"]  # 1000 repeats in the doc; stories260K holds 512 positions
    inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
    beams = { "num_beams": 40, "num_beam_groups": 40, "num_return_sequences": 40, "diversity_penalty": 1.0, "max_new_tokens": 23, "early_stopping": True, }
    out = resilient_generate(model, **inputs, **beams)
    responses = tokenizer.batch_decode(out[:,-28:], skip_special_tokens=True)
    return out, responses


def test_offloaded_cache_as_out_of_memory_fallback(chat_model_dir, capsys):
    """The first run is compared with 4.45.2 running the same example; the simulated fallback (offloaded,
    which 4.45.2 cannot run on CPU) must give that same oracle output."""
    out, responses = _resilient_generate_example(chat_model_dir)
    expected, expected_responses = _resilient_generate_example(chat_model_dir, library=transformers)
    assert torch.equal(out, expected) and responses == expected_responses and len(responses) == 40

    def fail_once_without_offloading(model):  # CPU never runs out of GPU memory: simulate it
        generate = model.generate

        def flaky(*args, **kwargs):
            if kwargs.get("cache_implementation") != "offloaded":
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.83 GiB. GPU")
            return generate(*args, **kwargs)
        model.generate = flaky

    fallback, _ = _resilient_generate_example(chat_model_dir, fail_once_without_offloading)
    assert "retrying with cache_implementation='offloaded'" in capsys.readouterr().out
    assert torch.equal(fallback, expected)


@pytest.mark.parametrize("implementation", ["static", "offloaded_static"])
def test_static_and_offloaded_static_examples(chat_model_dir, implementation):
    """Reference: 4.45.2 running the example with cache_implementation="static" (its "offloaded_static"
    fails on CPU: the cache pins memory, which needs an accelerator)."""
    import torch
    from formers import AutoTokenizer, AutoModelForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir)
    model = AutoModelForCausalLM.from_pretrained(chat_model_dir, torch_dtype=torch.float16, device_map="auto")
    inputs = tokenizer("Hello, my name is", return_tensors="pt").to(model.device)

    # simply pass the cache implementation="static"
    out = model.generate(**inputs, do_sample=False, max_new_tokens=20, cache_implementation=implementation)
    text = tokenizer.batch_decode(out, skip_special_tokens=True)[0]
    reference = transformers.AutoModelForCausalLM.from_pretrained(chat_model_dir, torch_dtype=torch.float16)
    expected = reference.generate(**inputs, do_sample=False, max_new_tokens=20, cache_implementation="static")
    assert torch.equal(out, expected) and text.startswith("Hello") and out.shape[1] == inputs.input_ids.shape[1] + 20


def test_sliding_window_cache_example(mistral_chat_dir):
    import torch
    from formers import AutoTokenizer, AutoModelForCausalLM, SinkCache

    tokenizer = AutoTokenizer.from_pretrained(mistral_chat_dir)
    model = AutoModelForCausalLM.from_pretrained(mistral_chat_dir, torch_dtype=torch.float16).to("cpu")
    inputs = tokenizer("Yesterday I was on a rock concert and.", return_tensors="pt").to(model.device)

    # can be used by passing in cache implementation
    out = model.generate(**inputs, do_sample=False, max_new_tokens=30, cache_implementation="sliding_window")
    tokenizer.batch_decode(out, skip_special_tokens=True)[0]

    reference = transformers.AutoModelForCausalLM.from_pretrained(mistral_chat_dir, torch_dtype=torch.float16)
    expected = reference.generate(**inputs, do_sample=False, max_new_tokens=30)  # 4.45's own cache fails to build
    assert torch.equal(out, expected)


def test_sink_cache_example(chat_model_dir):
    import torch
    from formers import AutoTokenizer, AutoModelForCausalLM, SinkCache

    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir)
    model = AutoModelForCausalLM.from_pretrained(chat_model_dir, torch_dtype=torch.float16).to("cpu")
    inputs = tokenizer("This is a long story about unicorns, fairies and magic.", return_tensors="pt").to(model.device)

    # get our cache, specify number of sink tokens and window size
    # Note that window size already includes sink tokens, so has to be larger
    past_key_values = SinkCache(window_length=256, num_sink_tokens=4)
    out = model.generate(**inputs, do_sample=False, max_new_tokens=30, past_key_values=past_key_values)
    text = tokenizer.batch_decode(out, skip_special_tokens=True)[0]

    reference = transformers.AutoModelForCausalLM.from_pretrained(chat_model_dir, torch_dtype=torch.float16)
    expected = reference.generate(**inputs, do_sample=False, max_new_tokens=30,
                                  past_key_values=transformers.SinkCache(window_length=256, num_sink_tokens=4))
    assert torch.equal(out, expected) and text.startswith("This is a long story")


def test_iterative_generation_with_cache(chat_model_dir):
    import torch
    from formers import AutoTokenizer,AutoModelForCausalLM
    from formers.cache_utils import (
        DynamicCache,
        SinkCache,
        StaticCache,
        SlidingWindowCache,
        QuantoQuantizedCache,
        QuantizedCacheConfig,
    )

    model_id = chat_model_dir
    model = AutoModelForCausalLM.from_pretrained(model_id, torch_dtype=torch.bfloat16, device_map='auto')
    tokenizer = AutoTokenizer.from_pretrained(model_id)

    user_prompts = ["Hello, what's your name?", "Btw, yesterday I was on a rock concert."]

    past_key_values = DynamicCache()
    max_cache_length = past_key_values.get_max_length()

    messages = []
    for prompt in user_prompts:
        messages.append({"role": "user", "content": prompt})
        inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True).to(model.device)
        if isinstance(past_key_values, SinkCache):
            inputs = {k: v[:, -max_cache_length:] for k, v in inputs.items()}

        input_length = inputs["input_ids"].shape[1]

        outputs = model.generate(**inputs, do_sample=False, max_new_tokens=256, past_key_values=past_key_values)
        completion = tokenizer.decode(outputs[0, input_length: ], skip_special_tokens=True)
        messages.append({"role": "assistant", "content": completion})

    assert messages == _oracle_chat(model_id, user_prompts, tokenizer)


def _oracle_chat(model_id, user_prompts, tokenizer) -> list[dict]:
    """The multi-turn loop above run by transformers 4.45.2 with its DynamicCache."""
    model = transformers.AutoModelForCausalLM.from_pretrained(model_id, torch_dtype=torch.bfloat16)
    past_key_values, messages = transformers.DynamicCache(), []
    for prompt in user_prompts:
        messages.append({"role": "user", "content": prompt})
        inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True)
        outputs = model.generate(**inputs, do_sample=False, max_new_tokens=256, past_key_values=past_key_values)
        completion = tokenizer.decode(outputs[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        messages.append({"role": "assistant", "content": completion})
    return messages


def test_reuse_cache_to_continue_generation(chat_model_dir):
    import copy
    import torch
    from formers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, StaticCache

    model_id = chat_model_dir
    model = AutoModelForCausalLM.from_pretrained(model_id, torch_dtype=torch.bfloat16, device_map="cpu")
    tokenizer = AutoTokenizer.from_pretrained(model_id)

    # Init StaticCache with big enough max-length (1024 tokens for the below example)
    # You can also init a DynamicCache, if that suits you better
    prompt_cache = StaticCache(config=model.config, max_batch_size=1, max_cache_len=1024, device="cpu", dtype=torch.bfloat16)

    INITIAL_PROMPT = "You are a helpful assistant. "
    inputs_initial_prompt = tokenizer(INITIAL_PROMPT, return_tensors="pt").to("cpu")
    # This is the common prompt cached, we need to run forward without grad to be abel to copy
    with torch.no_grad():
        prompt_cache = model(**inputs_initial_prompt, past_key_values = prompt_cache).past_key_values

    prompts = ["Help me to write a blogpost about travelling.", "What is the capital of France?"]
    responses = []
    for prompt in prompts:
        new_inputs = tokenizer(INITIAL_PROMPT + prompt, return_tensors="pt").to("cpu")
        past_key_values = copy.deepcopy(prompt_cache)
        outputs = model.generate(**new_inputs, past_key_values=past_key_values,max_new_tokens=20)
        response = tokenizer.batch_decode(outputs)[0]
        responses.append(response)

    assert prompt_cache.get_seq_length() == inputs_initial_prompt.input_ids.shape[1]  # the copies left it alone
    assert responses == _oracle_reuse_responses(model_id, INITIAL_PROMPT, prompts, tokenizer)


def _oracle_reuse_responses(model_id, initial_prompt, prompts, tokenizer) -> list[str]:
    """The same example run by transformers 4.45.2 (bf16 prefix-then-continue rounds differently from a
    cold prefill, so the reference is the oracle doing the same steps)."""
    model = transformers.AutoModelForCausalLM.from_pretrained(model_id, torch_dtype=torch.bfloat16)
    prompt_cache = transformers.StaticCache(config=model.config, max_batch_size=1, max_cache_len=1024, device="cpu",
                                            dtype=torch.bfloat16)
    with torch.no_grad():
        prompt_cache = model(**tokenizer(initial_prompt, return_tensors="pt"), past_key_values=prompt_cache).past_key_values
    responses = []
    for prompt in prompts:
        outputs = model.generate(**tokenizer(initial_prompt + prompt, return_tensors="pt"),
                                 past_key_values=copy.deepcopy(prompt_cache), max_new_tokens=20)
        responses.append(tokenizer.batch_decode(outputs)[0])
    return responses


def test_legacy_cache_format(chat_model_dir):
    """The returned sequences and legacy (key, value) tuples are compared with 4.45.2's."""
    import torch
    from formers import AutoTokenizer, AutoModelForCausalLM, DynamicCache

    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir)
    model = AutoModelForCausalLM.from_pretrained(chat_model_dir, torch_dtype=torch.float16, device_map="auto")
    inputs = tokenizer("Hello, my name is", return_tensors="pt").to(model.device)

    # `return_dict_in_generate=True` is required to return the cache. `return_legacy_cache` forces the returned cache
    # to be of the legacy type
    generation_outputs = model.generate(**inputs, return_dict_in_generate=True, return_legacy_cache=True, max_new_tokens=5)

    # We can convert a legacy cache to a DynamicCache -- and the other way around. This is helpful if you have custom
    # logic to manipulate a cache in a specific format.
    cache = DynamicCache.from_legacy_cache(generation_outputs.past_key_values)
    legacy_format_cache = cache.to_legacy_cache()

    assert isinstance(generation_outputs.past_key_values, tuple) and len(legacy_format_cache) == 5
    for (k, v), (k2, v2) in zip(generation_outputs.past_key_values, legacy_format_cache):
        assert torch.equal(k, k2) and torch.equal(v, v2) and k.shape[2] == inputs.input_ids.shape[1] + 4

    reference = transformers.AutoModelForCausalLM.from_pretrained(chat_model_dir, torch_dtype=torch.float16)
    expected = reference.generate(**inputs, return_dict_in_generate=True, return_legacy_cache=True, max_new_tokens=5)
    assert torch.equal(generation_outputs.sequences, expected.sequences)
    assert isinstance(expected.past_key_values, tuple) and len(expected.past_key_values) == len(legacy_format_cache)
    for (k, v), (k2, v2) in zip(legacy_format_cache, expected.past_key_values):
        assert torch.equal(k, k2) and torch.equal(v, v2)  # fp16 on CPU: the same kernels, bit-identical
