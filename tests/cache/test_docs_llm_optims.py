"""transformers 4.45's docs/source/en/llm_optims.md, "Static kv-cache and torch.compile": the examples
run as written except `transformers` -> `formers`, stories260K for the hub ids and "cpu" for "cuda"
(marked slow: inductor compiles for a while on CPU); each slow example's tokens equal those of
transformers 4.45.2 running the same example uncompiled (compiling must not change a token, and
compiling the oracle too would double the slowest tests). The fast tests check what makes them worthwhile:
a StaticCache decode step compiled with fullgraph=True is traced once and never again, across steps
and across generate() calls; and the whole of generate() compiles with fullgraph=True (the doc's
"generate() compilation" tab) into one graph that gives transformers 4.45.2's tokens.
"""
from __future__ import annotations

import pytest
import torch

import formers

from ..conftest import STORIES, requires_shared


class CountingBackend:
    """A torch.compile backend that runs the traced graph as is and counts the graphs it was given."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1
        return graph_module.forward


def decode_one_tokens(model, cur_token, input_pos, cache_position, past_key_values):
    logits = model(
        cur_token,
        position_ids=input_pos,
        cache_position=cache_position,
        past_key_values=past_key_values,
        return_dict=False,
        use_cache=True
    )[0]
    new_token = torch.argmax(logits[:, -1], dim=-1)[:, None]
    return new_token


@pytest.mark.parametrize("cache_class", ["StaticCache", "SlidingWindowCache"])
def test_compiled_decode_step_is_traced_once(cache_class, mistral_dir):
    """fullgraph=True succeeds, and 12 decode steps (past the 6-token window) reuse one graph."""
    model = formers.AutoModelForCausalLM.from_pretrained(mistral_dir)
    ids = torch.randint(3, 128, (2, 5), generator=torch.Generator().manual_seed(0))

    def run(step) -> torch.Tensor:
        cache = getattr(formers, cache_class)(config=model.config, max_batch_size=2, max_cache_len=64)
        with torch.no_grad():
            logits = model(ids, cache_position=torch.arange(5), past_key_values=cache, return_dict=False,
                           use_cache=True)[0]
            tokens = [torch.argmax(logits[:, -1], dim=-1)[:, None]]
            cache_position = torch.tensor([5])
            for _ in range(12):
                tokens.append(step(model, tokens[-1].clone(), None, cache_position, cache))
                cache_position += 1
        return torch.cat([ids, *tokens], dim=1)

    backend = CountingBackend()
    compiled = run(torch.compile(decode_one_tokens, backend=backend, fullgraph=True))
    assert backend.graphs == 1
    assert torch.equal(compiled, run(decode_one_tokens))
    dynamic = formers.DynamicCache()  # and the cache agrees with the default one
    with torch.no_grad():
        logits = model(ids, past_key_values=dynamic, use_cache=True).logits
        tokens = [torch.argmax(logits[:, -1], dim=-1)[:, None]]
        for _ in range(12):
            tokens.append(torch.argmax(model(tokens[-1], past_key_values=dynamic).logits[:, -1], -1)[:, None])
    assert torch.equal(compiled, torch.cat([ids, *tokens], dim=1))


@requires_shared(STORIES)
def test_compiled_forward_with_static_generate_is_not_recompiled_between_calls():
    model = formers.AutoModelForCausalLM.from_pretrained(STORIES)
    tokenizer = formers.AutoTokenizer.from_pretrained(STORIES)
    inputs = tokenizer("The theory of special relativity states ", return_tensors="pt")
    expected = model.generate(**inputs, max_new_tokens=12, do_sample=False, pad_token_id=2)
    model.generation_config.cache_implementation = "static"
    backend = CountingBackend()
    model.forward = torch.compile(model.forward, backend=backend, fullgraph=True)
    for _ in range(3):
        assert torch.equal(model.generate(**inputs, max_new_tokens=12, do_sample=False, pad_token_id=2), expected)
    assert backend.graphs == 2  # one prefill graph, one decode graph, for all three calls


PADDED_PROMPTS = torch.tensor([[1, 400, 401, 402, 403, 404], [0, 0, 1, 300, 301, 302], [0, 0, 0, 0, 1, 500]])


@requires_shared(STORIES)
@pytest.mark.parametrize("settings", [
    {"eos_token_id": 422},  # rows 1 and 2 stop early (then get padding), row 3 runs to the end
    {"do_sample": True, "top_k": 20, "top_p": 0.9, "temperature": 0.8, "repetition_penalty": 1.3,
     "cache_implementation": "static"},
])
def test_whole_generate_compiles_to_one_graph(settings):
    """torch.compile(model.generate, fullgraph=True): no graph break anywhere in generate(), one graph for
    two calls, and 4.45.2's tokens (greedy with EOS on a left-padded batch; seeded sampling, static cache)."""
    import transformers

    models = {}
    for name, library in (("ours", formers), ("oracle", transformers)):
        model = library.AutoModelForCausalLM.from_pretrained(STORIES)
        model.generation_config.update(max_new_tokens=12, pad_token_id=0, **settings)
        models[name] = model
    mask = (PADDED_PROMPTS != 0).long()
    torch.manual_seed(0)
    expected = models["oracle"].generate(input_ids=PADDED_PROMPTS, attention_mask=mask)
    backend = CountingBackend()
    compiled = torch.compile(models["ours"].generate, backend=backend, fullgraph=True)
    for _ in range(2):
        torch.manual_seed(0)
        assert torch.equal(compiled(input_ids=PADDED_PROMPTS, attention_mask=mask), expected)
    assert backend.graphs == 1
    if "eos_token_id" in settings:
        assert (expected[:2, -1] == 0).all() and (expected[2, 6:] != 0).all()


