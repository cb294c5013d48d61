"""LLMEngine's request lifecycle and errors: abort frees pages at once, back-pressure, prompts that can
never fit, SamplingParams validation naming the field, stop strings / stop ids / eos, streamed text that
adds up to the final text, and per-row warpers equal to 4.45.2's warpers applied row by row."""
from __future__ import annotations

import pytest
import torch
import transformers

from formers import AutoTokenizer
from formers.errors import EngineOverloadedError, ServingError
from formers.serving import EngineConfig, LLMEngine, SamplingParams
from formers.serving.sampler import apply_penalties, apply_warpers

from .engine_helpers import make_engine, model_pair, one_thread, reference, run_busy

pytestmark = pytest.mark.usefixtures("one_thread")
_ = one_thread


def test_abort_frees_pages_at_once_and_reports_abort():
    ours, _ = model_pair("llama")
    engine = make_engine(ours, num_blocks=64, block_size=4)
    params = SamplingParams(max_tokens=50, temperature=0.0, ignore_eos=True)
    engine.add_request("keep", list(range(1, 20)), params)
    engine.add_request("drop", list(range(1, 30)), params)
    for _ in range(3):
        engine.step()
    before = engine.stats()["kv_blocks_used"]
    engine.abort("drop")
    after = engine.stats()
    assert after["kv_blocks_used"] < before and after["running"] == 1
    outputs = engine.step()
    aborted = [o for o in outputs if o.request_id == "drop"]
    assert len(aborted) == 1 and aborted[0].finished and aborted[0].finish_reason == "abort"
    engine.abort("keep")
    engine.abort("unknown")  # a no-op
    assert engine.stats()["kv_blocks_used"] == 0
    engine.step()
    assert not engine.has_unfinished_requests()


def test_waiting_queue_is_bounded():
    ours, _ = model_pair("llama")
    engine = make_engine(ours, num_blocks=64, block_size=4, max_waiting=2)
    engine.add_request("a", [1, 2, 3], SamplingParams())
    engine.add_request("b", [1, 2, 3], SamplingParams())
    with pytest.raises(EngineOverloadedError, match="max_waiting"):
        engine.add_request("c", [1, 2, 3], SamplingParams())
    with pytest.raises(ServingError, match="already running"):
        engine.add_request("a", [1, 2, 3], SamplingParams())


def test_prompts_that_can_never_fit_are_refused():
    ours, _ = model_pair("llama")  # max_position_embeddings 256
    engine = make_engine(ours, num_blocks=8, block_size=4)
    with pytest.raises(ServingError, match="max_position_embeddings"):
        engine.add_request("long", [5] * 256, SamplingParams())
    with pytest.raises(ServingError, match="KV blocks"):
        engine.add_request("big", [5] * 30, SamplingParams(max_tokens=10))
    with pytest.raises(ServingError, match="empty"):
        engine.add_request("empty", [], SamplingParams())
    with pytest.raises(ServingError, match=r"\[0, 128\)"):
        engine.add_request("oov", [1, 500], SamplingParams())
    with pytest.raises(ServingError, match="stop_token_ids"):
        engine.add_request("bad_stop", [1, 2], SamplingParams(stop_token_ids=[1000]))
    with pytest.raises(ServingError, match="EngineConfig.max_num_seqs"):
        EngineConfig(max_num_seqs=0)


@pytest.mark.parametrize("field, value", [
    ("n", 0), ("max_tokens", 0), ("max_tokens", -1), ("temperature", -0.5), ("top_p", 0.0), ("top_p", 1.5),
    ("top_k", -1), ("min_p", 2.0), ("repetition_penalty", 0.0), ("presence_penalty", 3.0),
    ("frequency_penalty", "high"), ("logit_bias", {"x": 1.0}), ("logit_bias", {5: 500.0}), ("seed", 1.5),
    ("logprobs", -1), ("logprobs", 21), ("stop", [""]), ("max_tokens", True), ("ignore_eos", "yes"),
])
def test_sampling_params_name_the_bad_field(field, value):
    with pytest.raises(ServingError, match=f"SamplingParams.{field}"):
        SamplingParams(**{field: value})


def test_sampling_params_accept_json_shaped_values():
    params = SamplingParams(stop="###", logit_bias={"7": 2}, temperature=0)
    assert params.stop == ["###"] and params.logit_bias == {7: 2.0} and params.greedy


