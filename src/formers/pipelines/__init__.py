"""`pipeline(task, model=...)`: build a task pipeline from a model id, a folder or a model object.

With no model, "text-generation" uses formers' bundled default model ("formers/default"), trained
by formers on CPython's own documentation, so it works offline on a fresh install (transformers
would download a hub default instead).
"""
from __future__ import annotations

import logging
from typing import Any

import torch

from ..default_model import DEFAULT_MODEL_NAME
from ..errors import ConfigError, UnknownTaskError
from .automatic_speech_recognition import AutomaticSpeechRecognitionPipeline
from .base import Chat, Pipeline
from .text2text_generation import SummarizationPipeline, Text2TextGenerationPipeline, TranslationPipeline
from .text_generation import ReturnType, TextGenerationPipeline

logger = logging.getLogger("formers.pipelines")

SUPPORTED_TASKS: dict[str, dict[str, Any]] = {
    "text-generation": {"impl": TextGenerationPipeline, "default": DEFAULT_MODEL_NAME},
    "text2text-generation": {"impl": Text2TextGenerationPipeline, "default": None, "seq2seq": True},
    "summarization": {"impl": SummarizationPipeline, "default": None, "seq2seq": True},
    "translation": {"impl": TranslationPipeline, "default": None, "seq2seq": True},
    "automatic-speech-recognition": {"impl": AutomaticSpeechRecognitionPipeline, "default": None, "speech": True},
}
TASK_ALIASES: dict[str, str] = {}


def get_supported_tasks() -> list[str]:
    return sorted(list(SUPPORTED_TASKS) + list(TASK_ALIASES))


def check_task(task: str) -> tuple[str, dict[str, Any]]:
    """Normalise `task` and return its entry; unknown names raise an error listing the supported ones."""
    task = TASK_ALIASES.get(task, task)
    parts = task.split("_")
    if len(parts) == 4 and parts[0] == "translation" and parts[2] == "to":  # translation_xx_to_yy
        return task, SUPPORTED_TASKS["translation"]
    if task not in SUPPORTED_TASKS:
        raise UnknownTaskError(f"Unknown task {task!r}; formers supports: {', '.join(get_supported_tasks())}")
    return task, SUPPORTED_TASKS[task]


def pipeline(task: str | None = None, model=None, config=None, tokenizer=None, framework: str | None = None,
             revision: str | None = None, use_fast: bool = True, token: str | bool | None = None,
             device: int | str | torch.device | None = None, device_map=None,
             torch_dtype: str | torch.dtype | None = None, trust_remote_code: bool | None = None,
             model_kwargs: dict[str, Any] | None = None, pipeline_class: type[Pipeline] | None = None,
             **kwargs: Any) -> Pipeline:
    """The pipeline for `task`, loading `model` (and its tokenizer) when given by name or path."""
    from ..models.auto import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSpeechSeq2Seq
    from ..models.auto.tokenization_auto import AutoTokenizer

    if task is None:
        if model is None:
            raise ConfigError("pipeline: give a `task` (e.g. 'text-generation') or a `model`")
        task = "text-generation"  # the one task formers' models serve
    task, entry = check_task(task)
    if framework not in (None, "pt"):
        raise ConfigError(f"pipeline(framework={framework!r}): formers is PyTorch only; use 'pt' or None")
    if trust_remote_code:
        raise ConfigError("pipeline(trust_remote_code=True): formers never runs code shipped with a checkpoint")
    if device is not None and device_map is not None:
        logger.warning("Both `device` and `device_map` are specified. `device` will override `device_map`.")
    if model is None:
        if entry["default"] is None:
            raise ConfigError(f"pipeline({task!r}): formers bundles no default model for this task; pass model=...")
        model = entry["default"]
        logger.info("No model was supplied, defaulted to %s (bundled with formers)", model)
    if config is not None and not isinstance(config, str):
        raise ConfigError("pipeline(config=...): pass a model id or path in `model`; config objects are not used")
    load_kwargs = dict(model_kwargs or {})
    hub = {k: v for k, v in (("revision", revision), ("token", token)) if v is not None}
    if isinstance(model, str):
        if torch_dtype is not None:
            load_kwargs["torch_dtype"] = torch_dtype
        if device_map is not None and device is None:
            load_kwargs["device_map"] = device_map
        model_name = model
        auto = AutoModelForSeq2SeqLM if entry.get("seq2seq") else AutoModelForCausalLM
        auto = AutoModelForSpeechSeq2Seq if entry.get("speech") else auto
        model = auto.from_pretrained(model, **hub, **load_kwargs)
    else:
        model_name = model.config._name_or_path or None
        if torch_dtype is not None:
            logger.warning("pipeline: torch_dtype is ignored for a model object; convert it with model.to(dtype)")
    if tokenizer is None and model_name:
        tokenizer = model_name
    if isinstance(tokenizer, str):
        tokenizer = AutoTokenizer.from_pretrained(tokenizer, use_fast=use_fast, **hub)
    if tokenizer is None:
        raise ConfigError("pipeline: no tokenizer given and the model has no name or path to load one from; "
                          "pass tokenizer=...")
    if task == "translation":  # as 4.45: the first translation_xx_to_yy the model's config knows
        task = next((key for key in (vars(model.config).get("task_specific_params") or {})
                     if key.startswith("translation")), task)
    target = pipeline_class or entry["impl"]
    return target(model=model, tokenizer=tokenizer, device=device, task=task, **kwargs)


__all__ = ["pipeline", "Pipeline", "TextGenerationPipeline", "Text2TextGenerationPipeline", "SummarizationPipeline",
           "TranslationPipeline", "Chat", "ReturnType", "SUPPORTED_TASKS",
           "get_supported_tasks", "check_task", "AutomaticSpeechRecognitionPipeline"]
