"""What each transformers tokenizer class changes on top of the generic fast tokenizer.

transformers has one Python class per family (LlamaTokenizerFast, GPT2TokenizerFast, ...). They all
run the same `tokenizers` backend; they differ only in constructor defaults and a few hooks. formers
serves them all with `PreTrainedTokenizerFast` and describes each class here as data, keyed by the
`tokenizer_class` name written in tokenizer_config.json (with or without the "Fast" suffix).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("formers.tokenization")

DEFAULT_INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")
CAUSAL_INPUT_NAMES = ("input_ids", "attention_mask")


@dataclass(frozen=True)
class TokenizerProfile:
    """Defaults and hooks of one transformers tokenizer class."""

    name: str  # class name saved as `tokenizer_class` ("LlamaTokenizer", "PreTrainedTokenizerFast")
    defaults: dict[str, Any] = field(default_factory=dict)  # constructor defaults, saved with the config
    padding_side: str = "right"
    model_input_names: tuple[str, ...] = CAUSAL_INPUT_NAMES
    # Rebuild the post-processor from add_bos_token / add_eos_token (Llama, Gemma, GPT-NeoX, Cohere).
    bos_eos_post_processor: bool = False
    # Align the ByteLevel pre-tokenizer with `add_prefix_space` (GPT-2 style byte-level BPE).
    byte_level_prefix_space: bool = False
    # Can be built from a SentencePiece tokenizer.model, with transformers' converter of this style
    # ("llama": legacy/add_prefix_space apply; "gemma": no prefix, literal tab piece).
    sentencepiece: bool = False
    sentencepiece_style: str = "llama"
    # Special tokens given as str are wrapped in AddedToken(normalized=False, special=True) (Qwen2).
    wrap_special_tokens: bool = False
    # Special tokens always appended to additional_special_tokens (CodeLlama infilling tokens).
    extra_special_tokens: tuple[str, ...] = ()
    # save_pretrained also writes the slow-tokenizer files vocab.json + merges.txt (GPT-2 style BPE), and
    # the tokenizer can be built from them when there is no tokenizer.json.
    saves_bpe_files: bool = False
    bpe_style: str = "gpt2"  # which converter builds it from vocab.json + merges.txt ("gpt2" or "qwen2")

    @property
    def llama_spm(self) -> bool:
        """Built from tokenizer.model with the Llama converter (`legacy` and `add_prefix_space` apply)."""
        return self.sentencepiece and self.sentencepiece_style == "llama"


_LLAMA_DEFAULTS = {
    "clean_up_tokenization_spaces": False, "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>",
    "add_bos_token": True, "add_eos_token": False, "use_default_system_prompt": False, "legacy": None,
    "add_prefix_space": None,
}
_ENDOFTEXT = "<|endoftext|>"

_PROFILES = [
    TokenizerProfile("PreTrainedTokenizerFast", model_input_names=DEFAULT_INPUT_NAMES),
    TokenizerProfile("LlamaTokenizer", _LLAMA_DEFAULTS, padding_side="left", bos_eos_post_processor=True,
                     sentencepiece=True),
    TokenizerProfile("CodeLlamaTokenizer", _LLAMA_DEFAULTS, padding_side="left", bos_eos_post_processor=True,
                     sentencepiece=True, extra_special_tokens=("▁<PRE>", "▁<MID>", "▁<SUF>", "▁<EOT>")),
    TokenizerProfile("GemmaTokenizer", {
        "clean_up_tokenization_spaces": False, "unk_token": "<unk>", "bos_token": "<bos>", "eos_token": "<eos>",
        "pad_token": "<pad>", "add_bos_token": True, "add_eos_token": False}, padding_side="left",
        bos_eos_post_processor=True, sentencepiece=True, sentencepiece_style="gemma"),
    TokenizerProfile("CohereTokenizer", {
        "clean_up_tokenization_spaces": False, "unk_token": "<UNK>", "bos_token": "<BOS_TOKEN>",
        "eos_token": "<|END_OF_TURN_TOKEN|>", "add_bos_token": True, "add_eos_token": False,
        "use_default_system_prompt": False, "add_prefix_space": False}, padding_side="left",
        bos_eos_post_processor=True, byte_level_prefix_space=True),
    TokenizerProfile("GPT2Tokenizer", {
        "unk_token": _ENDOFTEXT, "bos_token": _ENDOFTEXT, "eos_token": _ENDOFTEXT, "add_prefix_space": False},
        byte_level_prefix_space=True, saves_bpe_files=True),
    TokenizerProfile("WhisperTokenizer", {
        "unk_token": _ENDOFTEXT, "bos_token": _ENDOFTEXT, "eos_token": _ENDOFTEXT, "add_prefix_space": False},
        byte_level_prefix_space=True, saves_bpe_files=True, wrap_special_tokens=True),
    TokenizerProfile("CodeGenTokenizer", {
        "unk_token": _ENDOFTEXT, "bos_token": _ENDOFTEXT, "eos_token": _ENDOFTEXT, "add_prefix_space": False},
        byte_level_prefix_space=True, saves_bpe_files=True),
    TokenizerProfile("GPTNeoXTokenizer", {
        "unk_token": _ENDOFTEXT, "bos_token": _ENDOFTEXT, "eos_token": _ENDOFTEXT, "pad_token": None,
        "add_bos_token": False, "add_eos_token": False, "add_prefix_space": False},
        bos_eos_post_processor=True, byte_level_prefix_space=True),
    TokenizerProfile("BloomTokenizer", {
        "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
        "add_prefix_space": False, "clean_up_tokenization_spaces": False}, byte_level_prefix_space=True),
    TokenizerProfile("Qwen2Tokenizer", {
        "unk_token": _ENDOFTEXT, "bos_token": None, "eos_token": _ENDOFTEXT, "pad_token": _ENDOFTEXT},
        wrap_special_tokens=True, saves_bpe_files=True, bpe_style="qwen2"),
    TokenizerProfile("T5Tokenizer", {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "extra_ids": 100},
                     model_input_names=("input_ids", "attention_mask")),
    TokenizerProfile("BartTokenizer", {
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>",
        "pad_token": "<pad>", "mask_token": "<mask>", "add_prefix_space": False, "trim_offsets": True},
        model_input_names=("input_ids", "attention_mask"), byte_level_prefix_space=True),
    TokenizerProfile("MBartTokenizer", {  # models/mbart/tokenization_mbart.py adds the language handling
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>",
        "pad_token": "<pad>", "mask_token": "<mask>"}, model_input_names=("input_ids", "attention_mask"),
        extra_special_tokens=("ar_AR", "cs_CZ", "de_DE", "en_XX", "es_XX", "et_EE", "fi_FI", "fr_XX", "gu_IN",
                              "hi_IN", "it_IT", "ja_XX", "kk_KZ", "ko_KR", "lt_LT", "lv_LV", "my_MM", "ne_NP",
                              "nl_XX", "ro_RO", "ru_RU", "si_LK", "tr_TR", "vi_VN", "zh_CN")),
    TokenizerProfile("MBart50Tokenizer", {  # models/mbart50/tokenization_mbart50_fast.py: code first, then text
        "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>", "pad_token": "<pad>",
        "mask_token": "<mask>"}, model_input_names=("input_ids", "attention_mask"), extra_special_tokens=tuple(
            "ar_AR cs_CZ de_DE en_XX es_XX et_EE fi_FI fr_XX gu_IN hi_IN it_IT ja_XX kk_KZ ko_KR lt_LT lv_LV my_MM "
            "ne_NP nl_XX ro_RO ru_RU si_LK tr_TR vi_VN zh_CN af_ZA az_AZ bn_IN fa_IR he_IL hr_HR id_ID ka_GE km_KH "
            "mk_MK ml_IN mn_MN mr_IN pl_PL ps_AF pt_XX sv_SE sw_KE ta_IN te_IN th_TH tl_XX uk_UA ur_PK xh_ZA gl_ES "
            "sl_SI".split())),
    TokenizerProfile("NllbTokenizer", {  # models/m2m_100/tokenization_nllb.py adds the language handling
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>",
        "pad_token": "<pad>", "mask_token": "<mask>"}, model_input_names=("input_ids", "attention_mask")),
]
PROFILES: dict[str, TokenizerProfile] = {p.name: p for p in _PROFILES}

# config.json `model_type` -> tokenizer class, used when tokenizer_config.json names no class.
MODEL_TYPE_TO_TOKENIZER = {
    "llama": "LlamaTokenizer", "mistral": "LlamaTokenizer", "mixtral": "LlamaTokenizer", "phi3": "LlamaTokenizer",
    "code_llama": "CodeLlamaTokenizer", "gemma": "GemmaTokenizer", "gemma2": "GemmaTokenizer",
    "cohere": "CohereTokenizer", "gpt2": "GPT2Tokenizer", "whisper": "WhisperTokenizer", "gpt_bigcode": "GPT2Tokenizer", "phi": "CodeGenTokenizer",
    "codegen": "CodeGenTokenizer", "gpt_neox": "GPTNeoXTokenizer", "olmo": "GPTNeoXTokenizer",
    "bloom": "BloomTokenizer", "qwen2": "Qwen2Tokenizer", "qwen2_moe": "Qwen2Tokenizer",
    "starcoder2": "GPT2Tokenizer", "stablelm": "GPTNeoXTokenizer", "falcon": "PreTrainedTokenizerFast",
    "mamba": "GPTNeoXTokenizer", "nemotron": "PreTrainedTokenizerFast",
    "t5": "T5Tokenizer", "mt5": "MT5Tokenizer", "bart": "BartTokenizer", "mbart": "MBartTokenizer", "m2m_100": "M2M100Tokenizer",
}


def get_profile(tokenizer_class: str | None) -> TokenizerProfile:
    """Profile for a `tokenizer_class` name; unknown names get the generic one (with a log message)."""
    if not tokenizer_class:
        return PROFILES["PreTrainedTokenizerFast"]
    name = tokenizer_class
    if name not in PROFILES and name.endswith("Fast"):
        name = name[: -len("Fast")]
    profile = PROFILES.get(name)
    if profile is None:
        logger.warning("tokenizer_class %r is not known to formers; serving it with PreTrainedTokenizerFast",
                       tokenizer_class)
        return PROFILES["PreTrainedTokenizerFast"]
    return profile