def test_eos_stop_ids_and_stop_strings_on_the_default_model():
    ours, theirs = model_pair("default")
    tokenizer = AutoTokenizer.from_pretrained("formers/default")
    prompt = tokenizer("The list type").input_ids
    free_run = reference(theirs, prompt, SamplingParams(max_tokens=40, temperature=0.0))
    text = tokenizer.decode(free_run, skip_special_tokens=True)
    stop = text[len(text) // 2: len(text) // 2 + 3]
    engine = LLMEngine(ours, tokenizer, EngineConfig(num_blocks=128))
    cases = {
        "free": SamplingParams(max_tokens=40, temperature=0.0),
        "stop_id": SamplingParams(max_tokens=40, temperature=0.0, stop_token_ids=[free_run[5]]),
        "stop_text": SamplingParams(max_tokens=40, temperature=0.0, stop=[stop]),
    }
    outputs = run_busy(engine, [(k, prompt, p) for k, p in cases.items()])
    finals = {k: v[-1] for k, v in outputs.items()}
    assert finals["free"].token_ids == free_run and finals["free"].text == text
    assert finals["free"].finish_reason == ("stop" if free_run[-1] in (0, 3) else "length")
    stop_at = free_run.index(free_run[5]) + 1
    assert finals["stop_id"].token_ids == free_run[:stop_at] and finals["stop_id"].finish_reason == "stop"
    assert finals["stop_text"].finish_reason == "stop" and finals["stop_text"].text == text[:text.index(stop)]
    for request_id, outs in outputs.items():  # streamed pieces add up to the final text, never past a stop
        assert "".join(o.new_text for o in outs) == finals[request_id].text
        assert all(o.prompt_tokens == len(prompt) for o in outs)


def test_per_row_warpers_equal_the_oracle_warpers_row_by_row():
    torch.manual_seed(0)
    logits = torch.randn(5, 300) * 3
    rows = [SamplingParams(temperature=0.7, top_k=10), SamplingParams(top_p=0.8),
            SamplingParams(temperature=1.3, top_k=40, top_p=0.6, min_p=0.05), SamplingParams(),
            SamplingParams(min_p=0.2, repetition_penalty=1.5)]
    prompts = [[1, 2, 3], [4], [5, 6], [7], [8, 9, 10, 11]]
    outputs = [[12], [], [13, 13], [14], [15]]
    histories = [torch.tensor(p + o, dtype=torch.long) for p, o in zip(prompts, outputs)]
    warped = apply_warpers(apply_penalties(logits, rows, histories, [len(p) for p in prompts]), rows)
    for i, params in enumerate(rows):
        oracle = transformers.LogitsProcessorList()
        if params.repetition_penalty != 1.0:
            oracle.append(transformers.RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
        if params.temperature != 1.0:
            oracle.append(transformers.TemperatureLogitsWarper(params.temperature))
        if params.top_k:
            oracle.append(transformers.TopKLogitsWarper(params.top_k))
        if params.top_p < 1.0:
            oracle.append(transformers.TopPLogitsWarper(params.top_p))
        if params.min_p:
            oracle.append(transformers.MinPLogitsWarper(params.min_p))
        expected = oracle(torch.tensor([prompts[i] + outputs[i]]), logits[i:i + 1].clone())
        assert torch.equal(warped[i:i + 1], expected), i


def test_presence_frequency_penalties_and_logit_bias():
    logits = torch.zeros(2, 10)
    rows = [SamplingParams(presence_penalty=0.5, frequency_penalty=0.25, logit_bias={3: 2.0}), SamplingParams()]
    scores = apply_penalties(logits, rows, [torch.tensor([1, 2, 4, 4, 5]), torch.tensor([1, 4])], [2, 1])
    expected = torch.zeros(2, 10)
    expected[0, 3] = 2.0
    expected[0, 4] = -0.5 - 2 * 0.25
    expected[0, 5] = -0.5 - 0.25
    assert torch.equal(scores, expected)


def test_unseeded_sampling_repeats_under_torch_manual_seed():
    ours, _ = model_pair("llama")

    def run() -> list[list[int]]:
        torch.manual_seed(123)
        engine = make_engine(ours, num_blocks=64, block_size=4)
        requests = [(f"r{i}", [1, 5 + i, 9, 11], SamplingParams(max_tokens=8, ignore_eos=True)) for i in range(3)]
        outputs = run_busy(engine, requests)
        return [outputs[f"r{i}"][-1].token_ids for i in range(3)]

    first = run()
    assert run() == first and len({tuple(t) for t in first}) > 1


def test_reset_prefix_cache_forgets_cached_prompts():
    ours, _ = model_pair("llama")
    engine = make_engine(ours, num_blocks=64, block_size=4)
    params = SamplingParams(max_tokens=2, temperature=0.0)
    run_busy(engine, [("a", list(range(1, 14)), params)])
    engine.reset_prefix_cache()
    outputs = run_busy(engine, [("b", list(range(1, 14)), params)])
    assert outputs["b"][-1].cached_prompt_tokens == 0 and engine.stats()["prefix_cache_hits"] == 0
    outputs = run_busy(engine, [("c", list(range(1, 14)), params)])
    assert outputs["c"][-1].cached_prompt_tokens == 12


def test_generation_stops_at_the_position_table():
    ours, _ = model_pair("llama")  # max_position_embeddings 256
    engine = make_engine(ours, num_blocks=128, block_size=4)
    outputs = run_busy(engine, [("edge", [5] * 250, SamplingParams(max_tokens=20, temperature=0.0, ignore_eos=True))])
    final = outputs["edge"][-1]
    assert final.finish_reason == "length" and len(final.token_ids) == 256 - 250


def test_chosen_logprob_without_alternatives_equals_the_oracle_log_softmax(one_thread):
    """logprobs=0 takes the chosen token's value from a log-sum-exp (no [R, V] log-softmax): it must equal
    log_softmax of transformers 4.45.2's scores at each step, and the value logprobs=2 reports."""
    ours, theirs = model_pair("llama")
    prompt = [5, 17, 42, 9, 88, 3]
    values = {}
    for top in (0, 2):
        engine = make_engine(ours)
        engine.add_request("r", prompt, SamplingParams(max_tokens=6, temperature=0, logprobs=top))
        outs = [o for _ in range(40) if engine.has_unfinished_requests() for o in engine.step()]
        values[top] = [lp.logprob for o in outs for lp in o.new_logprobs or []]
        tokens = outs[-1].token_ids
        assert all(len(lp.top) == top for o in outs for lp in o.new_logprobs or [])
    oracle = theirs.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False, output_scores=True,
                             return_dict_in_generate=True, pad_token_id=0)
    assert oracle.sequences[0, len(prompt):].tolist() == tokens
    expected = [torch.log_softmax(s[0], -1)[t].item() for s, t in zip(oracle.scores, tokens)]
    assert values[0] == pytest.approx(expected, abs=1e-5)
    assert values[0] == pytest.approx(values[2], abs=1e-6)
