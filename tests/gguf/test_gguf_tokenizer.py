"""Tokenizers rebuilt from GGUF metadata give the ids of the Hugging Face tokenizer of the same vocabulary
(transformers 4.45.2 loading the folder's own files), for SentencePiece and byte-level BPE vocabularies."""
from __future__ import annotations

import json
import shutil

import pytest
import transformers

import formers
from tests.conftest import GPT2_TOKENIZER, STORIES

from .convert import tokenizer_only

TEXTS = ["Once upon a time, there was a little girl named Lily.", "  leading spaces and   runs  ",
         "tabs\tand\nnew lines\n\n", "Special <s> and </s> inside", "unicode: café naïve 日本 🙂", "", " ",
         "x" * 40, "it's 1234 o'clock; they'll"]
TEMPLATE = ("{% for m in messages %}{{ bos_token }}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}"
            "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")


def assert_same_ids(ours, theirs, texts=TEXTS):
    for text in texts:
        assert ours(text).input_ids == theirs(text).input_ids, text
        assert ours.decode(ours(text).input_ids) == theirs.decode(theirs(text).input_ids), text
    assert ours.pad_token == theirs.pad_token
    if theirs.pad_token is not None:
        assert ours(texts[:3], padding=True).input_ids == theirs(texts[:3], padding=True).input_ids


def test_sentencepiece_vocabulary(tmp_path):
    tokenizer_only(STORIES, tmp_path / "spm.gguf", "llama", chat_template=TEMPLATE)
    ours = formers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="spm.gguf")
    theirs = transformers.AutoTokenizer.from_pretrained(STORIES)
    assert type(ours).__name__ == "LlamaTokenizerFast"
    assert (ours.bos_token, ours.eos_token, ours.unk_token, ours.pad_token) == ("<s>", "</s>", "<unk>", None)
    assert ours.add_bos_token and not ours.add_eos_token
    assert len(ours) == len(theirs) == 512
    assert_same_ids(ours, theirs)
    chat = [{"role": "user", "content": "hi there"}]
    rendered = ours.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert rendered == "<s><|user|>hi there</s><|assistant|>"
    assert ours.apply_chat_template(chat, add_generation_prompt=True) == \
        theirs.apply_chat_template(chat, chat_template=TEMPLATE, add_generation_prompt=True)


def test_model_file_tokenizer_via_class(stories_dir, stories_gguf):
    ours = formers.LlamaTokenizerFast.from_pretrained(stories_dir, gguf_file=stories_gguf("Q8_0"))
    assert_same_ids(ours, transformers.AutoTokenizer.from_pretrained(STORIES), TEXTS[:3])


@pytest.fixture(scope="module")
def small_bpe(tmp_path_factory):
    """GPT-2's byte-level BPE cut to its first 4000 merges (the gguf package's reader needs ~8 s for the full
    50k vocabulary): vocab.json, merges.txt and tokenizer_config.json of a valid smaller tokenizer."""
    folder = tmp_path_factory.mktemp("small_bpe")
    vocab = json.loads((GPT2_TOKENIZER / "vocab.json").read_text())
    merges = (GPT2_TOKENIZER / "merges.txt").read_text(encoding="utf-8").split("\n")[1:4001]
    keep = {t for t, i in vocab.items() if i < 256} | {"".join(m.split(" ")) for m in merges} | {"<|endoftext|>"}
    small = {t: i for i, t in enumerate(sorted(keep, key=vocab.get))}
    (folder / "vocab.json").write_text(json.dumps(small))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    end = small["<|endoftext|>"]
    config = {"added_tokens_decoder": {str(end): {"content": "<|endoftext|>", "special": True}},
              "eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("arch,pre,oracle", [("gpt2", "default", "GPT2TokenizerFast"),
                                             ("qwen2", "qwen2", "Qwen2TokenizerFast")])
def test_byte_level_bpe_vocabulary(tmp_path, small_bpe, arch, pre, oracle):
    tokenizer_only(small_bpe, tmp_path / "bpe.gguf", arch, pre=pre)
    ours = formers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="bpe.gguf")
    theirs = getattr(transformers, oracle)(vocab_file=str(small_bpe / "vocab.json"),
                                           merges_file=str(small_bpe / "merges.txt"))
    assert type(ours).__name__ == oracle
    assert ours.eos_token == "<|endoftext|>" and ours.convert_tokens_to_ids("<|endoftext|>") == len(ours) - 1
    assert_same_ids(ours, theirs, TEXTS + ["a<|endoftext|>b"])


