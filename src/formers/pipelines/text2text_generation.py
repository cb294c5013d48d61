"""The encoder-decoder pipelines: "text2text-generation", "summarization", "translation" (and
"translation_xx_to_yy"), with transformers 4.45's arguments, defaults and output records.

Each input is tokenized (with the model's `prefix` or its task-specific prefix in front), handed to an
encoder-decoder `generate`, and decoded without special tokens into `{"<name>_text": ...}` records
(`generated`, `summary`, `translation`). Translation tokenizers that know languages (NLLB, M2M100) build
their inputs themselves: `src_lang` sets the source code, `tgt_lang` becomes `forced_bos_token_id`.
"""
from __future__ import annotations

import copy
import enum
import logging
from typing import Any

from ..errors import ConfigError
from .base import Pipeline

logger = logging.getLogger("formers.pipelines")


class ReturnType(enum.Enum):
    """What the records hold (4.45's text2text ReturnType): token ids or decoded text."""

    TENSORS = 0
    TEXT = 1


class Text2TextGenerationPipeline(Pipeline):
    """`pipe("question: ... context: ...")` -> [{"generated_text": ...}]."""

    return_name = "generated"

    def __init__(self, model, tokenizer=None, task: str = "", **kwargs: Any):
        if not model.config.is_encoder_decoder:
            raise ConfigError(f"The {task or 'text2text-generation'} pipeline needs an encoder-decoder model "
                              f"(AutoModelForSeq2SeqLM); got {type(model).__name__}")
        self.task = task or self.task
        super().__init__(model, tokenizer, task=task, **kwargs)
        self.prefix = vars(model.config).get("prefix")
        task_params = vars(model.config).get("task_specific_params") or {}
        if self.task in task_params:  # e.g. T5's "translate English to German: " prefix and lengths
            params = copy.deepcopy(task_params[self.task])
            if "prefix" in params:
                self.prefix = params.pop("prefix")
            self.generation_config.update(**params)

    def _sanitize_parameters(self, return_tensors=None, return_text=None, return_type=None,
                             clean_up_tokenization_spaces=None, truncation=None, stop_sequence=None,
                             **generate_kwargs):
        preprocess: dict[str, Any] = {}
        if truncation is not None:
            preprocess["truncation"] = truncation
        postprocess: dict[str, Any] = {}
        if return_tensors is not None and return_type is None:
            return_type = ReturnType.TENSORS if return_tensors else ReturnType.TEXT
        if return_type is not None:
            postprocess["return_type"] = return_type
        if clean_up_tokenization_spaces is not None:
            postprocess["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        if stop_sequence is not None:
            stop_ids = self.tokenizer.encode(stop_sequence, add_special_tokens=False)
            if len(stop_ids) > 1:
                logger.warning("Stopping on a multiple token sequence is not yet supported; the first token of the "
                               "stop sequence will be used as the stop sequence string in the interim.")
            generate_kwargs["eos_token_id"] = stop_ids[0]
        return preprocess, generate_kwargs, postprocess

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any):
        result = super().__call__(inputs, *args, **kwargs)
        if isinstance(inputs, list) and all(isinstance(x, str) for x in inputs) and all(len(r) == 1 for r in result):
            return [r[0] for r in result]
        return result

    def check_inputs(self, input_length: int, min_length: int, max_length: int) -> bool:
        """Warn about lengths that make little sense for the task (nothing for plain text2text)."""
        return True

    def _tokenize(self, text: Any, truncation=None) -> dict[str, Any]:
        if not isinstance(text, str):
            raise ConfigError(f"{self.task} pipeline: inputs must be a string or a list of strings, got "
                              f"{type(text).__name__}")
        encoded = self.tokenizer((self.prefix or "") + text, padding=False, truncation=truncation or False,
                                 return_tensors="pt")
        return {k: v for k, v in encoded.items() if k != "token_type_ids"}

    def preprocess(self, inputs: Any, truncation=None, **params: Any) -> dict[str, Any]:
        return self._tokenize(inputs, truncation)

    def _forward(self, model_inputs: dict[str, Any], **generate_kwargs: Any) -> dict[str, Any]:
        rows, input_length = model_inputs["input_ids"].shape
        self.check_inputs(input_length, generate_kwargs.get("min_length", self.generation_config.min_length),
                          generate_kwargs.get("max_length", self.generation_config.max_length))
        generate_kwargs.setdefault("generation_config", self.generation_config)
        output_ids = self.model.generate(**model_inputs, **generate_kwargs)
        return {"output_ids": output_ids.reshape(rows, output_ids.shape[0] // rows, *output_ids.shape[1:])}

    def postprocess(self, model_outputs: dict[str, Any], return_type=ReturnType.TEXT,
                    clean_up_tokenization_spaces: bool = False) -> list[dict[str, Any]]:
        records = []
        for ids in model_outputs["output_ids"][0]:
            if return_type == ReturnType.TENSORS:
                records.append({f"{self.return_name}_token_ids": ids})
            else:
                records.append({f"{self.return_name}_text": self.tokenizer.decode(
                    ids, skip_special_tokens=True, clean_up_tokenization_spaces=clean_up_tokenization_spaces)})
        return records

    def _pad_batch(self, items: list[dict[str, Any]], side: str = "left") -> dict[str, Any]:
        """Batches pad on the tokenizer's side (encoder inputs are right-padded for T5 and BART)."""
        return super()._pad_batch(items, getattr(self.tokenizer, "padding_side", "right"))


class SummarizationPipeline(Text2TextGenerationPipeline):
    """`pipe(article)` -> [{"summary_text": ...}]."""

    return_name = "summary"

    def check_inputs(self, input_length: int, min_length: int, max_length: int) -> bool:
        if max_length < min_length:
            logger.warning("Your min_length=%s must be inferior than your max_length=%s.", min_length, max_length)
        if input_length < max_length:
            logger.warning("Your max_length is set to %s, but your input_length is only %s. Since this is a "
                           "summarization task, where outputs shorter than the input are typically wanted, you might "
                           "consider decreasing max_length manually, e.g. summarizer('...', max_length=%s)",
                           max_length, input_length, input_length // 2)
        return True


class TranslationPipeline(Text2TextGenerationPipeline):
    """`pipe(text, src_lang=..., tgt_lang=...)` -> [{"translation_text": ...}]; "translation_en_to_de" names
    the languages in the task."""

    return_name = "translation"

    def check_inputs(self, input_length: int, min_length: int, max_length: int) -> bool:
        if input_length > 0.9 * max_length:
            logger.warning("Your input_length: %s is bigger than 0.9 * max_length: %s. You might consider increasing "
                           "your max_length manually, e.g. translator('...', max_length=400)", input_length, max_length)
        return True

    def _sanitize_parameters(self, src_lang=None, tgt_lang=None, **kwargs):
        preprocess, forward, postprocess = super()._sanitize_parameters(**kwargs)
        if src_lang is not None:
            preprocess["src_lang"] = src_lang
        if tgt_lang is not None:
            preprocess["tgt_lang"] = tgt_lang
        if src_lang is None and tgt_lang is None:
            parts = (forward.pop("task", None) or self.task).split("_")
            if len(parts) == 4:  # translation_xx_to_yy
                preprocess["src_lang"], preprocess["tgt_lang"] = parts[1], parts[3]
        return preprocess, forward, postprocess

    def preprocess(self, inputs: Any, truncation=None, src_lang=None, tgt_lang=None, **params: Any):
        build = getattr(self.tokenizer, "_build_translation_inputs", None)  # language-aware tokenizers only
        if build is None:
            return self._tokenize(inputs, truncation)
        return dict(build(inputs, return_tensors="pt", truncation=truncation or False, src_lang=src_lang,
                          tgt_lang=tgt_lang))
