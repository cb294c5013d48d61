"""TextGenerationPipeline: continue prompts or chats with a causal LM, returning transformers' structures.

- a string -> [{"generated_text": str}, ...] (one dict per returned sequence)
- a list of strings -> one such list per string
- a chat (list of {"role", "content"}) -> [{"generated_text": messages + [assistant reply]}]
  (or the reply text with return_full_text=False); a list of chats -> one list per chat
The new text is the decoded sequence minus the decoded prompt's characters, as transformers does, so
outputs match character for character.
"""
from __future__ import annotations

import enum
import warnings
from typing import Any

from ..errors import GenerationError
from .base import Chat, Pipeline


class ReturnType(enum.Enum):
    TENSORS = 0
    NEW_TEXT = 1
    FULL_TEXT = 2


class TextGenerationPipeline(Pipeline):
    task = "text-generation"

    def __call__(self, text_inputs: Any, **kwargs: Any):
        """Complete a prompt, a list of prompts, a chat, or a list of chats (see the module docstring)."""
        if isinstance(text_inputs, (list, tuple)) and text_inputs and isinstance(text_inputs[0], (list, tuple, dict)):
            if isinstance(text_inputs[0], dict):
                return super().__call__(Chat(list(text_inputs)), **kwargs)
            return super().__call__([Chat(list(chat)) for chat in text_inputs], **kwargs)
        if isinstance(text_inputs, tuple):
            text_inputs = list(text_inputs)
        return super().__call__(text_inputs, **kwargs)

    def _sanitize_parameters(self, return_full_text: bool | None = None, return_tensors: bool | None = None,
                             return_text: bool | None = None, return_type: ReturnType | None = None,
                             clean_up_tokenization_spaces: bool | None = None, prefix: str | None = None,
                             handle_long_generation: str | None = None, stop_sequence: str | None = None,
                             truncation: bool | None = None, max_length: int | None = None,
                             continue_final_message: bool | None = None, **generate_kwargs: Any):
        preprocess: dict[str, Any] = {}
        for key in ("add_special_tokens", "padding"):
            if key in generate_kwargs:
                preprocess[key] = generate_kwargs.pop(key)
        if truncation is not None:
            preprocess["truncation"] = truncation
        if max_length is not None:
            preprocess["max_length"] = generate_kwargs["max_length"] = max_length
        if prefix is not None:
            raise GenerationError("text-generation pipeline: `prefix` is not supported by formers; prepend it to "
                                  "the prompt")
        if handle_long_generation is not None:
            if handle_long_generation != "hole":
                raise GenerationError(f"{handle_long_generation} is not a valid value for `handle_long_generation` "
                                      f"parameter expected [None, 'hole']")
            preprocess["handle_long_generation"] = handle_long_generation
        if continue_final_message is not None:
            preprocess["continue_final_message"] = continue_final_message
        preprocess.update(generate_kwargs)

        postprocess: dict[str, Any] = {}
        if return_full_text is not None and return_type is None:
            if return_text is not None:
                raise GenerationError("`return_text` is mutually exclusive with `return_full_text`")
            if return_tensors is not None:
                raise GenerationError("`return_full_text` is mutually exclusive with `return_tensors`")
            return_type = ReturnType.FULL_TEXT if return_full_text else ReturnType.NEW_TEXT
        if return_tensors is not None and return_type is None:
            if return_text is not None:
                raise GenerationError("`return_text` is mutually exclusive with `return_tensors`")
            return_type = ReturnType.TENSORS
        if return_type is not None:
            postprocess["return_type"] = return_type
        if clean_up_tokenization_spaces is not None:
            postprocess["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        if continue_final_message is not None:
            postprocess["continue_final_message"] = continue_final_message
        if stop_sequence is not None:
            stop_ids = self.tokenizer.encode(stop_sequence, add_special_tokens=False)
            if len(stop_ids) > 1:
                warnings.warn("Stopping on a multiple token sequence is not yet supported; the first token of the "
                              "stop sequence is used", UserWarning)
            generate_kwargs["eos_token_id"] = stop_ids[0]
        return preprocess, generate_kwargs, postprocess

    def preprocess(self, prompt_text: str | Chat, add_special_tokens: bool | None = None,
                   truncation: bool | None = None, padding: bool | str | None = None, max_length: int | None = None,
                   continue_final_message: bool | None = None, handle_long_generation: str | None = None,
                   **generate_kwargs: Any) -> dict[str, Any]:
        options = {"add_special_tokens": add_special_tokens, "truncation": truncation, "padding": padding,
                   "max_length": max_length}
        options = {k: v for k, v in options.items() if v is not None}
        if isinstance(prompt_text, Chat):
            options.pop("add_special_tokens", None)  # the chat template places special tokens itself
            if continue_final_message is None:
                continue_final_message = prompt_text.messages[-1]["role"] == "assistant"
            inputs = dict(self.tokenizer.apply_chat_template(
                prompt_text.messages, add_generation_prompt=not continue_final_message,
                continue_final_message=continue_final_message, return_dict=True, return_tensors="pt", **options))
        elif isinstance(prompt_text, str):
            inputs = dict(self.tokenizer(prompt_text, return_tensors="pt", **options))
        else:
            raise GenerationError(f"text-generation pipeline: expected a string, a chat (list of message dicts) "
                                  f"or a list of those, got {type(prompt_text).__name__}")
        if handle_long_generation == "hole":
            self._make_room(inputs, generate_kwargs)
        inputs["prompt_text"] = prompt_text
        return inputs

    def _make_room(self, inputs: dict[str, Any], generate_kwargs: dict[str, Any]) -> None:
        """'hole': drop the prompt's left part so prompt + new tokens fit the tokenizer's max length."""
        length = inputs["input_ids"].shape[-1]
        new_tokens = generate_kwargs.get("max_new_tokens")
        if new_tokens is None:
            new_tokens = generate_kwargs.get("max_length", self.generation_config.max_length) - length
            if new_tokens < 0:
                raise GenerationError("We cannot infer how many new tokens are expected")
        if length + new_tokens > self.tokenizer.model_max_length:
            keep = self.tokenizer.model_max_length - new_tokens
            if keep <= 0:
                raise GenerationError("We cannot use `hole` to handle this generation the number of desired tokens "
                                      "exceeds the models max length")
            for key in ("input_ids", "attention_mask"):
                if key in inputs:
                    inputs[key] = inputs[key][:, -keep:]

    def _forward(self, model_inputs: dict[str, Any], **generate_kwargs: Any) -> dict[str, Any]:
        input_ids = model_inputs["input_ids"]
        attention_mask = model_inputs.get("attention_mask")
        if input_ids.shape[1] == 0:  # empty prompt: generate from BOS
            input_ids = attention_mask = None
            batch = 1
        else:
            batch = input_ids.shape[0]
        generate_kwargs.setdefault("generation_config", self.generation_config)
        sequences = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **generate_kwargs)
        sequences = sequences.reshape(batch, sequences.shape[0] // batch, *sequences.shape[1:])
        return {"generated_sequence": sequences, "input_ids": input_ids, "prompt_text": model_inputs["prompt_text"]}

    def postprocess(self, model_outputs: dict[str, Any], return_type: ReturnType = ReturnType.FULL_TEXT,
                    clean_up_tokenization_spaces: bool = True, continue_final_message: bool | None = None) -> list:
        input_ids, prompt = model_outputs["input_ids"], model_outputs["prompt_text"]
        records = []
        for sequence in model_outputs["generated_sequence"][0].tolist():
            if return_type is ReturnType.TENSORS:
                records.append({"generated_token_ids": sequence})
                continue
            decode = dict(skip_special_tokens=True, clean_up_tokenization_spaces=clean_up_tokenization_spaces)
            text = self.tokenizer.decode(sequence, **decode)
            prompt_length = 0 if input_ids is None else len(self.tokenizer.decode(input_ids[0], **decode))
            new_text = text[prompt_length:]
            records.append({"generated_text": self._full_text(prompt, new_text, continue_final_message)
                            if return_type is ReturnType.FULL_TEXT else new_text})
        return records

    @staticmethod
    def _full_text(prompt: str | Chat, new_text: str, continue_final_message: bool | None):
        if isinstance(prompt, str):
            return prompt + new_text
        messages = list(prompt.messages)
        if continue_final_message is None:
            continue_final_message = messages[-1]["role"] == "assistant"
        if continue_final_message:
            last = messages[-1]
            return messages[:-1] + [{"role": last["role"], "content": last["content"] + new_text}]
        return messages + [{"role": "assistant", "content": new_text}]