def test_no_tokenizer_in_file(tmp_path, llama_dir):
    import gguf
    writer = gguf.GGUFWriter(str(tmp_path / "bare.gguf"), "llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(formers.errors.TokenizerError, match=r"bare\.gguf.*no tokenizer"):
        formers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="bare.gguf")


# The pre-tokenizers of Meta-Llama-3's and SmolLM's tokenizer.json files, as the Hugging Face side of the check
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                  r"\s*[\r\n]+|\s+(?!\S)|\s+")


def _hub_style_tokenizer(folder, pre: str, add_bos: bool):
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE

    vocab = json.loads((folder / "vocab.json").read_text())
    lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")[1:]
    backend = Tokenizer(BPE(vocab, [tuple(line.split(" ")) for line in lines if line]))
    if pre == "llama-bpe":
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    else:
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    backend.decoder = decoders.ByteLevel()
    end = vocab["<|endoftext|>"]
    steps = [processors.ByteLevel(trim_offsets=False)]
    if add_bos:
        steps.append(processors.TemplateProcessing(single="<|endoftext|> $A",
                                                   special_tokens=[("<|endoftext|>", end)]))
    backend.post_processor = processors.Sequence(steps)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>",
                                                bos_token="<|endoftext|>")


@pytest.mark.parametrize("pre,add_bos", [("llama-bpe", True), ("smollm", False)])
def test_llama3_and_smollm_pre_tokenizers(tmp_path, small_bpe, pre, add_bos):
    import gguf

    from .convert import write_tokenizer
    writer = gguf.GGUFWriter(str(tmp_path / "pre.gguf"), "llama")
    write_tokenizer(writer, small_bpe, pre, add_bos=add_bos)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    ours = formers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="pre.gguf")
    theirs = _hub_style_tokenizer(small_bpe, pre, add_bos)
    assert_same_ids(ours, theirs, TEXTS + ["year 2024: 1234567 items", "x<|endoftext|>y"])


def test_qwen2moe_tokenizer_equals_transformers_445_on_the_same_file(tmp_path, small_bpe):
    """A qwen2moe file's byte-level BPE with a special token and a chat template: formers and 4.45.2, both
    reading the GGUF file itself, give the same class, ids, decoded text and chat-template ids."""
    folder = tmp_path / "qwen_vocab"  # small_bpe plus Qwen's chat tokens, special as in Qwen's own vocabulary
    shutil.copytree(small_bpe, folder)
    vocab = json.loads((folder / "vocab.json").read_text())
    config = json.loads((folder / "tokenizer_config.json").read_text())
    for token in ("<|im_start|>", "<|im_end|>"):
        config["added_tokens_decoder"][str(len(vocab))] = {"content": token, "special": True}
        vocab[token] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer_only(folder, tmp_path / "moe.gguf", "qwen2moe", pre="qwen2", chat_template=TEMPLATE, name="qwen")
    ours = formers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="moe.gguf")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="moe.gguf")
    assert type(ours).__name__ == type(theirs).__name__ == "Qwen2TokenizerFast"
    assert (ours.bos_token, ours.eos_token) == (theirs.bos_token, theirs.eos_token)
    assert_same_ids(ours, theirs, TEXTS + ["a<|endoftext|>b", "<|im_start|>user\nhi<|im_end|>"])
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi <|endoftext|> there"}]
    assert ours.apply_chat_template(chat, add_generation_prompt=True) == \
        theirs.apply_chat_template(chat, add_generation_prompt=True)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_unknown_pre_tokenizer_splits_as_4_45_does(tmp_path, small_bpe, arch, caplog):
    """A byte-level vocabulary whose tokenizer.ggml.pre formers does not know (here DeepSeek's name): 4.45.2 ignores
    the field for these architectures (GPT-2's split for llama, Qwen2's for qwen2); formers does the same, says so,
    and gives 4.45.2's ids reading the same file. An architecture 4.45 has no tokenizer for still gets the error."""
    import gguf

    from .convert import write_out, write_tokenizer
    writer = gguf.GGUFWriter(str(tmp_path / "pre.gguf"), arch)
    writer.add_name("x")  # (4.45.2 needs a name)
    write_tokenizer(writer, small_bpe, "deepseek-llm", add_bos=arch == "llama")  # (as Llama 3 files say)
    write_out(writer, tmp_path / "pre.gguf")
    with caplog.at_level("WARNING"):
        ours = formers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="pre.gguf")
    assert "tokenizer.ggml.pre 'deepseek-llm' is not one formers knows" in caplog.text
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="pre.gguf")
    assert_same_ids(ours, theirs, TEXTS + ["year 2024: 1234567 items", "x<|endoftext|>y"])
    tokenizer_only(small_bpe, tmp_path / "other.gguf", "gpt2", pre="deepseek-llm")
    with pytest.raises(formers.errors.TokenizerError, match=r"other\.gguf: tokenizer\.ggml\.pre 'deepseek-llm' is not "
                                                            r"supported for architecture 'gpt2'"):
        formers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="other.gguf")


