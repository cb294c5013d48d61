"""The tokenizer stored in a GGUF file, rebuilt as a formers fast tokenizer.

llama.cpp keeps the vocabulary as metadata: `tokenizer.ggml.model` is "llama" (SentencePiece-style BPE:
tokens + scores + token types) or "gpt2" (byte-level BPE: tokens + merges + token types, with
`tokenizer.ggml.pre` naming the pre-tokenizer regex), plus special-token ids, add_bos/add_eos and the
chat template. SentencePiece vocabularies go through the same converter as a `tokenizer.model`, so ids
equal those of the Hugging Face tokenizer of the same model.
"""
from __future__ import annotations

import logging
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, Unigram

from ..errors import TokenizerError
from ..tokenization.bpe_convert import QWEN2_SPLIT
from ..tokenization.sentencepiece_convert import sentencepiece_to_tokenizer
from ..tokenization.sentencepiece_model import BPE as SPM_BPE
from ..tokenization.sentencepiece_model import Piece, SentencePieceModel, TrainerSpec
from .reader import GGUFFile

logger = logging.getLogger(__name__)

CONTROL, USER_DEFINED = 3, 4  # token types, numbered as SentencePiece's piece types
_BPE_STYLES = {"default": "gpt2", "gpt-2": "gpt2", "gpt2": "gpt2", "qwen2": "qwen2", "llama-bpe": "llama3",
               "llama3": "llama3", "smollm": "smollm"}
# the split transformers 4.45 applies to a byte-level vocabulary of these architectures whatever its
# tokenizer.ggml.pre says (its GGUF converters: GPT-2's regex for llama, Qwen2's for qwen2 / qwen2moe); formers
# follows the names it knows (Llama 3's and SmolLM's splits, as their tokenizer.json files) and these for the rest
_ARCHITECTURE_STYLES = {"llama": "gpt2", "qwen2": "qwen2", "qwen2moe": "qwen2"}
# Llama 3's split regex (its tokenizer.json's Split pre-tokenizer): digits in runs of at most three
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
# architecture -> tokenizer class transformers uses for it
TOKENIZER_CLASS = {"llama": "LlamaTokenizerFast", "mistral": "LlamaTokenizerFast", "qwen2": "Qwen2TokenizerFast",
                   "qwen2moe": "Qwen2TokenizerFast",
                   "gemma": "GemmaTokenizerFast", "gemma2": "GemmaTokenizerFast", "gpt2": "GPT2TokenizerFast",
                   "t5": "T5TokenizerFast"}


def _field(gguf: GGUFFile, key: str, default: Any = None) -> Any:
    return gguf.get(f"tokenizer.ggml.{key}", default)


def _sentencepiece_backend(gguf: GGUFFile, tokens: list[str]) -> Tokenizer:
    scores = _field(gguf, "scores")
    if scores is None or len(scores) != len(tokens):
        raise TokenizerError(f"{gguf.path}: tokenizer.ggml.scores must hold one score per token for a "
                             "SentencePiece ('llama') vocabulary")
    types = _field(gguf, "token_type") or [1] * len(tokens)
    unk = _field(gguf, "unknown_token_id", 0)
    model = SentencePieceModel(pieces=[Piece(t, float(s), int(k)) for t, s, k in zip(tokens, scores, types)],
                               trainer_spec=TrainerSpec(model_type=SPM_BPE, unk_piece=tokens[unk]))
    style = "gemma" if gguf.architecture.startswith("gemma") else "llama"
    return sentencepiece_to_tokenizer(model, legacy=True, add_prefix_space=_field(gguf, "add_space_prefix", True),
                                      where=str(gguf.path), style=style)


