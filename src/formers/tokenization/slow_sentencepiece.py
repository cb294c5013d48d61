"""What transformers' slow SentencePiece tokenizers (LlamaTokenizer, GemmaTokenizer) do differently from
their fast twins, reproduced over the same `tokenizers` backend (built from tokenizer.model).

Encoding: the slow LlamaTokenizer with `legacy=False` always prepends "▁" to the text, so a text that starts
with a space keeps that space as its own "▁" (the fast Metaspace pre-tokenizer merges the two). Decoding:
SentencePiece decodes each run of ordinary pieces by itself (dropping leading spaces as the model's dummy
prefix / whitespace flags say), special tokens are written verbatim between runs, and added tokens that are
not special are joined with spaces (`spaces_between_special_tokens`). Removing extra whitespace (a flag of some
SentencePiece models) is applied by the backend's normalizer, built for the slow class only.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from .sentencepiece_convert import SPIECE_UNDERLINE
from .sentencepiece_model import load_sentencepiece_model


def _decode_bytes(data: bytes) -> str:
    """UTF-8 with one U+FFFD per byte that does not start a valid character (SentencePiece's rule)."""
    out, index = [], 0
    while index < len(data):
        for length in (1, 2, 3, 4):
            try:
                out.append(data[index:index + length].decode("utf-8"))
                index += length
                break
            except UnicodeDecodeError:
                continue
        else:
            out.append("\ufffd")
            index += 1
    return "".join(out)


def decode_pieces(pieces: list[str], strip: str = "none", known: Callable[[str], bool] = lambda piece: True) -> str:
    """SentencePiece's own decoding of a run of pieces: "▁" is a space, runs of <0xNN> pieces are UTF-8.

    `strip` says what happens to the leading "▁": "one" drops one (a model that adds a dummy prefix), "all"
    drops every one until a piece gives some text (a model that removes extra whitespace), "none" keeps them.
    A string that is not a piece of the model (`known` says) comes out as it is, "▁" included.
    """
    out: list[str] = []
    pending = bytearray()
    for piece in pieces:
        if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            pending.append(int(piece[3:5], 16))
            strip = "none"
            continue
        if pending:
            out.append(_decode_bytes(bytes(pending)))
            pending.clear()
        if piece and not known(piece):
            out.append(piece)
            strip = "none"
            continue
        if strip != "none" and piece:
            piece = piece.lstrip(SPIECE_UNDERLINE) if strip == "all" else piece.removeprefix(SPIECE_UNDERLINE)
            strip = "all" if strip == "all" and not piece else "none"
        out.append(piece.replace(SPIECE_UNDERLINE, " "))
    if pending:
        out.append(_decode_bytes(bytes(pending)))
    return "".join(out)


_GEMMA_TAB_PIECE = "<0x09>"


class SlowLlamaMixin:
    """LlamaTokenizer's (slow) `tokenize` and `decode` rules; the host is a PreTrainedTokenizerFast."""

    builds_from_slow_files = True
    default_padding_side = "right"
    # LlamaTokenizer writes a space between a leading special token and a piece without "▁"; CodeLlama does not.
    space_after_leading_special = True

    @property
    def is_fast(self) -> bool:
        return False

    def _legacy(self) -> bool:
        return bool(self.legacy)

    def _prefix_space(self) -> bool:
        return self.add_prefix_space is None or bool(self.add_prefix_space)

    def _known_piece(self, piece: str) -> bool:
        return self._tokenizer.token_to_id(piece) is not None

    def _prepare_text(self, text: str) -> str:
        if self._legacy() or not text or not self._prefix_space():
            return text
        text = text.replace(SPIECE_UNDERLINE, " ")
        if self._spec_flag("remove_extra_whitespaces"):
            text = re.sub(" {2,}", " ", text)
        # The slow class encodes "▁" + text: a leading space becomes a piece of its own.
        return " " + text if text.startswith(" ") else text

    def _spec_flag(self, name: str) -> bool:
        """A flag of the SentencePiece model's normalizer_spec (False without tokenizer.model)."""
        if not self.vocab_file:
            return False
        spec = getattr(self, "_normalizer_spec", None)
        if spec is None:
            spec = self._normalizer_spec = load_sentencepiece_model(self.vocab_file).normalizer_spec
        return bool(getattr(spec, name))

    def _decoder_strip(self) -> str:
        """How SentencePiece treats a run's leading spaces (see `decode_pieces`): the slow class turns the
        model's dummy prefix off for legacy=False."""
        if self._spec_flag("remove_extra_whitespaces"):
            return "all"
        return "one" if self._spec_flag("add_dummy_prefix") and self._legacy() else "none"

    def _decode_ids(self, ids: list[int], skip_special_tokens: bool, spaces_between_special_tokens: bool = True,
                    **kwargs: Any) -> str:
        if skip_special_tokens:
            skip = set(self.all_special_ids)
            ids = [i for i in ids if i not in skip]
        tokens = [self._tokenizer.id_to_token(i) for i in ids]
        special = set(self.all_special_tokens)
        plain_added = set(self.added_tokens_encoder) - special
        plain_added |= {t for t in self.additional_special_tokens if self.convert_tokens_to_ids(t) >= self.vocab_size}
        parts: list[str] = []
        run: list[str] = []
        for token in tokens:
            if token in plain_added:
                text = self._tokens_to_text(run) if run else ""
                parts += [text, token] if text else [token]
                run = []
            else:
                run.append(token)
        if run:
            parts.append(self._tokens_to_text(run))
        return (" " if spaces_between_special_tokens else "").join(parts)

    def _tokens_to_text(self, tokens: list[str]) -> str:
        """LlamaTokenizer.convert_tokens_to_string: pieces by SentencePiece, special tokens verbatim."""
        tokens = list(tokens)
        prefix_space, strip = self._prefix_space(), self._decoder_strip()
        if tokens[0].startswith(SPIECE_UNDERLINE) and prefix_space:
            tokens[0] = tokens[0][1:]
        special = set(self.all_special_tokens)
        out, run, prev_special = "", [], False
        for index, token in enumerate(tokens):
            if token in special:
                if not prev_special and index != 0 and self._legacy():
                    out += " "
                out += decode_pieces(run, strip, self._known_piece) + token
                run, prev_special = [], True
            else:
                if (prev_special and index == 1 and prefix_space and self.space_after_leading_special
                        and not token.startswith(SPIECE_UNDERLINE)):
                    out += " "
                run.append(token)
                prev_special = False
        return out + decode_pieces(run, strip, self._known_piece)


class SlowCodeLlamaMixin(SlowLlamaMixin):
    """CodeLlamaTokenizer (slow): LlamaTokenizer's non-legacy rules always, whatever `legacy` says."""

    space_after_leading_special = False

    def _legacy(self) -> bool:
        return False

    def _prefix_space(self) -> bool:
        return True

    def _build_backend(self, tokenizer_object, tokenizer_file, from_slow: bool, kwargs: dict):
        return super()._build_backend(tokenizer_object, tokenizer_file, from_slow,
                                      {**kwargs, "legacy": False, "add_prefix_space": True})


class SlowGemmaMixin:
    """GemmaTokenizer's (slow) decode: SentencePiece runs between added tokens, joined without spaces."""

    builds_from_slow_files = True
    default_padding_side = "right"

    @property
    def is_fast(self) -> bool:
        return False

    # Gemma's converter renamed the tab's byte piece to "\t"; the slow class shows SentencePiece's name.
    def tokenize(self, text: str, *args: Any, **kwargs: Any) -> list[str]:
        return [_GEMMA_TAB_PIECE if t == "\t" else t for t in super().tokenize(text, *args, **kwargs)]

    def convert_ids_to_tokens(self, ids: Any, skip_special_tokens: bool = False) -> Any:
        tokens = super().convert_ids_to_tokens(ids, skip_special_tokens)
        if isinstance(tokens, str):
            return _GEMMA_TAB_PIECE if tokens == "\t" else tokens
        return [_GEMMA_TAB_PIECE if t == "\t" else t for t in tokens]

    def _decode_ids(self, ids: list[int], skip_special_tokens: bool, spaces_between_special_tokens: bool = False,
                    **kwargs: Any) -> str:
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        added = self.added_tokens_decoder
        parts: list[str] = []
        run: list[str] = []
        for index in ids:
            if index in skip:
                continue
            if index in added:
                if run:
                    parts.append(decode_pieces(run))
                parts.append(added[index].content)
                run = []
            else:
                run.append(self._tokenizer.id_to_token(index))
        if run:
            parts.append(decode_pieces(run))
        return (" " if spaces_between_special_tokens else "").join(parts).replace(SPIECE_UNDERLINE, " ")
