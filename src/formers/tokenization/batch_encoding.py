"""`BatchEncoding`: the dict a tokenizer call returns, with attribute access and tensor conversion.

It is a real `dict` (so `model(**batch)` and `isinstance(batch, dict)` work), keeps the backend
`tokenizers.Encoding` objects for token/word/char alignment, and converts its values to PyTorch or NumPy
arrays on request, as transformers' BatchEncoding does.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import TokenizerError

TENSOR_TYPES = ("pt", "np")


def to_py_obj(obj: Any) -> Any:
    """Turn tensors/arrays (and nested lists/dicts of them) into plain Python numbers and lists."""
    if isinstance(obj, dict):
        return {k: to_py_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_py_obj(o) for o in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # torch.Tensor, np.ndarray, np scalars
        if hasattr(obj, "detach"):
            obj = obj.detach().cpu()
        return obj.tolist()
    return obj


def _is_tensor(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return True
    torch = _torch_if_loaded()
    return torch is not None and isinstance(value, torch.Tensor)


def _torch_if_loaded():
    import sys

    return sys.modules.get("torch")


def _as_tensor(value: Any, tensor_type: str):
    if tensor_type == "pt":
        import torch

        if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
            return torch.from_numpy(np.array(value))
        return torch.tensor(value)
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple, np.ndarray)):
        if len({len(v) for v in value}) > 1:
            raise ValueError("ragged")
    return np.asarray(value)


def check_tensor_type(return_tensors: Any, argument: str = "return_tensors") -> str | None:
    """Validate `return_tensors`; formers supports "pt" and "np" (or None for Python lists)."""
    if return_tensors is None:
        return None
    value = getattr(return_tensors, "value", return_tensors)  # accept enum-like objects
    if value not in TENSOR_TYPES:
        raise TokenizerError(f"{argument}={return_tensors!r} is not supported; expected None, 'pt' or 'np'")
    return value


class BatchEncoding(dict):
    """Output of a tokenizer call: `input_ids`, `attention_mask`, ... as keys and attributes."""

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        encoding: Any = None,
        tensor_type: str | None = None,
        prepend_batch_axis: bool = False,
        n_sequences: int | None = None,
    ):
        super().__init__(data or {})
        if encoding is not None and not isinstance(encoding, (list, tuple)):
            encoding = [encoding]
        self._encodings = list(encoding) if encoding is not None else None
        if n_sequences is None and self._encodings:
            n_sequences = self._encodings[0].n_sequences
        self._n_sequences = n_sequences
        self.convert_to_tensors(tensor_type=tensor_type, prepend_batch_axis=prepend_batch_axis)

    # -- dict / attribute access -------------------------------------------------------------
    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, str):
            return super().__getitem__(item)
        if self._encodings is not None and isinstance(item, int):
            return self._encodings[item]
        if isinstance(item, slice):
            return {key: value[item] for key, value in self.items()}
        raise KeyError(
            f"BatchEncoding keys are strings (e.g. 'input_ids'), integers (backend Encoding of a batch item, "
            f"fast tokenizers only) or slices; got {item!r}"
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return dict.__getitem__(self, name)
        except KeyError:
            raise AttributeError(f"BatchEncoding has no key or attribute {name!r}") from None

    def __getstate__(self) -> dict:
        return {"data": dict(self), "encodings": self._encodings, "n_sequences": self._n_sequences}

    def __setstate__(self, state: dict) -> None:
        self.update(state.get("data", {}))
        self._encodings = state.get("encodings")
        self._n_sequences = state.get("n_sequences")

    def __reduce__(self):
        return (BatchEncoding, (), self.__getstate__())

    @property
    def data(self) -> dict[str, Any]:
        """The mapping itself (transformers' BatchEncoding exposes its dict as `.data`)."""
        return self

    @property
    def encodings(self) -> list | None:
        """Backend `tokenizers.Encoding` objects, one per batch item (None for `pad()` outputs)."""
        return self._encodings

    @property
    def n_sequences(self) -> int | None:
        return self._n_sequences

    @property
    def is_fast(self) -> bool:
        return self._encodings is not None

    # -- alignment helpers over the backend encodings ------------------------------------------
    def _encoding(self, batch_index: int, method: str):
        if self._encodings is None:
            raise TokenizerError(f"BatchEncoding.{method}() needs backend encodings; this batch has none")
        return self._encodings[batch_index]

    def tokens(self, batch_index: int = 0) -> list[str]:
        return self._encoding(batch_index, "tokens").tokens

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        return self._encoding(batch_index, "word_ids").word_ids

    def words(self, batch_index: int = 0) -> list[int | None]:
        return self.word_ids(batch_index)

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        return self._encoding(batch_index, "sequence_ids").sequence_ids

    def char_to_token(self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0):
        if char_index is None:
            batch_index, char_index = 0, batch_or_char_index
        else:
            batch_index = batch_or_char_index
        return self._encoding(batch_index, "char_to_token").char_to_token(char_index, sequence_index)

    def token_to_chars(self, batch_or_token_index: int, token_index: int | None = None):
        if token_index is None:
            batch_index, token_index = 0, batch_or_token_index
        else:
            batch_index = batch_or_token_index
        return self._encoding(batch_index, "token_to_chars").token_to_chars(token_index)

    # -- tensors -----------------------------------------------------------------------------
    def convert_to_tensors(self, tensor_type: str | None = None, prepend_batch_axis: bool = False) -> "BatchEncoding":
        """Convert every value to a `torch.Tensor` ("pt") or `np.ndarray` ("np") in place."""
        tensor_type = check_tensor_type(tensor_type)
        if tensor_type is None:
            return self
        for key, value in list(self.items()):
            if prepend_batch_axis:
                value = [value]
            if _is_tensor(value):
                continue
            try:
                self[key] = _as_tensor(value, tensor_type)
            except (ValueError, TypeError) as exc:
                raise TokenizerError(
                    f"cannot make a {tensor_type!r} tensor from {key!r}: the sequences have different lengths or "
                    "nesting; pass padding=True and/or truncation=True to get a rectangular batch"
                ) from exc
        return self

    def to(self, device: Any) -> "BatchEncoding":
        """Move every tensor value to `device` (PyTorch only); other values are left as they are."""
        for key, value in list(self.items()):
            if hasattr(value, "to") and hasattr(value, "device"):
                self[key] = value.to(device=device)
        return self
