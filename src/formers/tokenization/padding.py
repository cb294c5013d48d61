"""Padding and truncation strategies, resolved from the user's arguments as transformers 4.45 does.

`resolve_strategies` turns `padding=`/`truncation=`/`max_length=` into explicit strategies (including
the legacy rule that `max_length` alone switches truncation on), and `pad_example` pads one already
encoded example for `PreTrainedTokenizerFast.pad`.
"""
from __future__ import annotations

import logging
from enum import Enum
from typing import Any

from ..errors import TokenizerError

logger = logging.getLogger("formers.tokenization")

VERY_LARGE_INTEGER = int(1e30)  # model_max_length when the tokenizer config does not set one
LARGE_INTEGER = int(1e20)  # above this, model_max_length counts as "unset"


class PaddingStrategy(str, Enum):
    LONGEST = "longest"
    MAX_LENGTH = "max_length"
    DO_NOT_PAD = "do_not_pad"


class TruncationStrategy(str, Enum):
    ONLY_FIRST = "only_first"
    ONLY_SECOND = "only_second"
    LONGEST_FIRST = "longest_first"
    DO_NOT_TRUNCATE = "do_not_truncate"


def _parse(enum_cls, value: Any, argument: str):
    try:
        return enum_cls(getattr(value, "value", value))
    except ValueError:
        options = ", ".join(repr(m.value) for m in enum_cls)
        raise TokenizerError(f"{argument}={value!r} is not valid; expected True, False or one of {options}") from None


def resolve_strategies(
    tokenizer: Any,
    padding: Any = False,
    truncation: Any = None,
    max_length: int | None = None,
    pad_to_multiple_of: int | None = None,
) -> tuple[PaddingStrategy, TruncationStrategy, int | None]:
    """Return (padding strategy, truncation strategy, max_length) for one tokenizer call."""
    if max_length is not None and padding is False and truncation is None:
        truncation = "longest_first"  # transformers' legacy rule: max_length alone truncates

    if padding is True:
        pad = PaddingStrategy.LONGEST
    elif padding is False or padding is None:
        pad = PaddingStrategy.DO_NOT_PAD
    else:
        pad = _parse(PaddingStrategy, padding, "padding")

    if truncation is True:
        trunc = TruncationStrategy.LONGEST_FIRST
    elif truncation is False or truncation is None:
        trunc = TruncationStrategy.DO_NOT_TRUNCATE
    else:
        trunc = _parse(TruncationStrategy, truncation, "truncation")

    if max_length is None:
        unset = tokenizer.model_max_length > LARGE_INTEGER
        if pad == PaddingStrategy.MAX_LENGTH:
            if unset:
                logger.warning("padding='max_length' without max_length and no model_max_length: not padding")
                pad = PaddingStrategy.DO_NOT_PAD
            else:
                max_length = tokenizer.model_max_length
        if trunc != TruncationStrategy.DO_NOT_TRUNCATE:
            if unset:
                logger.warning("truncation requested without max_length and no model_max_length: not truncating")
                trunc = TruncationStrategy.DO_NOT_TRUNCATE
            else:
                max_length = tokenizer.model_max_length

    if pad != PaddingStrategy.DO_NOT_PAD and (tokenizer.pad_token is None or tokenizer.pad_token_id < 0):
        raise TokenizerError(
            "padding was requested but the tokenizer has no pad_token; set one, e.g. "
            "`tokenizer.pad_token = tokenizer.eos_token`, or add one with "
            "`tokenizer.add_special_tokens({'pad_token': '[PAD]'})`"
        )
    if (
        trunc != TruncationStrategy.DO_NOT_TRUNCATE
        and pad != PaddingStrategy.DO_NOT_PAD
        and pad_to_multiple_of is not None
        and max_length is not None
        and max_length % pad_to_multiple_of != 0
    ):
        raise TokenizerError(
            f"truncation and padding are both on, but max_length={max_length} is not a multiple of "
            f"pad_to_multiple_of={pad_to_multiple_of}"
        )
    return pad, trunc, max_length


def pad_example(
    example: dict[str, list],
    *,
    main_input: str,
    pad_token_id: int | None,
    pad_token_type_id: int,
    padding_side: str,
    strategy: PaddingStrategy,
    max_length: int | None,
    pad_to_multiple_of: int | None,
    return_attention_mask: bool,
) -> dict[str, list]:
    """Pad one example's lists (ids, attention mask, token types, special mask) to the target length."""
    ids = example[main_input]
    if strategy == PaddingStrategy.LONGEST:
        max_length = len(ids)
    if max_length is not None and pad_to_multiple_of is not None and max_length % pad_to_multiple_of:
        max_length = (max_length // pad_to_multiple_of + 1) * pad_to_multiple_of
    out = dict(example)
    if return_attention_mask and "attention_mask" not in out:
        out["attention_mask"] = [1] * len(ids)
    if strategy == PaddingStrategy.DO_NOT_PAD or max_length is None or len(ids) == max_length:
        return out
    missing = max_length - len(ids)
    if padding_side not in ("left", "right"):
        raise TokenizerError(f"padding_side={padding_side!r} is not valid; expected 'left' or 'right'")
    fills = {main_input: pad_token_id, "attention_mask": 0, "token_type_ids": pad_token_type_id,
             "special_tokens_mask": 1}
    for key, fill in fills.items():
        if key not in out or (key == "attention_mask" and not return_attention_mask):
            continue
        pad = [fill] * missing
        out[key] = pad + list(out[key]) if padding_side == "left" else list(out[key]) + pad
    return out
