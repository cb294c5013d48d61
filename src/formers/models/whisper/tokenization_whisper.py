"""WhisperTokenizer / WhisperTokenizerFast: GPT-2 byte-level BPE plus Whisper's task prompt and timestamps.

Every encoded text is framed as <|startoftranscript|> [<|lang|>] [<|task|>] [<|notimestamps|>] text
<|endoftext|>. Timestamp tokens <|0.00|> ... <|30.00|> follow the last special token (timestamp_begin);
decode() drops them from text, `decode_with_timestamps` spells them inline, `output_offsets` turns each
<|t0|> text <|t1|> pair into {"text", "timestamp": (t0, t1)}.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np
from tokenizers import processors

from ...errors import TokenizerError
from ...tokenization.batch_encoding import to_py_obj
from ...tokenization.fast import PreTrainedTokenizerFast
from .languages import LANGUAGES, TASK_IDS, language_code

_TIMESTAMP_TEXT = re.compile(r"<\|(\d+\.\d+)\|>")


class WhisperTokenizerFast(PreTrainedTokenizerFast):
    profile_name = "WhisperTokenizer"
    positional_files = ("vocab_file", "merges_file", "normalizer_file", "tokenizer_file")

    def __init__(self, *args: Any, language: str | None = None, task: str | None = None,
                 predict_timestamps: bool = False, normalizer_file: str | None = None, **kwargs: Any):
        if len(args) >= 3:  # the normalizer file is not a tokenizer file: keep it out of the backend
            normalizer_file, args = args[2], args[:2] + args[3:]
        super().__init__(*args, **kwargs)
        self.language, self.task, self.predict_timestamps = language, task, predict_timestamps
        self.english_spelling_normalizer = None
        if normalizer_file is not None:
            import json
            with open(normalizer_file, encoding="utf-8") as handle:
                self.english_spelling_normalizer = json.load(handle)
        if self._sets_prompt_at_init():
            self.set_prefix_tokens()

    def _sets_prompt_at_init(self) -> bool:
        # 4.45's fast class keeps tokenizer.json's post-processor until set_prefix_tokens is called.
        return not isinstance(self._tokenizer.post_processor, processors.TemplateProcessing)

    # ---- the task prompt --------------------------------------------------------------------
    @property
    def prefix_tokens(self) -> list[int]:
        """<|startoftranscript|> then the language, the task and <|notimestamps|> as configured."""
        start = self.convert_tokens_to_ids("<|startoftranscript|>")
        prompt = [start]
        if self.language is not None:
            try:
                code = language_code(self.language)
            except KeyError:
                raise TokenizerError(f"language={self.language!r} is not a Whisper language; expected one of "
                                     f"{', '.join(LANGUAGES)} or their names") from None
            prompt.append(start + 1 + list(LANGUAGES).index(code))
        if self.task is not None:
            if self.task not in TASK_IDS:
                raise TokenizerError(f"task={self.task!r}: expected one of {', '.join(TASK_IDS)}")
            prompt.append(self.convert_tokens_to_ids(f"<|{self.task}|>"))
        if not self.predict_timestamps:
            prompt.append(self.convert_tokens_to_ids("<|notimestamps|>"))
        return prompt

    def set_prefix_tokens(self, language: str | None = None, task: str | None = None,
                          predict_timestamps: bool | None = None) -> None:
        """Change the prompt that encoding adds (None keeps the current setting)."""
        self.language = language if language is not None else self.language
        self.task = task if task is not None else self.task
        if predict_timestamps is not None:
            self.predict_timestamps = predict_timestamps
        ids = self.prefix_tokens
        names = self.convert_ids_to_tokens(ids)
        head = " ".join(f"{name}:0" for name in names)
        eos = self.eos_token
        self._tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{head} $A:0 {eos}:0", pair=f"{head} $A:0 $B:1 {eos}:1",
            special_tokens=[(eos, self.eos_token_id), *zip(names, ids)])

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None) -> list[int]:
        return self.prefix_tokens + token_ids_0 + (token_ids_1 or []) + [self.eos_token_id]

    def get_decoder_prompt_ids(self, task: str | None = None, language: str | None = None,
                               no_timestamps: bool = True) -> list[tuple[int, int]]:
        """(position, token) pairs forcing the prompt after <|startoftranscript|>."""
        self.set_prefix_tokens(task=task, language=language, predict_timestamps=not no_timestamps)
        return [(position, token) for position, token in enumerate(self.prefix_tokens[1:], start=1)]

    def get_prompt_ids(self, text: str, return_tensors: str | None = "np"):
        """<|startofprev|> + ' text' ids, to pass to generate(prompt_ids=...)."""
        ids = [self.convert_tokens_to_ids("<|startofprev|>")] + self.encode(" " + text.strip(),
                                                                            add_special_tokens=False)
        first_special = self.all_special_ids[0]
        banned = [i for i in ids[1:] if i >= first_special]
        if banned:
            raise TokenizerError(f"get_prompt_ids: the prompt text contains the special token "
                                 f"{self.convert_ids_to_tokens(banned[0])!r}")
        if return_tensors == "pt":
            import torch
            return torch.tensor(ids)
        return np.array(ids) if return_tensors == "np" else ids

    # ---- timestamps -------------------------------------------------------------------------
    @property
    def timestamp_begin(self) -> int:
        return self.all_special_ids[-1] + 1

    def timestamp_ids(self, time_precision: float = 0.02) -> list[int]:
        return self.convert_tokens_to_ids(["<|%.2f|>" % (i * time_precision) for i in range(1501)])

    def _strip_prompt(self, ids: list[int]) -> list[int]:
        """Drop a <|startofprev|> ... prompt: keep from <|startoftranscript|> on (nothing when it is absent)."""
        if not ids or ids[0] != self.convert_tokens_to_ids("<|startofprev|>"):
            return ids
        start = self.convert_tokens_to_ids("<|startoftranscript|>")
        return ids[ids.index(start):] if start in ids else []

    def _segments(self, ids: list[int], time_precision: float) -> list[tuple[float, float, list[int]]]:
        """(start s, end s, text ids) per <|t0|> ... <|t1|> span; a restart from a lower time adds an offset."""
        begin = self.timestamp_begin
        is_time = np.array(ids) >= begin
        if is_time.sum() <= 1 and not (is_time[:-1] & is_time[1:]).any():
            return []
        cuts = list(np.where(is_time[:-1] & is_time[1:])[0] + 1)
        last_time = int(np.where(is_time)[0][-1]) + 1
        if last_time not in cuts:
            cuts.append(last_time)
        start, shift, latest, spans = int(np.where(is_time)[0][0]), 0, 0, []
        for cut in cuts:
            piece = ids[start:cut]
            if len(piece) > 1:
                first, last = piece[0] - begin, piece[-1] - begin
                if first < latest:
                    shift += latest
                latest = last
                spans.append(((first + shift) * time_precision, (last + shift) * time_precision, piece))
            start = cut
        return spans

    def _text_with_timestamps(self, ids: list[int], skip_special_tokens: bool, time_precision: float) -> str:
        begin, parts, pending, shift, latest = self.timestamp_begin, [], [], 0.0, 0.0
        for token in ids:
            if token < begin:
                pending.append(token)
                continue
            stamp = (token - begin) * time_precision
            if stamp < latest:
                shift += latest
            latest = stamp
            parts += [self.decode(pending, skip_special_tokens=skip_special_tokens), f"<|{stamp + shift:.2f}|>"]
            pending = []
        return "".join(parts + [self.decode(pending, skip_special_tokens=skip_special_tokens)])

    def decode(self, token_ids: Any, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None, output_offsets: bool = False,
               time_precision: float = 0.02, decode_with_timestamps: bool = False, normalize: bool = False,
               basic_normalize: bool = False, remove_diacritics: bool = False, **kwargs: Any):
        """Text of `token_ids` without timestamp tokens (or with them inline, or with per-segment offsets)."""
        if normalize or basic_normalize:
            raise TokenizerError("decode(normalize=/basic_normalize=True): Whisper's text normalizers are not "
                                 "implemented in formers")
        ids = to_py_obj(token_ids)
        ids = [int(ids)] if isinstance(ids, (int, np.integer)) else [int(i) for i in ids]
        kept = self._strip_prompt(ids) if skip_special_tokens else ids
        if decode_with_timestamps:
            text = self._text_with_timestamps(kept, skip_special_tokens, time_precision)
        else:
            text = super().decode(kept, skip_special_tokens=skip_special_tokens,
                                  clean_up_tokenization_spaces=clean_up_tokenization_spaces, **kwargs)
            text = _TIMESTAMP_TEXT.sub("", text)
        if not output_offsets:
            return text
        offsets = [{"text": _TIMESTAMP_TEXT.sub("", super(WhisperTokenizerFast, self).decode(piece)),
                    "timestamp": (start, end)} for start, end, piece in self._segments(ids, time_precision)]
        return {"text": text, "offsets": offsets}


class WhisperTokenizer(WhisperTokenizerFast):
    """The slow class name: same ids; builds from vocab.json + merges.txt and always applies its prompt."""

    positional_files = ("vocab_file", "merges_file", "normalizer_file")
    builds_from_slow_files = True

    def _sets_prompt_at_init(self) -> bool:
        return True

    @property
    def is_fast(self) -> bool:
        return False
