"""Pipeline: the preprocess -> forward -> postprocess frame of transformers' pipelines.

A task subclass states its three steps and how call arguments split between them
(`_sanitize_parameters`). The base owns what is common: device placement, a private copy of the
model's generation config, single vs list inputs, and batching (left-padded, since every formers
pipeline feeds a decoder-only `generate`).
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Iterator

import torch

from ..errors import ConfigError, GenerationError

logger = logging.getLogger("formers.pipelines")


class Chat:
    """A conversation (a list of {"role", "content"} dicts), so it is not mistaken for a batch of inputs."""

    def __init__(self, messages: list[dict[str, Any]]):
        for message in messages:
            if not isinstance(message, dict) or "role" not in message or "content" not in message:
                raise GenerationError(f"chat messages must be dicts with 'role' and 'content' keys, got {message!r}")
        self.messages = messages


def resolve_pipeline_device(device: int | str | torch.device | None, model_device: torch.device) -> torch.device:
    """transformers' convention: None or -1 keeps the model's device, an int is a CUDA index."""
    if device is None or (isinstance(device, int) and device < 0):
        return model_device
    if isinstance(device, int):
        return torch.device("cuda", device)
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"pipeline(device={device!r}): expected None, an int, 'cpu', 'cuda[:i]' or a "
                          f"torch.device") from None


class Pipeline:
    """Base of task pipelines: `pipe(inputs, **kwargs)` runs preprocess -> _forward -> postprocess."""

    task: str = ""

    def __init__(self, model, tokenizer=None, device: int | str | torch.device | None = None, task: str = "",
                 batch_size: int | None = None, **kwargs: Any):
        self.model, self.tokenizer, self.task = model, tokenizer, task or self.task
        self.framework = "pt"
        self.device = resolve_pipeline_device(device, model.device)
        if model.device != self.device:
            model.to(self.device)
        self.generation_config = None
        if model.can_generate():  # a private copy: per-pipeline tweaks never leak into the model
            self.generation_config = copy.deepcopy(model.generation_config)
            if tokenizer is not None and tokenizer.pad_token_id is not None \
                    and self.generation_config.pad_token_id is None:
                self.generation_config.pad_token_id = tokenizer.pad_token_id
        self._batch_size = batch_size
        self.call_count = 0
        self._preprocess_params, self._forward_params, self._postprocess_params = self._sanitize_parameters(**kwargs)

    @property
    def torch_dtype(self) -> torch.dtype:
        return self.model.dtype

    # --- what a task defines -----------------------------------------------------------------------
    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict, dict, dict]:
        raise NotImplementedError

    def preprocess(self, inputs: Any, **params: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _forward(self, model_inputs: dict[str, Any], **params: Any) -> dict[str, Any]:
        raise NotImplementedError

    def postprocess(self, model_outputs: dict[str, Any], **params: Any) -> Any:
        raise NotImplementedError

    # --- running -----------------------------------------------------------------------------------
    def forward(self, model_inputs: dict[str, Any], **params: Any) -> dict[str, Any]:
        model_inputs = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in model_inputs.items()}
        with torch.inference_mode():
            outputs = self._forward(model_inputs, **params)
        return {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in outputs.items()}

    def __call__(self, inputs: Any, *args: Any, num_workers: int | None = None, batch_size: int | None = None,
                 **kwargs: Any):
        if args:
            logger.warning("Ignoring args : %s", args)
        batch_size = batch_size or self._batch_size or 1
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"pipeline: batch_size must be a positive int, got {batch_size!r}")
        pre, fwd, post = self._sanitize_parameters(**kwargs)
        pre = {**self._preprocess_params, **pre}
        fwd = {**self._forward_params, **fwd}
        post = {**self._postprocess_params, **post}
        self.call_count += 1
        if isinstance(inputs, list):
            return list(self._run_many(inputs, batch_size, pre, fwd, post))
        return self.postprocess(self.forward(self.preprocess(inputs, **pre), **fwd), **post)

    def _run_many(self, inputs: list, batch_size: int, pre: dict, fwd: dict, post: dict) -> Iterator[Any]:
        for start in range(0, len(inputs), batch_size):
            items = [self.preprocess(item, **pre) for item in inputs[start:start + batch_size]]
            if len(items) == 1:
                yield self.postprocess(self.forward(items[0], **fwd), **post)
                continue
            outputs = self.forward(self._pad_batch(items), **fwd)
            for index in range(len(items)):
                yield self.postprocess(_row(outputs, index), **post)

    def _pad_batch(self, items: list[dict[str, Any]], side: str = "left") -> dict[str, Any]:
        """Pad each item's [1, T_i] tensors on `side` to one [B, T] batch; other values become lists."""
        if self.tokenizer is None or self.tokenizer.pad_token_id is None:
            raise ConfigError("Pipeline with tokenizer without pad_token cannot do batching. You can try to set it "
                              "with `pipe.tokenizer.pad_token_id = model.config.eos_token_id`.")
        batch: dict[str, Any] = {}
        for key, first in items[0].items():
            if not isinstance(first, torch.Tensor):
                batch[key] = [item[key] for item in items]
                continue
            value = self.tokenizer.pad_token_id if key == "input_ids" else 0
            length = max(item[key].shape[-1] for item in items)
            padded = torch.full((len(items), length), value, dtype=first.dtype)
            for row, item in enumerate(items):
                tensor = item[key][0]
                start = length - tensor.shape[-1] if side == "left" else 0
                padded[row, start:start + tensor.shape[-1]] = tensor
            batch[key] = padded
        return batch


def _row(outputs: dict[str, Any], index: int) -> dict[str, Any]:
    """The outputs of one batch item, shaped as for a batch of one."""
    row = {}
    for key, value in outputs.items():
        if isinstance(value, torch.Tensor):
            row[key] = value[index:index + 1]
        elif isinstance(value, list):
            row[key] = value[index]
        else:
            row[key] = value
    return row