@requires_shared(STORIES)
def test_compiled_generate_names_what_it_cannot_run():
    """Strategies whose loop reads the device each step get a clear refusal under fullgraph=True."""
    model = formers.AutoModelForCausalLM.from_pretrained(STORIES)
    ids = torch.tensor([[1, 400, 401, 402]])
    kwargs = dict(max_new_tokens=5, num_beams=2, pad_token_id=0)
    with pytest.raises(Exception, match="greedy search and sampling only, not beam_search"):
        torch.compile(model.generate, fullgraph=True, backend="eager")(ids, **kwargs)


@pytest.mark.slow
@requires_shared(STORIES)
def test_llm_optims_generate_compilation():
    import transformers
    from formers import AutoTokenizer, AutoModelForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(STORIES)
    model = AutoModelForCausalLM.from_pretrained(STORIES)
    expected = transformers.AutoModelForCausalLM.from_pretrained(STORIES).generate(
        **tokenizer("Relativity states ", return_tensors="pt"))

    model.generate = torch.compile(model.generate, fullgraph=True)
    input_text = "Relativity states "  # the doc's prompt is 25 stories260K tokens, past max_length=20
    input_ids = tokenizer(input_text, return_tensors="pt").to("cpu")

    outputs = model.generate(**input_ids)
    print(tokenizer.batch_decode(outputs, skip_special_tokens=True))
    assert torch.equal(outputs, expected)


def _no_compile(function, **options):
    """Stands in for torch.compile when the oracle runs an example."""
    return function


# 4.45.2 loaded with device_map="auto" on a machine without accelerators cannot build a static cache
# (`_get_cache` looks for a non-CPU device in hf_device_map: IndexError), so the oracle loads without one.
ORACLE_DEVICE_MAP = None


@pytest.mark.slow
@requires_shared(STORIES)
def test_llm_optims_cache_implementation_static():
    import transformers

    outputs = _cache_implementation_static(formers, torch.compile)
    assert torch.equal(outputs, _cache_implementation_static(transformers, _no_compile, ORACLE_DEVICE_MAP)) and outputs.shape[1] == 20


def _cache_implementation_static(library, compile, device_map="auto"):
    AutoTokenizer, AutoModelForCausalLM = library.AutoTokenizer, library.AutoModelForCausalLM
    import torch
    import os
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # To prevent long warnings :)

    tokenizer = AutoTokenizer.from_pretrained(STORIES)
    model = AutoModelForCausalLM.from_pretrained(STORIES, torch_dtype="auto", device_map=device_map)

    model.generation_config.cache_implementation = "static"

    model.forward = compile(model.forward, mode="reduce-overhead", fullgraph=True)
    input_text = "Relativity states "  # the doc's prompt is 25 stories260K tokens, past max_length=20
    input_ids = tokenizer(input_text, return_tensors="pt").to("cpu")

    outputs = model.generate(**input_ids)
    print(tokenizer.batch_decode(outputs, skip_special_tokens=True))
    return outputs


