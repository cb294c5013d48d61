"""DataCollatorForLanguageModeling(mlm=False) and default_data_collator against transformers 4.45.2."""
from __future__ import annotations

import pytest
import torch

from formers import DataCollatorForLanguageModeling, default_data_collator
from formers.errors import TokenizerError

from .helpers import tiny_tokenizer, token_rows


def _oracle_tokenizer(ours):
    import transformers
    return transformers.PreTrainedTokenizerFast(tokenizer_object=ours.backend_tokenizer, pad_token="<pad>",
                                                bos_token="<s>", eos_token="</s>", padding_side=ours.padding_side)


def _assert_same(ours: dict, theirs) -> None:
    assert sorted(ours) == sorted(theirs.keys())
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("multiple", [None, 8])
def test_causal_lm_collator_matches_transformers(side, multiple):
    import transformers

    tokenizer = tiny_tokenizer(side)
    rows = token_rows(5, (2, 9))
    ours = DataCollatorForLanguageModeling(tokenizer, mlm=False, pad_to_multiple_of=multiple)
    theirs = transformers.DataCollatorForLanguageModeling(_oracle_tokenizer(tokenizer), mlm=False,
                                                          pad_to_multiple_of=multiple)
    _assert_same(ours(rows), theirs(rows))
    id_lists = [r["input_ids"] for r in rows]  # bare id lists are padded too
    _assert_same(ours(id_lists), theirs(id_lists))
    tensors = [{"input_ids": torch.tensor(r["input_ids"])} for r in rows]
    _assert_same(ours(tensors), theirs(tensors))


def test_masked_lm_is_refused_with_a_pointer_to_mlm_false():
    with pytest.raises(TokenizerError, match="mlm=False"):
        DataCollatorForLanguageModeling(tiny_tokenizer())


def test_default_data_collator_matches_transformers():
    import transformers

    features = [{"input_ids": [1, 2, 3], "label": 1, "text": "a"}, {"input_ids": [4, 5, 6], "label": 0, "text": "b"}]
    _assert_same(default_data_collator(features), transformers.default_data_collator(features))


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("options", [{}, {"pad_to_multiple_of": 8}, {"padding": "max_length", "max_length": 12},
                                     {"padding": "longest", "pad_to_multiple_of": 3}])
def test_padding_collator_matches_transformers(side, options):
    """DataCollatorWithPadding (the Trainer's default with a tokenizer): the same padded ids, attention mask and
    labels (from `label` / `label_ids`) as transformers 4.45.2's."""
    import transformers

    from formers import DataCollatorWithPadding

    tokenizer = tiny_tokenizer(side)
    ours = DataCollatorWithPadding(tokenizer, **options)
    theirs = transformers.DataCollatorWithPadding(_oracle_tokenizer(tokenizer), **options)
    rows = token_rows(5, (2, 9))
    _assert_same(ours(rows), theirs(rows))
    labelled = [{**row, "label": index % 2} for index, row in enumerate(rows)]
    _assert_same(ours(labelled), theirs(labelled))
    with_ids = [{**row, "label_ids": [index, index + 1]} for index, row in enumerate(rows)]
    _assert_same(ours(with_ids), theirs(with_ids))
    assert ours(rows)["input_ids"].shape[1] > min(len(r["input_ids"]) for r in rows)  # padding really happened
