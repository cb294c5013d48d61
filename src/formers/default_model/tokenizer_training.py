"""Train the default model's byte-level BPE tokenizer on the CPython corpus.

Byte-level, so any text encodes (no unknown token). Four special tokens, ids fixed:
0 `<|endoftext|>` (document boundary: BOS and EOS), 1 `<|pad|>`, 2 `<|im_start|>`, 3 `<|im_end|>`.
Encoding prepends `<|endoftext|>`, the context every training document starts from, so a bare
prompt looks like the start of a document. The chat template is ChatML.
"""
from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from ..tokenization.fast import PreTrainedTokenizerFast

BOS_EOS, PAD, IM_START, IM_END = "<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [BOS_EOS, PAD, IM_START, IM_END]

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int, model_max_length: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE with `vocab_size` entries (special tokens included) learned from `texts`."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_EOS}:0 $A:0", pair=f"{BOS_EOS}:0 $A:0 {BOS_EOS}:1 $B:1",
        special_tokens=[(BOS_EOS, backend.token_to_id(BOS_EOS))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS_EOS, eos_token=BOS_EOS, pad_token=PAD,
        additional_special_tokens=[IM_START, IM_END], chat_template=CHAT_TEMPLATE,
        model_max_length=model_max_length, padding_side="left", clean_up_tokenization_spaces=False,
        model_input_names=["input_ids", "attention_mask"],  # no token_type_ids: generate(**inputs) just works
    )