def _byte_level_backend(gguf: GGUFFile, tokens: list[str]) -> Tokenizer:
    pre = _field(gguf, "pre", "default")
    style = _BPE_STYLES.get(pre) or _ARCHITECTURE_STYLES.get(gguf.architecture)
    if style is None:
        raise TokenizerError(f"{gguf.path}: tokenizer.ggml.pre {pre!r} is not supported for architecture "
                             f"{gguf.architecture!r}; formers knows {sorted(_BPE_STYLES)}")
    if pre not in _BPE_STYLES:
        logger.warning("%s: tokenizer.ggml.pre %r is not one formers knows; splitting text as transformers 4.45 "
                       "does for a %s file (%s)", gguf.path, pre, gguf.architecture, style)
    merges = [tuple(m.split(" ", 1)) for m in _field(gguf, "merges") or []]
    tokenizer = Tokenizer(BPE({t: i for i, t in enumerate(tokens)}, merges, dropout=None,
                              continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=style in ("gpt2", "smollm"))
    if style == "qwen2":
        tokenizer.normalizer = normalizers.NFC()
    if style in ("qwen2", "llama3"):
        pattern = QWEN2_SPLIT if style == "qwen2" else LLAMA3_SPLIT
        split = pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    elif style == "smollm":  # SmolLM: every digit alone, then GPT-2's byte-level regex
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    types = _field(gguf, "token_type") or []
    added = [AddedToken(tokens[i], normalized=False, special=k == CONTROL)
             for i, k in enumerate(types) if k in (CONTROL, USER_DEFINED)]
    if added:
        tokenizer.add_tokens(added)
    return tokenizer


def _unigram_backend(gguf: GGUFFile, tokens: list[str]) -> Tokenizer:
    """llama.cpp's "t5" vocabulary (a SentencePiece Unigram model) as transformers' T5 converter builds it: the
    precompiled character map, trailing spaces stripped and runs of spaces squeezed, "▁" prepended to the text."""
    scores = _field(gguf, "scores")
    if scores is None or len(scores) != len(tokens):
        raise TokenizerError(f"{gguf.path}: tokenizer.ggml.scores must hold one score per token for a Unigram ('t5') "
                             "vocabulary")
    tokens = t5_sentinels(tokens)
    tokenizer = Tokenizer(Unigram([(t, float(s)) for t, s in zip(tokens, scores)],
                                  unk_id=_field(gguf, "unknown_token_id", 2), byte_fallback=False))
    steps = [normalizers.Strip(left=False, right=True), normalizers.Replace(Regex(" {2,}"), "▁")]
    charsmap = _field(gguf, "precompiled_charsmap")
    if charsmap:
        steps.insert(0, normalizers.Precompiled(bytes(value & 0xFF for value in charsmap)))
    tokenizer.normalizer = normalizers.Sequence(steps)
    prepend = "always" if _field(gguf, "add_space_prefix", True) else "never"
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=prepend)
    types = (_field(gguf, "token_type") or [])[:len(tokens)]  # (fillers left out above are plain UNUSED tokens)
    added = [AddedToken(tokens[i], normalized=False, special=k == CONTROL)
             for i, k in enumerate(types) if k in (CONTROL, USER_DEFINED)]
    added += [AddedToken(t, normalized=False, special=True) for t in tokens if t.startswith("<extra_id_")]
    if added:
        tokenizer.add_tokens(added)
    return tokenizer


T5_SENTINELS = 100  # T5Tokenizer's extra_ids


def t5_sentinels(tokens: list[str]) -> list[str]:
    """The vocabulary with T5's sentinel names restored. llama.cpp writes the ids past the SentencePiece pieces as
    "[PAD<id>]" fillers (T5's `<extra_id_N>` come from its tokenizer class, not from spiece.model); T5Tokenizer puts
    its 100 sentinels right there, `<extra_id_0>` last, so they get those names back, and fillers past them (ids the
    model's embedding pads to) are left out, as T5's tokenizer has none."""
    first = len(tokens)
    while first > 0 and tokens[first - 1] == f"[PAD{first - 1}]":
        first -= 1
    if len(tokens) - first < T5_SENTINELS:
        return tokens
    return tokens[:first] + [f"<extra_id_{T5_SENTINELS - 1 - j}>" for j in range(T5_SENTINELS)]


