"""Build a `tokenizers.Tokenizer` from a SentencePiece `tokenizer.model` (no tokenizer.json present).

The result matches what transformers 4.45 builds for a Llama-style tokenizer (its `LlamaConverter`):
BPE (or Unigram) with byte fallback, merges recovered from the piece scores, control and user-defined
pieces registered as added tokens, and the whitespace handling selected by `legacy`/`add_prefix_space`:

- legacy (the default when tokenizer_config.json has no `legacy`): a normalizer that prepends "▁" and
  turns spaces into "▁"; no pre-tokenizer.
- non-legacy (`legacy: false`): no normalizer, a Metaspace pre-tokenizer that prepends "▁" only to the
  first section (so text after a special token gets no extra "▁").

`style="gemma"` follows transformers' GemmaConverter instead: the "<0x09>" piece is the literal tab, spaces
become "▁" without any prefix, and <start_of_turn>/<end_of_turn> are special.

The post-processor (BOS/EOS) is not set here; the tokenizer class adds it from add_bos_token/add_eos_token.
"""
from __future__ import annotations

import os

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE, Unigram

from ..errors import TokenizerError
from .sentencepiece_model import BPE as SPM_BPE
from .sentencepiece_model import CONTROL, UNIGRAM, USER_DEFINED, SentencePieceModel, load_sentencepiece_model

SPIECE_UNDERLINE = "▁"
STYLES = ("llama", "gemma")
_GEMMA_SPECIAL = ("<start_of_turn>", "<end_of_turn>")


def _vocab_with_scores(model: SentencePieceModel, style: str) -> list[tuple[str, float]]:
    # The first three pieces (unk/bos/eos in Llama, pad/eos/bos in Gemma) get score 0, as transformers does;
    # Gemma's vocabulary holds the tab itself where its byte piece was.
    rename = {"<0x09>": "\t"} if style == "gemma" else {}
    return [(rename.get(p.piece, p.piece), 0.0 if i < 3 else p.score) for i, p in enumerate(model.pieces)]


def bpe_merges_from_scores(piece_ids: dict[str, int], vocab_scores: list[tuple[str, float]]) -> list[tuple[str, str]]:
    """Recover BPE merges: every split of a piece into two known pieces, best score first.

    Ties are broken by longer left part, then longer right part; remaining ties keep piece order, and
    splits of one piece are ordered by the ids of (left, right).
    """
    candidates: list[tuple[str, str, float]] = []
    for merged, score in dict(vocab_scores).items():
        splits = [
            (merged[:cut], merged[cut:])
            for cut in range(1, len(merged))
            if merged[:cut] in piece_ids and merged[cut:] in piece_ids
        ]
        splits.sort(key=lambda lr: (piece_ids[lr[0]], piece_ids[lr[1]]))
        candidates.extend((left, right, score) for left, right in splits)
    # sorted() is stable, also with reverse=True, which keeps the piece order among equal keys.
    candidates.sort(key=lambda c: (c[2], len(c[0]), len(c[1])), reverse=True)
    return [(left, right) for left, right, _ in candidates]


def _model_tokenizer(model: SentencePieceModel, vocab_scores: list[tuple[str, float]], where: str) -> Tokenizer:
    spec = model.trainer_spec
    if spec.model_type == UNIGRAM:
        return Tokenizer(Unigram(vocab_scores, unk_id=0, byte_fallback=True))
    if spec.model_type == SPM_BPE:
        piece_ids = {p.piece: i for i, p in enumerate(model.pieces)}
        if "\t" in dict(vocab_scores):
            piece_ids["\t"] = piece_ids.get("<0x09>")
        merges = bpe_merges_from_scores(piece_ids, vocab_scores)
        vocab = {piece: i for i, (piece, _) in enumerate(vocab_scores)}
        return Tokenizer(BPE(vocab, merges, unk_token=spec.unk_piece, fuse_unk=True, byte_fallback=True, dropout=None))
    raise TokenizerError(
        f"{where}: trainer_spec.model_type is {spec.model_type}; only Unigram (1) and BPE (2) SentencePiece "
        "models can be converted"
    )