def _t5_vocabulary_file(folder, out, vocab_size: int) -> None:
    """A GGUF file with a T5 SentencePiece Unigram vocabulary as llama.cpp's T5 converter writes it: model "t5", the
    pieces with their scores and types, the vocabulary padded to the model's size with "[PAD<i>]" (T5's sentinels
    have no names there), the normalizer's precompiled character map, no BOS and an EOS added."""
    import gguf
    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2

    from .convert import write_out
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString((folder / "spiece.model").read_bytes())
    sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
    tokens, scores, types = [f"[PAD{i}]" for i in range(vocab_size)], [-10000.0] * vocab_size, [5] * vocab_size
    for i in range(sp.get_piece_size()):
        tokens[i], scores[i] = sp.id_to_piece(i), sp.get_score(i)
        types[i] = 2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 5 if sp.is_unused(i) else \
            6 if sp.is_byte(i) else 1
    writer = gguf.GGUFWriter(str(out), "t5")
    writer.add_name("t5")
    writer.add_tokenizer_model("t5")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_add_space_prefix(proto.normalizer_spec.add_dummy_prefix)
    writer.add_remove_extra_whitespaces(proto.normalizer_spec.remove_extra_whitespaces)
    writer.add_precompiled_charsmap(proto.normalizer_spec.precompiled_charsmap)
    writer.add_eos_token_id(sp.eos_id())
    writer.add_unk_token_id(sp.unk_id())
    writer.add_pad_token_id(sp.pad_id())
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(True)
    write_out(writer, out)


@pytest.mark.parametrize("model_vocab", [400, 428])
def test_t5_unigram_vocabulary_equals_the_spiece_tokenizer(tmp_path, model_vocab):
    """llama.cpp's "t5" vocabulary (4.45 reads none: it has no T5 GGUF support) gives T5TokenizerFast with the ids
    and decoded text of 4.45.2's T5TokenizerFast built from the same spiece.model: </s> appended, special tokens in
    the text kept whole, T5's 100 sentinels named again where llama.cpp left "[PAD<id>]" fillers (and the fillers
    past them, up to an embedding padded like t5-small's 32,128 rows, left out)."""
    from tests.tokenization.test_seq2seq_tokenizers import TEXTS as SEQ2SEQ_TEXTS
    from tests.tokenization.test_seq2seq_tokenizers import _train_spm

    _train_spm(tmp_path, "spiece", 300)
    _t5_vocabulary_file(tmp_path, tmp_path / "t5.gguf", model_vocab)
    ours = formers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="t5.gguf")
    theirs = transformers.T5TokenizerFast(vocab_file=str(tmp_path / "spiece.model"))
    assert type(ours).__name__ == "T5TokenizerFast" and len(ours) == len(theirs) == 400
    assert ours.additional_special_tokens == theirs.additional_special_tokens
    assert ours.convert_ids_to_tokens(list(range(290, 400))) == theirs.convert_ids_to_tokens(list(range(290, 400)))
    for text in TEXTS + SEQ2SEQ_TEXTS + ["Fill <extra_id_0> the <extra_id_1> gaps<extra_id_99>"]:
        assert ours(text)["input_ids"] == theirs(text)["input_ids"], text
        ids = theirs(text)["input_ids"]
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True), text
    assert ours("first", "second")["input_ids"] == theirs("first", "second")["input_ids"]