def _special_tokens(gguf: GGUFFile, tokens: list[str]) -> dict[str, str]:
    out = {}
    for key, name in (("bos_token_id", "bos_token"), ("eos_token_id", "eos_token"),
                      ("unknown_token_id", "unk_token"), ("padding_token_id", "pad_token")):
        index = _field(gguf, key)
        if index is not None and 0 <= index < len(tokens):
            out[name] = tokens[index]
    return out


def gguf_tokenizer_parts(gguf: GGUFFile) -> tuple[str, Tokenizer, dict[str, Any]]:
    """(transformers tokenizer class name, backend, constructor kwargs) for the tokenizer in `gguf`."""
    kind, tokens = _field(gguf, "model"), _field(gguf, "tokens")
    if not tokens:
        raise TokenizerError(f"{gguf.path}: the file holds no tokenizer (tokenizer.ggml.tokens is missing)")
    if kind == "llama":
        backend = _sentencepiece_backend(gguf, tokens)
    elif kind == "gpt2":
        backend = _byte_level_backend(gguf, tokens)
    elif kind == "t5":
        backend = _unigram_backend(gguf, tokens)
    else:
        raise TokenizerError(f"{gguf.path}: tokenizer.ggml.model {kind!r} is not supported; expected 'llama' "
                             "(SentencePiece), 'gpt2' (byte-level BPE) or 't5' (Unigram)")
    kwargs: dict[str, Any] = _special_tokens(gguf, tokens)
    add_bos = _field(gguf, "add_bos_token", kind == "llama")
    kwargs.update(add_bos_token=bool(add_bos), add_eos_token=bool(_field(gguf, "add_eos_token", False)))
    if kind == "llama":
        kwargs["legacy"] = True
    elif kind == "t5":
        if backend.token_to_id("<extra_id_0>") is not None:  # listed as T5Tokenizer lists them
            kwargs["additional_special_tokens"] = [f"<extra_id_{i}>" for i in range(T5_SENTINELS)]
        eos = kwargs.get("eos_token")
        if kwargs["add_eos_token"] and eos is not None:  # T5's "$A </s>"
            backend.post_processor = processors.TemplateProcessing(
                single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, backend.token_to_id(eos))])
    elif add_bos or kwargs["add_eos_token"]:
        backend.post_processor = _template(kwargs, backend, add_bos)
    template = gguf.get("tokenizer.chat_template")
    if template is not None:
        kwargs["chat_template"] = template
    from .architectures import model_type_of
    class_name = TOKENIZER_CLASS.get(model_type_of(gguf) if kind == "llama" else gguf.architecture,
                                     "LlamaTokenizerFast" if kind == "llama" else "PreTrainedTokenizerFast")
    if class_name == "Qwen2TokenizerFast" and not add_bos:
        kwargs.pop("bos_token", None)  # Qwen2 tokenizers have no BOS token (4.45.2 gives None for these files too)
    return class_name, backend, kwargs


def _template(kwargs: dict[str, Any], backend: Tokenizer, add_bos: bool) -> processors.PostProcessor:
    """Byte-level BPE vocabularies that ask for BOS/EOS (Llama 3 style) get them from a template."""
    single, specials = "$A", []
    for token, on, before in ((kwargs.get("bos_token"), add_bos, True),
                              (kwargs.get("eos_token"), kwargs["add_eos_token"], False)):
        if token is not None and on:
            single = f"{token} {single}" if before else f"{single} {token}"
            specials.append((token, backend.token_to_id(token)))
    return processors.Sequence([processors.ByteLevel(trim_offsets=False),
                                processors.TemplateProcessing(single=single, special_tokens=specials)])
