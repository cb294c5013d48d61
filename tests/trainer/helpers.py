"""Tiny formers Llama models and token datasets for the Trainer tests."""
from __future__ import annotations

import torch

from formers import LlamaConfig, LlamaForCausalLM

TINY_TRAIN = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def tiny_model(seed: int = 0, **overrides) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM.from_config(LlamaConfig(**{**TINY_TRAIN, **overrides}))


def token_rows(count: int, length: int | tuple[int, int] = 12, seed: int = 1) -> list[dict[str, list[int]]]:
    """`count` examples of random ids in [3, 64); a (lo, hi) length draws each row's length."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(count):
        size = length if isinstance(length, int) else int(torch.randint(length[0], length[1] + 1, (1,),
                                                                         generator=generator))
        rows.append({"input_ids": torch.randint(3, 64, (size,), generator=generator).tolist()})
    return rows


def tiny_tokenizer(padding_side: str = "right"):
    """A word-level tokenizer over the 64 ids above ("<pad>", "<s>", "</s>", "t3" ... "t63")."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from formers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"t{i}": i for i in range(3, 64)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   padding_side=padding_side)