def sentencepiece_to_tokenizer(
    model: SentencePieceModel,
    *,
    legacy: bool | None = True,
    add_prefix_space: bool | None = True,
    where: str = "tokenizer.model",
    style: str = "llama",
    slow_whitespace: bool = False,
) -> Tokenizer:
    """Convert a decoded SentencePiece model into a `tokenizers.Tokenizer` (Llama or Gemma converter).

    `slow_whitespace` also applies the model's `remove_extra_whitespaces` (legacy Llama style only), as the
    slow tokenizer does through SentencePiece; transformers' fast converter ignores it.
    """
    if style not in STYLES:
        raise TokenizerError(f"{where}: unknown SentencePiece conversion style {style!r}; expected one of {STYLES}")
    legacy = True if legacy is None else bool(legacy)
    add_prefix_space = True if add_prefix_space is None else bool(add_prefix_space)
    tokenizer = _model_tokenizer(model, _vocab_with_scores(model, style), where)

    # Control pieces are special added tokens; user-defined pieces are added tokens that are not special
    # (except Gemma's turn markers).
    special = _GEMMA_SPECIAL if style == "gemma" else ()
    added = [
        AddedToken(p.piece, normalized=False, special=p.type == CONTROL or p.piece in special)
        for p in model.pieces
        if p.type in (CONTROL, USER_DEFINED)
    ]
    if added:
        tokenizer.add_tokens(added)

    if style == "gemma":
        tokenizer.normalizer = normalizers.Replace(" ", SPIECE_UNDERLINE)
        tokenizer.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
        tokenizer.decoder = decoders.Sequence(_piece_decoders())
        return tokenizer
    before, after = _whitespace_rules(model, legacy) if slow_whitespace else ([], [])
    if legacy:
        steps = before + ([normalizers.Prepend(prepend=SPIECE_UNDERLINE)] if add_prefix_space else [])
        steps.append(normalizers.Replace(pattern=" ", content=SPIECE_UNDERLINE))
        tokenizer.normalizer = normalizers.Sequence(steps + after)
    else:
        if after:
            tokenizer.normalizer = normalizers.Sequence(after)
        scheme = "first" if add_prefix_space else "never"
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement=SPIECE_UNDERLINE, prepend_scheme=scheme, split=False
        )

    steps = _piece_decoders()
    if add_prefix_space:
        steps.append(decoders.Strip(content=" ", left=1))
    tokenizer.decoder = decoders.Sequence(steps)
    return tokenizer


def _whitespace_rules(model: SentencePieceModel, legacy: bool) -> tuple[list, list]:
    """SentencePiece's remove_extra_whitespaces as (steps before, steps after) the space escaping: leading
    spaces go (legacy only: the non-legacy slow class shields them), runs of spaces become one (done on the
    text by the slow class when non-legacy), and trailing "▁" go, literal ones included."""
    if not model.normalizer_spec.remove_extra_whitespaces:
        return [], []
    before = [normalizers.Replace(Regex(r"\A +"), ""), normalizers.Replace(Regex(" {2,}"), " ")] if legacy else []
    return before, [normalizers.Replace(Regex(r"[ ▁]+\z"), "")]


def _piece_decoders() -> list:
    """Pieces -> text: "▁" is a space, <0xNN> pieces are bytes, then one string."""
    return [decoders.Replace(SPIECE_UNDERLINE, " "), decoders.ByteFallback(), decoders.Fuse()]


def piece_decoder() -> decoders.Decoder:
    """The decoder SentencePiece itself applies to a run of pieces (no prefix-space handling)."""
    return decoders.Sequence(_piece_decoders())


def convert_sentencepiece_file(
    path: str | os.PathLike, *, legacy: bool | None = True, add_prefix_space: bool | None = True,
    style: str = "llama", slow_whitespace: bool = False,
) -> Tokenizer:
    """Read `tokenizer.model` at `path` and convert it (see `sentencepiece_to_tokenizer`)."""
    model = load_sentencepiece_model(path)
    return sentencepiece_to_tokenizer(model, legacy=legacy, add_prefix_space=add_prefix_space, where=str(path),
                                      style=style, slow_whitespace=slow_whitespace)
