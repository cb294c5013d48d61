"""Every model family, registered in one place: model_type -> its package (imported on first use) and
the public names it exports at the top level (`formers.GemmaConfig`, ...).

Adding a family = one `Family` line below plus its package `models/<package>/` whose `__init__.py`
sets CONFIG_CLASS and MODEL_CLASSES (task -> class). See docs/adding_a_family.md.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from ..errors import UnknownModelTypeError


@dataclass(frozen=True)
class Family:
    package: str  # folder under formers/models/
    stem: str  # class-name stem: <stem>Config, <stem>Model, <stem>ForCausalLM
    extra_names: tuple[str, ...] = ()  # further public names (GPT-2's GPT2LMHeadModel, ...)
    causal_lm: bool = True  # exports <stem>ForCausalLM
    base_model: bool = True  # exports <stem>Model

    @property
    def public_names(self) -> tuple[str, ...]:
        names = (f"{self.stem}Config",) + ((f"{self.stem}Model",) if self.base_model else ()) + (
            (f"{self.stem}ForCausalLM",) if self.causal_lm else ())
        return names + self.extra_names


FAMILIES: dict[str, Family] = {
    "llama": Family("llama", "Llama"),
    "mistral": Family("mistral", "Mistral"),
    "qwen2": Family("qwen2", "Qwen2"),
    "gemma": Family("gemma", "Gemma"),
    "gemma2": Family("gemma2", "Gemma2"),
    "phi3": Family("phi3", "Phi3"),
    "phi": Family("phi", "Phi"),
    "nemotron": Family("nemotron", "Nemotron"),
    "granite": Family("granite", "Granite"),
    "granitemoe": Family("granitemoe", "GraniteMoe"),
    "cohere": Family("cohere", "Cohere"),
    "stablelm": Family("stablelm", "StableLm"),
    "starcoder2": Family("starcoder2", "Starcoder2"),
    "olmo": Family("olmo", "Olmo"),
    "olmoe": Family("olmoe", "Olmoe"),
    "gpt2": Family("gpt2", "GPT2", ("GPT2LMHeadModel",), causal_lm=False),
    "gpt_bigcode": Family("gpt_bigcode", "GPTBigCode"),
    "gpt_neox": Family("gpt_neox", "GPTNeoX"),
    "gptj": Family("gptj", "GPTJ"),
    "falcon": Family("falcon", "Falcon"),
    "bloom": Family("bloom", "Bloom"),
    "dbrx": Family("dbrx", "Dbrx"),
    "mamba2": Family("mamba2", "Mamba2"),
    "mamba": Family("mamba", "Mamba"),
    "falcon_mamba": Family("falcon_mamba", "FalconMamba"),
    "jamba": Family("jamba", "Jamba"),
    "mixtral": Family("mixtral", "Mixtral"),
    "qwen2_moe": Family("qwen2_moe", "Qwen2Moe"),
    "t5": Family("t5", "T5", ("T5ForConditionalGeneration", "T5EncoderModel"), causal_lm=False),
    "mt5": Family("mt5", "MT5", ("MT5ForConditionalGeneration", "MT5EncoderModel"), causal_lm=False),
    "bart": Family("bart", "Bart", ("BartForConditionalGeneration", "BartForCausalLM"), causal_lm=False),
    "mbart": Family("mbart", "MBart", ("MBartForConditionalGeneration", "MBartForCausalLM"), causal_lm=False),
    "m2m_100": Family("m2m_100", "M2M100", ("M2M100ForConditionalGeneration",), causal_lm=False),
    "marian": Family("marian", "Marian", ("MarianMTModel", "MarianForCausalLM"), causal_lm=False),
    "whisper": Family("whisper", "Whisper", ("WhisperForConditionalGeneration",), causal_lm=False),
    "qwen2_audio": Family("qwen2_audio", "Qwen2Audio", ("Qwen2AudioForConditionalGeneration", "Qwen2AudioProcessor"),
                          causal_lm=False, base_model=False),
    "qwen2_audio_encoder": Family("qwen2_audio.encoder_family", "Qwen2AudioEncoder", ("Qwen2AudioEncoder",),
                                  causal_lm=False, base_model=False),
}
ALIASES: dict[str, str] = {}


def public_names() -> dict[str, str]:
    """Top-level name -> module (relative to `formers`) for every registered family."""
    return {name: f"models.{fam.package}" for fam in FAMILIES.values() for name in fam.public_names}


def family(model_type: str) -> ModuleType:
    """The family package for `model_type`; it exposes CONFIG_CLASS and MODEL_CLASSES by task."""
    entry = FAMILIES.get(ALIASES.get(model_type, model_type))
    if entry is None:
        raise UnknownModelTypeError(
            f"model_type {model_type!r} is not supported by formers; supported: {sorted(FAMILIES)}"
        )
    return importlib.import_module(f"formers.models.{entry.package}")


def model_class(model_type: str, task: str) -> type:
    classes = family(model_type).MODEL_CLASSES
    if task not in classes:
        raise UnknownModelTypeError(f"model_type {model_type!r} has no {task!r} model in formers; "
                                    f"available: {sorted(classes)}")
    return classes[task]
