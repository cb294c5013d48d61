"""torch.compile(model.generate, fullgraph=True) with generation settings passed as keyword arguments of the
compiled call (tokens equal transformers 4.45.2's uncompiled generate() with the same arguments), and the
refusals of what a compiled generate() cannot run: a streamer and `stop_strings`. Dynamo's "eager"
backend traces exactly what inductor would be given without compiling kernels, so these tests stay fast.
"""
from __future__ import annotations

import pytest
import torch
import transformers

import formers
from formers.errors import GenerationError

from ..conftest import STORIES, requires_shared

pytestmark = requires_shared(STORIES)

PROMPTS = torch.tensor([[1, 400, 401, 402, 403, 404], [0, 0, 1, 300, 301, 302], [0, 0, 0, 0, 1, 500]])
MASK = (PROMPTS != 0).long()
GREEDY = {"max_new_tokens": 8, "repetition_penalty": 1.3, "eos_token_id": 422}  # row 0 stops early
SAMPLING = {"max_new_tokens": 5, "do_sample": True, "top_k": 20, "top_p": 0.9, "temperature": 0.8}


class CountingBackend:
    """Dynamo backend that runs each traced graph as is and counts the graphs."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1
        return graph_module.forward


@pytest.fixture(scope="module")
def models():
    return (formers.AutoModelForCausalLM.from_pretrained(STORIES),
            transformers.AutoModelForCausalLM.from_pretrained(STORIES))


def test_settings_passed_to_the_compiled_call(models):
    """Each call's keyword arguments are honoured (new values trace a new graph, repeated ones reuse it)."""
    ours, oracle = models
    backend = CountingBackend()
    compiled = torch.compile(ours.generate, backend=backend, fullgraph=True)
    for settings in (GREEDY, SAMPLING, GREEDY):
        torch.manual_seed(0)
        expected = oracle.generate(PROMPTS, attention_mask=MASK, pad_token_id=0, **settings)
        assert expected.shape[1] == PROMPTS.shape[1] + settings["max_new_tokens"]  # no early stop to differ on
        torch.manual_seed(0)
        out = compiled(PROMPTS, attention_mask=MASK, pad_token_id=0, **settings)
        assert torch.equal(out, expected), settings
    assert (expected[0, -1] == 0) and backend.graphs == 2


@pytest.mark.parametrize("argument", ["streamer", "stop_strings"])
def test_compiled_generate_refuses(models, argument):
    """The refusal names the argument: inside the compiled call (Dynamo reports our GenerationError as the
    exception it observed) and as our own type where generate() checks it."""
    ours, _ = models
    tokenizer = formers.AutoTokenizer.from_pretrained(STORIES)
    given = {"streamer": {"streamer": formers.TextStreamer(tokenizer)},
             "stop_strings": {"stop_strings": ["the"], "tokenizer": tokenizer}}[argument]
    other = ({"streamer", "stop_strings"} - {argument}).pop()
    compiled = torch.compile(ours.generate, backend="eager", fullgraph=True)
    with pytest.raises(torch._dynamo.exc.Unsupported) as refused:
        compiled(PROMPTS[:1], max_new_tokens=3, pad_token_id=0, **given)
    message = str(refused.value)
    assert f"GenerationError('a compiled generate() takes no `{argument}`" in message and f"`{other}`" not in message

    with pytest.MonkeyPatch.context() as patch:  # the check itself, outside Dynamo: our exception type
        patch.setattr(torch.compiler, "is_compiling", lambda: True)
        with pytest.raises(GenerationError, match=f"compiled generate\\(\\) takes no `{argument}`") as refused:
            ours.generate(PROMPTS[:1], max_new_tokens=3, pad_token_id=0, **given)
    assert f"`{other}`" not in str(refused.value)
    assert ours.generate(PROMPTS[:1], max_new_tokens=3, pad_token_id=0, **given).shape == (1, 9)  # uncompiled: runs