@pytest.mark.slow
@requires_shared(STORIES)
def test_llm_optims_static_cache_passed_to_generate():
    """Both generate() calls (the second continues in the same cache) give 4.45.2's tokens."""
    import transformers

    first, second, prompt_length = _static_cache_passed_to_generate(formers, torch.compile)
    expected_first, expected_second, _ = _static_cache_passed_to_generate(transformers, _no_compile, ORACLE_DEVICE_MAP)
    assert torch.equal(first, expected_first) and torch.equal(second, expected_second)
    assert second.shape[1] == prompt_length + 32 and torch.equal(second[:, :first.shape[1]], first)


def _static_cache_passed_to_generate(library, compile, device_map="auto"):
    AutoTokenizer, AutoModelForCausalLM, StaticCache = (library.AutoTokenizer, library.AutoModelForCausalLM,
                                                        library.StaticCache)
    import torch
    import os
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # To prevent long warnings :)

    tokenizer = AutoTokenizer.from_pretrained(STORIES)
    model = AutoModelForCausalLM.from_pretrained(STORIES, torch_dtype="auto", device_map=device_map)

    model.forward = compile(model.forward, mode="reduce-overhead", fullgraph=True)
    input_text = "The theory of special relativity states "
    input_ids = tokenizer(input_text, return_tensors="pt").to("cpu")
    prompt_length = input_ids.input_ids.shape[1]
    model.generation_config.max_new_tokens = 16

    past_key_values = StaticCache(
        config=model.config,
        max_batch_size=1,
        # If you plan to reuse the cache, make sure the cache length is large enough for all cases
        max_cache_len=prompt_length+(model.generation_config.max_new_tokens*2),
        device=model.device,
        dtype=model.dtype
    )
    outputs = model.generate(**input_ids, past_key_values=past_key_values)
    print(tokenizer.batch_decode(outputs, skip_special_tokens=True))

    # pass in the generated text and the same cache object to continue generation from where it left off. Optionally, in a
    # multi-turn conversation, append the new user input to the generated text.
    new_input_ids = outputs
    outputs = model.generate(new_input_ids, past_key_values=past_key_values)
    print(tokenizer.batch_decode(outputs, skip_special_tokens=True))
    return new_input_ids, outputs, prompt_length


@pytest.mark.slow
@requires_shared(STORIES)
def test_llm_optims_custom_decoding_with_compiled_step():
    import transformers

    generated_ids, text = _custom_decoding_with_compiled_step(formers, torch.compile)
    expected_ids, expected_text = _custom_decoding_with_compiled_step(transformers, _no_compile)
    assert torch.equal(generated_ids, expected_ids) and text == expected_text and len(text) == 2


def _custom_decoding_with_compiled_step(library, compile):
    AutoTokenizer, AutoModelForCausalLM, StaticCache = (library.AutoTokenizer, library.AutoModelForCausalLM,
                                                        library.StaticCache)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    prompts = [
        "Simply put, the theory of relativity states that ",
        "My favorite all time favorite condiment is ketchup.",
    ]

    NUM_TOKENS_TO_GENERATE = 40
    torch_device = "cpu"

    tokenizer = AutoTokenizer.from_pretrained(STORIES, pad_token="</s>", padding_side="right")
    model = AutoModelForCausalLM.from_pretrained(STORIES, device_map="sequential")
    inputs = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)

    batch_size, seq_length = inputs["input_ids"].shape
    with torch.no_grad():
        past_key_values = StaticCache(
            config=model.config, max_batch_size=2, max_cache_len=4096, device=torch_device, dtype=model.dtype
        )
        cache_position = torch.arange(seq_length, device=torch_device)
        generated_ids = torch.zeros(
            batch_size, seq_length + NUM_TOKENS_TO_GENERATE + 1, dtype=torch.int, device=torch_device
        )
        generated_ids[:, cache_position] = inputs["input_ids"].to(torch_device).to(torch.int)

        logits = model(
            **inputs, cache_position=cache_position, past_key_values=past_key_values,return_dict=False, use_cache=True
        )[0]
        next_token = torch.argmax(logits[:, -1], dim=-1)[:, None]
        generated_ids[:, seq_length] = next_token[:, 0]

        compiled = compile(decode_one_tokens, mode="reduce-overhead", fullgraph=True)
        cache_position = torch.tensor([seq_length + 1], device=torch_device)
        for _ in range(1, NUM_TOKENS_TO_GENERATE):
            with sdpa_kernel(SDPBackend.MATH):
                next_token = compiled(model, next_token.clone(), None, cache_position, past_key_values)
                generated_ids[:, cache_position] = next_token.int()
            cache_position += 1

    text = tokenizer.batch_decode(generated_ids, skip_special_tokens=True)
    return generated_ids, text
