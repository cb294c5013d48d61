"""Qwen2AudioProcessor: the Qwen2 tokenizer (text with `<|AUDIO|>` placeholders) + Whisper's feature extractor.

As in transformers 4.45 the processor does not expand the placeholders: each `<|AUDIO|>` stays one token and
the model puts the audio's vectors in its place. Features are always padded to 30 s, and their frame mask is
returned as `feature_attention_mask` (the model reads each audio's length from it).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

from ...errors import ConfigError
from ...feature_extraction_utils import BatchFeature
from ...loading.hub import resolve_file
from ..whisper.feature_extraction_whisper import WhisperFeatureExtractor

CHAT_TEMPLATE_NAME = "chat_template.json"

# ChatML with a default system turn; each audio part of a message renders as a numbered placeholder.
DEFAULT_CHAT_TEMPLATE = (
    "{% set seen = namespace(audios=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if 'audio' in part or 'audio_url' in part %}{% set seen.audios = seen.audios + 1 %}"
    "{{ 'Audio ' ~ seen.audios ~ ': <|audio_bos|><|AUDIO|><|audio_eos|>\\n' }}"
    "{% elif 'text' in part %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class Qwen2AudioProcessor:
    attributes: ClassVar[list[str]] = ["feature_extractor", "tokenizer"]
    feature_extractor_class = "WhisperFeatureExtractor"
    tokenizer_class = "AutoTokenizer"

    def __init__(self, feature_extractor: WhisperFeatureExtractor | None = None, tokenizer: Any = None,
                 chat_template: str | None = None):
        if feature_extractor is None or tokenizer is None:
            raise ConfigError("Qwen2AudioProcessor: pass both `feature_extractor` (a WhisperFeatureExtractor) and "
                              "`tokenizer` (the Qwen2 tokenizer)")
        self.feature_extractor, self.tokenizer = feature_extractor, tokenizer
        self.chat_template = chat_template if chat_template is not None else self.default_chat_template
        self.current_processor = tokenizer

    @property
    def default_chat_template(self) -> str:
        return DEFAULT_CHAT_TEMPLATE

    def __call__(self, text: Any = None, audios: Any = None, padding: bool | str = False,
                 sampling_rate: int | None = None, **kwargs: Any) -> BatchFeature:
        """Token ids of `text` (+ `input_features` and `feature_attention_mask` of `audios`, one array each)."""
        if text is None:
            raise ConfigError("Qwen2AudioProcessor: `text` is required (put one <|AUDIO|> per audio in it)")
        inputs = dict(self.tokenizer(text, padding=padding, **kwargs))
        if audios is not None:
            features = self.feature_extractor(audios, sampling_rate=sampling_rate, return_attention_mask=True,
                                              padding="max_length", **kwargs)
            features["feature_attention_mask"] = features.pop("attention_mask")
            inputs.update(features)
        return BatchFeature(data=inputs)

    def apply_chat_template(self, conversation: Any, chat_template: str | None = None, tokenize: bool = False,
                            **kwargs: Any):
        """Render a conversation with the processor's template (audio parts become placeholders)."""
        template = chat_template if chat_template is not None else self.chat_template
        if template is None:
            raise ConfigError("Qwen2AudioProcessor.apply_chat_template: no chat template; pass `chat_template`")
        return self.tokenizer.apply_chat_template(conversation, chat_template=template, tokenize=tokenize, **kwargs)

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return list(dict.fromkeys(self.tokenizer.model_input_names + self.feature_extractor.model_input_names
                                  + ["feature_attention_mask"]))

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> list[str]:
        """preprocessor_config.json (naming this class, for AutoProcessor), the tokenizer files, chat_template.json."""
        folder = Path(save_directory)
        self.feature_extractor.processor_class = type(self).__name__
        written = [*self.feature_extractor.save_pretrained(folder), *self.tokenizer.save_pretrained(folder)]
        if self.chat_template is not None:
            target = folder / CHAT_TEMPLATE_NAME
            target.write_text(json.dumps({"chat_template": self.chat_template}, indent=2, sort_keys=True) + "\n",
                              encoding="utf-8")
            written.append(str(target))
        return written

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> Qwen2AudioProcessor:
        from ..auto.tokenization_auto import AutoTokenizer

        hub = {k: kwargs[k] for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
        chat_template = kwargs.pop("chat_template", None)
        template_file = resolve_file(pretrained_model_name_or_path, CHAT_TEMPLATE_NAME, required=False, **hub)
        if chat_template is None and template_file is not None:
            chat_template = json.loads(Path(template_file).read_text(encoding="utf-8"))["chat_template"]
        return cls(WhisperFeatureExtractor.from_pretrained(pretrained_model_name_or_path, **hub),
                   AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs), chat_template=chat_template)
