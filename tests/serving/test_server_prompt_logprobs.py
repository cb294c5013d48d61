"""Prompt logprobs on /v1/completions (`echo` with `logprobs`, as OpenAI defines them): the prompt's
tokens come first, the first with null logprob, the others with the log-probabilities (and top
alternatives) transformers 4.45.2 gives on the same checkpoint; then the completion's, as without echo;
streamed the same; several prompts with n > 1 each get their own."""
from __future__ import annotations

import pytest
import torch

from .server_fixtures import DEFAULT_NAME, hf, served  # noqa: F401 (fixtures)

PROMPT = "The Python interpreter reads"


def _complete(served, **kwargs):
    kwargs.setdefault("temperature", 0)
    return served.client().completions.create(model=DEFAULT_NAME, max_tokens=6, **kwargs)


def _check_prompt_part(hf, ids: list[int], logprobs, top: int) -> None:
    with torch.no_grad():
        logits = hf.model(torch.tensor([ids])).logits[0, :-1].float()
    expected = torch.log_softmax(logits, dim=-1)
    chosen = expected.gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    assert logprobs.tokens[:len(ids)] == [hf.tokenizer.decode([t]) for t in ids]
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    torch.testing.assert_close(torch.tensor(logprobs.token_logprobs[1:len(ids)]), chosen, atol=1e-4, rtol=0)
    top_values, top_ids = expected.topk(top, dim=-1)
    for position, alternatives in enumerate(logprobs.top_logprobs[1:len(ids)]):
        assert list(alternatives) == [hf.tokenizer.decode([t]) for t in top_ids[position].tolist()]
        torch.testing.assert_close(torch.tensor(list(alternatives.values())), top_values[position], atol=1e-4, rtol=0)
    assert logprobs.text_offset[0] == 0


def test_echo_with_logprobs_scores_the_prompt(served, hf):
    ids = hf.prompt_ids(PROMPT)
    echoed = _complete(served, prompt=PROMPT, echo=True, logprobs=2).choices[0]
    plain = _complete(served, prompt=PROMPT, logprobs=2).choices[0]
    assert echoed.text == hf.tokenizer.decode(ids) + plain.text
    _check_prompt_part(hf, ids, echoed.logprobs, 2)
    assert echoed.logprobs.tokens[len(ids):] == plain.logprobs.tokens
    torch.testing.assert_close(torch.tensor(echoed.logprobs.token_logprobs[len(ids):]),
                               torch.tensor(plain.logprobs.token_logprobs), atol=1e-5, rtol=0)
    assert len(echoed.logprobs.tokens) == len(echoed.logprobs.text_offset) == len(echoed.logprobs.top_logprobs)


def test_streamed_echo_logprobs_equal_plain(served):
    plain = _complete(served, prompt=PROMPT, echo=True, logprobs=1).choices[0].logprobs
    chunks = list(_complete(served, prompt=PROMPT, echo=True, logprobs=1, stream=True))
    streamed = {"tokens": [], "token_logprobs": []}
    for chunk in chunks:
        for choice in chunk.choices:
            if choice.logprobs is not None:
                streamed["tokens"] += choice.logprobs.tokens
                streamed["token_logprobs"] += choice.logprobs.token_logprobs
    assert streamed["tokens"] == plain.tokens
    assert streamed["token_logprobs"][0] is None
    torch.testing.assert_close(torch.tensor(streamed["token_logprobs"][1:]), torch.tensor(plain.token_logprobs[1:]),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("logprobs", [0, 3])
def test_several_prompts_with_n_each_get_their_prompt(served, hf, logprobs):
    prompts = [PROMPT, "A list is"]
    result = _complete(served, prompt=prompts, echo=True, logprobs=logprobs, n=2, temperature=1.0, seed=4)
    assert len(result.choices) == 4
    for choice in result.choices:
        ids = hf.prompt_ids(prompts[choice.index // 2])
        if logprobs:
            _check_prompt_part(hf, ids, choice.logprobs, logprobs)
        else:
            assert choice.logprobs.tokens[:len(ids)] == [hf.tokenizer.decode([t]) for t in ids]
            assert all(top is None for top in choice.logprobs.top_logprobs)
        assert 1 <= len(choice.logprobs.tokens) - len(ids) <= 6  # then the completion's own
