"""Text -> ids for `PreTrainedTokenizerFast`: `__call__`, `encode`, `encode_plus`, `batch_encode_plus`,
`tokenize` and `pad`, with transformers 4.45's argument handling and output keys.

Every call sets the backend's truncation/padding for that call (the backend does the work in Rust),
then turns the `tokenizers.Encoding` objects into a `BatchEncoding`.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..errors import TokenizerError
from .batch_encoding import BatchEncoding, check_tensor_type, to_py_obj
from .padding import PaddingStrategy, TruncationStrategy, pad_example, resolve_strategies

logger = logging.getLogger("formers.tokenization")


def _is_text_input(t: Any) -> bool:
    if isinstance(t, str):
        return True
    if isinstance(t, (list, tuple)):
        if not t or isinstance(t[0], str):
            return True
        if isinstance(t[0], (list, tuple)):
            return len(t[0]) == 0 or isinstance(t[0][0], str)
    return False


def _tensor_kind(value: Any) -> str | None:
    module = type(value).__module__
    if module.startswith("torch"):
        return "pt"
    if module.startswith("numpy"):
        return "np"
    return None


class EncodingMixin:
    """Encoding methods; the host class provides the backend (`_tokenizer`) and special tokens."""

    def __call__(self, text=None, text_pair=None, text_target=None, text_pair_target=None,
                 add_special_tokens: bool = True, padding: bool | str = False, truncation: bool | str | None = None,
                 max_length: int | None = None, stride: int = 0, is_split_into_words: bool = False,
                 pad_to_multiple_of: int | None = None, padding_side: str | None = None,
                 return_tensors: str | None = None, return_token_type_ids: bool | None = None,
                 return_attention_mask: bool | None = None, return_overflowing_tokens: bool = False,
                 return_special_tokens_mask: bool = False, return_offsets_mapping: bool = False,
                 return_length: bool = False, verbose: bool = True, **kwargs: Any) -> BatchEncoding:
        """Tokenize one text, a batch, or pairs; returns a BatchEncoding (flat lists for one text)."""
        options = dict(add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
                       max_length=max_length, stride=stride, is_split_into_words=is_split_into_words,
                       pad_to_multiple_of=pad_to_multiple_of, padding_side=padding_side,
                       return_tensors=return_tensors, return_token_type_ids=return_token_type_ids,
                       return_attention_mask=return_attention_mask,
                       return_overflowing_tokens=return_overflowing_tokens,
                       return_special_tokens_mask=return_special_tokens_mask,
                       return_offsets_mapping=return_offsets_mapping, return_length=return_length, verbose=verbose,
                       **kwargs)
        if text is None and text_target is None:
            raise TokenizerError("tokenizer call needs `text` (or `text_target`)")
        encodings = self._call_one(text, text_pair, **options) if text is not None else None
        if text_target is None:
            return encodings
        targets = self._call_one(text_target, text_pair_target, **options)
        if encodings is None:
            return targets
        encodings["labels"] = targets["input_ids"]
        return encodings

    def _call_one(self, text, text_pair=None, *, is_split_into_words: bool = False, **options: Any) -> BatchEncoding:
        for name, value in (("text", text), ("text_pair", text_pair)):
            if value is not None and not _is_text_input(value):
                raise TokenizerError(f"{name} must be a str, a list of str (batch or one pre-split example) or a "
                                     f"list of lists of str (batch of pre-split examples); got {type(value).__name__}")
        if is_split_into_words:
            batched = isinstance(text, (list, tuple)) and bool(text) and isinstance(text[0], (list, tuple))
        else:
            batched = isinstance(text, (list, tuple))
        if not batched:
            return self.encode_plus(text, text_pair, is_split_into_words=is_split_into_words, **options)
        if isinstance(text_pair, str):
            raise TokenizerError("when text is a batch, text_pair must be a list of the same length, not a str")
        if text_pair is not None and len(text) != len(text_pair):
            raise TokenizerError(f"text has {len(text)} items but text_pair has {len(text_pair)}")
        inputs = list(zip(text, text_pair)) if text_pair is not None else text
        return self.batch_encode_plus(inputs, is_split_into_words=is_split_into_words, **options)

    def encode_plus(self, text, text_pair=None, add_special_tokens: bool = True, padding=False, truncation=None,
                    max_length=None, stride: int = 0, is_split_into_words: bool = False, pad_to_multiple_of=None,
                    padding_side=None, return_tensors=None, return_overflowing_tokens: bool = False,
                    verbose: bool = True, **kwargs: Any) -> BatchEncoding:
        """Encode one text (or pair); lists are flat unless tensors or overflow are requested."""
        batch = [(text, text_pair)] if text_pair else [text]
        out = self.batch_encode_plus(batch, add_special_tokens=add_special_tokens, padding=padding,
                                     truncation=truncation, max_length=max_length, stride=stride,
                                     is_split_into_words=is_split_into_words, pad_to_multiple_of=pad_to_multiple_of,
                                     padding_side=padding_side, return_tensors=return_tensors,
                                     return_overflowing_tokens=return_overflowing_tokens, verbose=verbose,
                                     **kwargs)
        if return_tensors is None and not return_overflowing_tokens:
            flat = {k: v[0] if v and isinstance(v[0], list) else v for k, v in out.items()}
            out = BatchEncoding(flat, out.encodings)
        return out

    def batch_encode_plus(self, batch_text_or_text_pairs, add_special_tokens: bool = True, padding=False,
                          truncation=None, max_length: int | None = None, stride: int = 0,
                          is_split_into_words: bool = False, pad_to_multiple_of: int | None = None,
                          padding_side: str | None = None, return_tensors: str | None = None,
                          return_token_type_ids: bool | None = None, return_attention_mask: bool | None = None,
                          return_overflowing_tokens: bool = False, return_special_tokens_mask: bool = False,
                          return_offsets_mapping: bool = False, return_length: bool = False, verbose: bool = True,
                          split_special_tokens: bool | None = None, **kwargs: Any) -> BatchEncoding:
        """Encode a batch of texts or (text, pair) tuples."""
        if kwargs:
            raise TokenizerError(f"unexpected tokenizer arguments: {sorted(kwargs)}")
        if not isinstance(batch_text_or_text_pairs, (list, tuple)):
            raise TokenizerError("batch_text_or_text_pairs must be a list or tuple, "
                                 f"got {type(batch_text_or_text_pairs).__name__}")
        return_tensors = check_tensor_type(return_tensors)
        if is_split_into_words and self._profile.byte_level_prefix_space and not self.add_prefix_space:
            raise TokenizerError(f"is_split_into_words=True needs the tokenizer to be created with "
                                 f"add_prefix_space=True ({self._profile.name})")
        pad, trunc, max_length = resolve_strategies(self, padding, truncation, max_length, pad_to_multiple_of)
        self._configure_backend(pad, trunc, max_length, stride, pad_to_multiple_of, padding_side)
        split = self.split_special_tokens if split_special_tokens is None else split_special_tokens
        if self._tokenizer.encode_special_tokens != split:
            self._tokenizer.encode_special_tokens = split
        if not is_split_into_words:
            batch_text_or_text_pairs = [self._prepare_input(item) for item in batch_text_or_text_pairs]
        try:
            encodings = self._tokenizer.encode_batch(batch_text_or_text_pairs, add_special_tokens=add_special_tokens,
                                                     is_pretokenized=is_split_into_words)
        except Exception as exc:  # tokenizers raises bare Exception/TypeError for bad input or settings
            raise TokenizerError(f"tokenization failed: {exc}") from exc

        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        fields = [("input_ids", "ids", True), ("token_type_ids", "type_ids", return_token_type_ids),
                  ("attention_mask", "attention_mask", return_attention_mask),
                  ("special_tokens_mask", "special_tokens_mask", return_special_tokens_mask),
                  ("offset_mapping", "offsets", return_offsets_mapping)]
        data: dict[str, list] = {key: [] for key, _, wanted in fields if wanted}
        if return_length:
            data["length"] = []
        flat_encodings, sample_map = [], []
        for index, encoding in enumerate(encodings):
            parts = [encoding] + (list(encoding.overflowing) if return_overflowing_tokens else [])
            for part in parts:
                for key, attr, wanted in fields:
                    if wanted:
                        data[key].append(getattr(part, attr))
                if return_length:
                    data["length"].append(len(part.ids))
                flat_encodings.append(part)
                sample_map.append(index)
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = sample_map
        for ids in data["input_ids"]:
            self._warn_if_too_long(ids, max_length, verbose)
        return BatchEncoding(data, flat_encodings, tensor_type=return_tensors)

    def _prepare_input(self, item: Any) -> Any:
        """A text or (text, pair) before the backend sees it; slow-tokenizer classes rewrite the text here."""
        if isinstance(item, str):
            return self._prepare_text(item)
        if isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(t, str) for t in item):
            return type(item)(self._prepare_text(t) for t in item)
        return item

    def _prepare_text(self, text: str) -> str:
        return text

    def _configure_backend(self, pad: PaddingStrategy, trunc: TruncationStrategy, max_length: int | None,
                           stride: int, pad_to_multiple_of: int | None, padding_side: str | None) -> None:
        backend = self._tokenizer
        if trunc == TruncationStrategy.DO_NOT_TRUNCATE:
            if backend.truncation is not None:
                backend.no_truncation()
        else:
            target = {"max_length": max_length, "stride": stride, "strategy": trunc.value,
                      "direction": self.truncation_side}
            current = backend.truncation
            if current is None or {k: current.get(k) for k in target} != target:
                try:
                    backend.enable_truncation(**target)
                except Exception as exc:
                    raise TokenizerError(f"invalid truncation settings {target}: {exc}") from exc
        if pad == PaddingStrategy.DO_NOT_PAD:
            if backend.padding is not None:
                backend.no_padding()
        else:
            side = padding_side if padding_side is not None else self.padding_side
            if side not in ("left", "right"):
                raise TokenizerError(f"padding_side={side!r} is not valid; expected 'left' or 'right'")
            target = {"length": max_length if pad == PaddingStrategy.MAX_LENGTH else None, "direction": side,
                      "pad_id": self.pad_token_id, "pad_token": self.pad_token, "pad_type_id": self.pad_token_type_id,
                      "pad_to_multiple_of": pad_to_multiple_of}
            if backend.padding != target:
                backend.enable_padding(**target)

    def _warn_if_too_long(self, ids: list[int], max_length: int | None, verbose: bool) -> None:
        if max_length is None and len(ids) > self.model_max_length and verbose and "too_long" not in self._warned:
            self._warned.add("too_long")
            logger.warning("Token indices sequence length is longer than the specified maximum sequence length "
                           "for this model (%d > %d); running it through the model may fail", len(ids),
                           self.model_max_length)

    def encode(self, text, text_pair=None, add_special_tokens: bool = True, padding=False, truncation=None,
               max_length: int | None = None, stride: int = 0, padding_side: str | None = None,
               return_tensors: str | None = None, **kwargs: Any):
        """Ids of one text (or pair): a list of ints, or a [1, T] tensor with return_tensors."""
        return self.encode_plus(text, text_pair=text_pair, add_special_tokens=add_special_tokens, padding=padding,
                                truncation=truncation, max_length=max_length, stride=stride,
                                padding_side=padding_side, return_tensors=return_tensors, **kwargs)["input_ids"]

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs: Any) -> list[str]:
        """Token strings of `text` (no special tokens unless asked)."""
        return self.encode_plus(text, text_pair=pair, add_special_tokens=add_special_tokens, **kwargs).tokens()

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None) -> list[int]:
        """Add BOS/EOS around already-tokenized ids, as the tokenizer class would."""
        if not self._profile.bos_eos_post_processor:
            return list(token_ids_0) + (list(token_ids_1) if token_ids_1 is not None else [])
        bos = [self.bos_token_id] if self.add_bos_token else []
        eos = [self.eos_token_id] if self.add_eos_token else []
        out = bos + list(token_ids_0) + eos
        if token_ids_1 is not None:
            out += bos + list(token_ids_1) + eos
        return out

    def get_special_tokens_mask(self, token_ids_0: list[int], token_ids_1: list[int] | None = None,
                                already_has_special_tokens: bool = False) -> list[int]:
        """1 for special-token ids, 0 otherwise (ids must already contain their special tokens)."""
        if not already_has_special_tokens or token_ids_1 is not None:
            raise TokenizerError("get_special_tokens_mask needs already_has_special_tokens=True and no "
                                 "token_ids_1; use return_special_tokens_mask=True when encoding instead")
        special = set(self.all_special_ids)
        return [1 if t in special else 0 for t in token_ids_0]

    def pad(self, encoded_inputs: Any, padding: bool | str = True, max_length: int | None = None,
            pad_to_multiple_of: int | None = None, padding_side: str | None = None,
            return_attention_mask: bool | None = None, return_tensors: str | None = None,
            verbose: bool = True) -> BatchEncoding:
        """Pad already-encoded examples (a dict, a list of dicts, or a dict of lists/tensors)."""
        if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], Mapping):
            encoded_inputs = {k: [ex[k] for ex in encoded_inputs] for k in encoded_inputs[0].keys()}
        if not isinstance(encoded_inputs, Mapping):
            raise TokenizerError("pad() expects a dict of encoded inputs or a list of such dicts")
        main = self.model_input_names[0]
        if main not in encoded_inputs:
            raise TokenizerError(f"pad() needs {main!r} in the inputs, got keys {list(encoded_inputs.keys())}")
        first = encoded_inputs[main]
        if first is None or (hasattr(first, "__len__") and len(first) == 0):
            out = dict(encoded_inputs)
            if return_attention_mask:
                out["attention_mask"] = []
            return BatchEncoding(out)
        if return_tensors is None:  # tensors in -> same kind of tensors out
            probe = first[0]
            if isinstance(probe, (list, tuple)):
                probe = next((row[0] for row in first if len(row)), probe)
            return_tensors = _tensor_kind(probe)
        inputs = {k: to_py_obj(v) for k, v in encoded_inputs.items()}
        pad, _, max_length = resolve_strategies(self, padding, None, max_length, pad_to_multiple_of)
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        settings = dict(main_input=main, pad_token_id=self.pad_token_id, pad_token_type_id=self.pad_token_type_id,
                        padding_side=padding_side if padding_side is not None else self.padding_side,
                        pad_to_multiple_of=pad_to_multiple_of, return_attention_mask=return_attention_mask)
        rows = inputs[main]
        if rows and not isinstance(rows[0], (list, tuple)):
            return BatchEncoding(pad_example(inputs, strategy=pad, max_length=max_length, **settings),
                                 tensor_type=return_tensors)
        if any(len(v) != len(rows) for v in inputs.values()):
            raise TokenizerError("pad(): every key must hold the same number of examples")
        if pad == PaddingStrategy.LONGEST:
            max_length, pad = max(len(r) for r in rows), PaddingStrategy.MAX_LENGTH
        batch: dict[str, list] = {}
        for i in range(len(rows)):
            example = pad_example({k: v[i] for k, v in inputs.items()}, strategy=pad, max_length=max_length,
                                  **settings)
            for key, value in example.items():
                batch.setdefault(key, []).append(value)
        return BatchEncoding(batch, tensor_type=return_tensors)
