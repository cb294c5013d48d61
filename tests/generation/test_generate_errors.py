"""Every generate() call that 4.45.2 refuses is refused here too (with formers' exception types), and the
settings it accepts run."""
from __future__ import annotations

import warnings

import pytest
import torch
import transformers

import formers
from formers.errors import FormersError

from .conftest import padded_batch

PROMPT = torch.tensor([[5, 6, 7, 8]])


def _refused(model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model.generate(**kwargs)
        except (ValueError, TypeError) as exc:
            return exc
    return None


class _Sink:
    def put(self, value):
        pass

    def end(self):
        pass


CASES = {
    "beams_with_streamer": dict(num_beams=2, streamer=_Sink()),
    "greedy_many_sequences": dict(num_return_sequences=2),
    "groups_with_sampling": dict(num_beams=4, num_beam_groups=2, diversity_penalty=1.0, do_sample=True),
    "groups_not_dividing": dict(num_beams=3, num_beam_groups=2, diversity_penalty=1.0),
    "groups_without_penalty": dict(num_beams=4, num_beam_groups=2),
    "constraints_with_sampling": dict(num_beams=2, force_words_ids=[[9]], do_sample=True),
    "force_words_negative": dict(num_beams=2, force_words_ids=[[-1]]),
    "force_words_empty": dict(num_beams=2, force_words_ids=[]),
    "force_words_not_ints": dict(num_beams=2, force_words_ids=[[1, "a"]]),
    "forced_decoder_ids": dict(forced_decoder_ids=[[1, 5]]),
    "prompt_too_long": dict(max_length=3, max_new_tokens=None),
    "zero_new_tokens": dict(max_new_tokens=0),
    "unknown_argument": dict(not_an_argument=1),
    "lookup_without_cache": dict(prompt_lookup_num_tokens=2, use_cache=False),
    "lookup_with_beams": dict(prompt_lookup_num_tokens=2, num_beams=2),
    "lookup_many_sequences": dict(prompt_lookup_num_tokens=2, do_sample=True, num_return_sequences=2),
    "contrastive_without_cache": dict(penalty_alpha=0.5, top_k=3, use_cache=False),
    "dola_with_beams": dict(dola_layers="low", num_beams=2),
    "dola_bad_layers": dict(dola_layers="middle"),
    "stop_strings_without_tokenizer": dict(stop_strings=["x"]),
    "healing_without_tokenizer": dict(token_healing=True),
    "bad_words_negative": dict(bad_words_ids=[[-1]]),
    "bad_early_stopping": dict(num_beams=2, early_stopping="sometimes"),
    "too_many_returned_beams": dict(num_beams=2, num_return_sequences=3),
    "mask_not_2d": dict(attention_mask=torch.ones(1, 1, 4)),
    "bad_temperature": dict(do_sample=True, temperature=0.0),
    "bad_top_k": dict(do_sample=True, top_k=-2),
    "bad_repetition_penalty": dict(repetition_penalty=-1.0),
    "bad_cache_implementation": dict(cache_implementation="nonsense"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_refused_like_transformers(llama_pair, name):
    ours, ref = llama_pair
    kwargs = dict(inputs=PROMPT, max_new_tokens=3, pad_token_id=0)
    kwargs.update(CASES[name])
    theirs = _refused(ref, **kwargs)
    assert theirs is not None, f"transformers accepted {name}"
    mine = _refused(ours, **kwargs)
    assert isinstance(mine, FormersError), f"formers accepted {name} (or raised {mine!r})"


def test_duplicate_user_processor_and_criteria_are_refused(llama_pair):
    ours, _ = llama_pair
    kwargs = dict(inputs=PROMPT, max_new_tokens=3, pad_token_id=0)
    processors = formers.LogitsProcessorList([formers.RepetitionPenaltyLogitsProcessor(1.2)])
    assert isinstance(_refused(ours, repetition_penalty=1.3, logits_processor=processors, **kwargs), FormersError)
    criteria = formers.StoppingCriteriaList([formers.MaxLengthCriteria(5)])
    assert isinstance(_refused(ours, stopping_criteria=criteria, **kwargs), FormersError)


def test_assistant_with_another_vocabulary_is_refused(llama_pair, tmp_path):
    from ..conftest import build_oracle_checkpoint
    ours, ref = llama_pair
    folder = build_oracle_checkpoint(tmp_path, "llama", vocab_size=64, num_hidden_layers=1)
    with pytest.raises(ValueError):
        ref.generate(PROMPT, assistant_model=transformers.AutoModelForCausalLM.from_pretrained(folder),
                     max_new_tokens=2, pad_token_id=0)
    with pytest.raises(FormersError, match="vocab_size"):
        ours.generate(PROMPT, assistant_model=formers.AutoModelForCausalLM.from_pretrained(folder),
                      max_new_tokens=2, pad_token_id=0)


def test_user_processors_and_criteria_run_after_the_built_ones(llama_pair):
    ours, _ = llama_pair
    seen = []

    class Record(formers.LogitsProcessor):
        def __call__(self, input_ids, scores):
            seen.append(bool(torch.isinf(scores[:, 9]).all()))  # after the built-in suppression
            return scores

    class StopAtFifteen(formers.StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), input_ids.shape[1] >= 15, dtype=torch.bool)

    ids, mask = padded_batch()
    out = ours.generate(ids, attention_mask=mask, max_new_tokens=10, pad_token_id=0, suppress_tokens=[9],
                        logits_processor=formers.LogitsProcessorList([Record()]),
                        stopping_criteria=formers.StoppingCriteriaList([StopAtFifteen()]))
    assert seen and all(seen) and out.shape[1] == 15
