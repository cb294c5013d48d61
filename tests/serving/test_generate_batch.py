"""model.generate_batch() on the bundled default model: text, token-id and chat inputs, results in input
order, each equal to transformers 4.45.2's generate() of that input alone under the same settings (the
model's generation config: greedy with its repetition penalty; or per-item seeded SamplingParams)."""
from __future__ import annotations

import pytest
import torch

from formers import AutoTokenizer
from formers.errors import ServingError
from formers.serving import EngineConfig, SamplingParams

from .engine_helpers import model_pair, one_thread, reference

pytestmark = pytest.mark.usefixtures("one_thread")
_ = one_thread

PROMPTS = ["The list type", "def foo():", "import os\n", "Return the number of"]


@pytest.fixture(scope="module")
def default_model():
    ours, theirs = model_pair("default")
    return ours, theirs, AutoTokenizer.from_pretrained("formers/default")


def test_generation_config_settings_and_input_kinds(default_model):
    ours, theirs, tokenizer = default_model
    chat = [{"role": "user", "content": "What is a list?"}]
    inputs = PROMPTS + [chat, tokenizer("x = 1").input_ids]
    results = ours.generate_batch(inputs, tokenizer=tokenizer, max_new_tokens=24, progress_bar=False,
                                  engine_config=EngineConfig(max_batched_tokens=16, block_size=4, num_blocks=96))
    assert len(results) == len(inputs)
    for item, result in zip(inputs, results):
        ids = (tokenizer(item).input_ids if isinstance(item, str) else
               tokenizer.apply_chat_template(item, add_generation_prompt=True) if isinstance(item[0], dict) else item)
        prompt = torch.tensor([ids])
        expected = theirs.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=24)[0, len(ids):]
        assert result.prompt_token_ids == ids
        assert result.token_ids == expected.tolist()
        assert result.text == tokenizer.decode(expected, skip_special_tokens=True)
        assert result.finish_reason == ("stop" if expected[-1].item() in (0, 3) else "length")


def test_per_item_sampling_params_seeded(default_model):
    ours, theirs, tokenizer = default_model
    params = [SamplingParams(max_tokens=12, temperature=0.9, top_k=30, seed=i, logprobs=0) for i in range(len(PROMPTS))]
    results = ours.generate_batch(PROMPTS, tokenizer=tokenizer, sampling_params=params, progress_bar=False)
    for prompt, p, result in zip(PROMPTS, params, results):
        assert result.token_ids == reference(theirs, tokenizer(prompt).input_ids, p, pad=1)
        assert [lp.token_id for lp in result.logprobs] == result.token_ids and all(not lp.top for lp in result.logprobs)


def test_bad_settings_are_named(default_model):
    ours, _, tokenizer = default_model
    with pytest.raises(ServingError, match="num_beams"):
        ours.generate_batch(["a"], tokenizer=tokenizer, num_beams=2, progress_bar=False)
    with pytest.raises(ServingError, match="not_a_setting"):
        ours.generate_batch(["a"], tokenizer=tokenizer, not_a_setting=2, progress_bar=False)
    with pytest.raises(ServingError, match=r"inputs\[0\].*tokenizer"):
        ours.generate_batch(["a"], progress_bar=False)
