"""tokenizer.model alone (no tokenizer.json): formers' protobuf reader and converter vs transformers 4.45.2,
which converts with sentencepiece + protobuf."""
from __future__ import annotations

import json
import shutil

import pytest

from formers.errors import TokenizerError
from formers.tokenization.sentencepiece_model import load_sentencepiece_model, parse_sentencepiece_model

from .conftest import load_both, shared_dir
from .tok_corpus import sample_texts

# the oracle converts tokenizer.model with these two (the `test` extra installs both)
pytest.importorskip("sentencepiece")
pytest.importorskip("google.protobuf")

TEXTS = sample_texts()


def spm_only_copy(tmp_path_factory, name: str, config_edit=None):
    """Copy only tokenizer.model (+ tokenizer_config.json, optionally edited) of a shared tokenizer."""
    source = shared_dir(name)
    folder = tmp_path_factory.mktemp(f"{name}-spm")
    shutil.copy(source / "tokenizer.model", folder / "tokenizer.model")
    config = json.loads((source / "tokenizer_config.json").read_text())
    if config_edit is not None:
        config_edit(config)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def drop_legacy(config):
    config.pop("legacy", None)  # transformers then uses the legacy (default) behaviour


VARIANTS = [("llama2", None), ("stories260K", None), ("llama2", drop_legacy), ("stories260K", drop_legacy)]


@pytest.fixture(scope="module", params=range(len(VARIANTS)), ids=["llama2", "stories260K", "llama2-legacy",
                                                                  "stories260K-legacy"])
def converted(request, tmp_path_factory):
    name, edit = VARIANTS[request.param]
    folder = spm_only_copy(tmp_path_factory, name, edit)
    mine, ref = load_both(folder)
    assert not (folder / "tokenizer.json").exists()
    return mine, ref


def test_converted_ids_match(converted):
    mine, ref = converted
    assert mine(TEXTS)["input_ids"] == ref(TEXTS)["input_ids"]
    for text in TEXTS:
        assert mine(text) == ref(text), text
        assert mine.encode(text, add_special_tokens=False) == ref.encode(text, add_special_tokens=False), text
    pairs = mine(TEXTS[:30], TEXTS[30:60])["input_ids"]
    assert pairs == ref(TEXTS[:30], TEXTS[30:60])["input_ids"]


def test_converted_decode_and_vocab_match(converted):
    mine, ref = converted
    assert mine.get_vocab() == ref.get_vocab() and len(mine) == len(ref)
    assert mine.added_tokens_decoder == ref.added_tokens_decoder
    for text in TEXTS[:80]:
        ids = ref.encode(text)
        assert mine.decode(ids) == ref.decode(ids)
        assert mine.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True)


def test_converted_backend_pipeline_matches(converted):
    mine, ref = converted
    a, b = json.loads(mine.backend_tokenizer.to_str()), json.loads(ref.backend_tokenizer.to_str())
    for key in ("normalizer", "pre_tokenizer", "post_processor", "decoder", "model", "added_tokens"):
        assert a[key] == b[key], key


def test_llama2_legacy_false_drops_leading_space(tmp_path_factory):
    folder = spm_only_copy(tmp_path_factory, "llama2")
    mine, ref = load_both(folder)
    assert mine(" Hello world")["input_ids"] == ref(" Hello world")["input_ids"]


def test_add_prefix_space_rebuilds_from_model(tmp_path_factory):
    folder = spm_only_copy(tmp_path_factory, "stories260K")
    shutil.copy(shared_dir("stories260K") / "tokenizer.json", folder / "tokenizer.json")
    mine, ref = load_both(folder, add_prefix_space=False)
    for text in TEXTS[:100]:
        assert mine(text)["input_ids"] == ref(text)["input_ids"], text


@pytest.mark.parametrize("name", ["llama2", "stories260K"])
def test_model_reader_matches_sentencepiece(name):
    import sentencepiece
    from transformers.convert_slow_tokenizer import import_protobuf

    path = shared_dir(name) / "tokenizer.model"
    model = load_sentencepiece_model(path)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    assert len(model.pieces) == sp.get_piece_size()
    for i, piece in enumerate(model.pieces):
        assert piece.piece == sp.id_to_piece(i)
        assert piece.score == pytest.approx(sp.get_score(i))
        assert (piece.type == 3) == sp.is_control(i) and (piece.type == 2) == sp.is_unknown(i)
        assert (piece.type == 6) == sp.is_byte(i)
    proto = import_protobuf().ModelProto()
    proto.ParseFromString(path.read_bytes())
    spec = model.trainer_spec
    for field in ("model_type", "vocab_size", "byte_fallback", "unk_id", "bos_id", "eos_id", "pad_id", "unk_piece",
                  "bos_piece", "eos_piece", "pad_piece"):
        assert getattr(spec, field) == getattr(proto.trainer_spec, field), field
    for field in ("add_dummy_prefix", "remove_extra_whitespaces", "escape_whitespaces"):
        assert getattr(model.normalizer_spec, field) == getattr(proto.normalizer_spec, field), field


def test_corrupt_model_raises(tmp_path):
    with pytest.raises(TokenizerError, match="tokenizer.model"):
        parse_sentencepiece_model(b"\x0a\xff\xff", where="tokenizer.model")
    with pytest.raises(TokenizerError, match="no vocabulary pieces"):
        parse_sentencepiece_model(b"", where="tokenizer.model")
    with pytest.raises(TokenizerError, match="cannot read"):
        load_sentencepiece_model(tmp_path / "missing.model")


def test_bare_tokenizer_model_is_served_as_llama(tmp_path):
    """Only tokenizer.model (no config at all): formers serves it with LlamaTokenizer defaults, which
    matches transformers' LlamaTokenizerFast.from_pretrained on the same folder (AutoTokenizer cannot
    load such a folder in transformers)."""
    import transformers

    from formers import AutoTokenizer

    shutil.copy(shared_dir("stories260K") / "tokenizer.model", tmp_path / "tokenizer.model")
    mine = AutoTokenizer.from_pretrained(tmp_path)
    ref = transformers.LlamaTokenizerFast.from_pretrained(tmp_path)
    assert mine(TEXTS)["input_ids"] == ref(TEXTS)["input_ids"]
    assert mine.bos_token_id == ref.bos_token_id == 1
