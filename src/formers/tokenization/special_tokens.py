"""Special-token attributes (`bos_token`, `pad_token_id`, `all_special_ids`, ...) shared by tokenizers.

Each special token is stored as given (a `str` or a `tokenizers.AddedToken`); the public attribute is
its string form and the `*_id` attribute its id in the current vocabulary, as in transformers.
"""
from __future__ import annotations

from typing import Any

from tokenizers import AddedToken

from ..errors import TokenizerError

SPECIAL_TOKENS_ATTRIBUTES = [
    "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
    "additional_special_tokens",
]
_SINGLE = SPECIAL_TOKENS_ATTRIBUTES[:-1]


def _check_token(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, (str, AddedToken)):
        raise TokenizerError(f"{name} must be a str or tokenizers.AddedToken, got {type(value).__name__}")


def _token_property(name: str) -> property:
    def get(self) -> str | None:
        value = getattr(self, "_" + name)
        return None if value is None else str(value)

    def set(self, value) -> None:
        _check_token(name, value)
        setattr(self, "_" + name, value)

    return property(get, set, doc=f"The {name.replace('_', ' ')} as a string (None when unset).")


def _id_property(name: str) -> property:
    def get(self) -> int | None:
        if getattr(self, "_" + name) is None:
            return None
        return self.convert_tokens_to_ids(getattr(self, name))

    def set(self, value) -> None:
        setattr(self, "_" + name, None if value is None else self.convert_ids_to_tokens(value))

    return property(get, set, doc=f"Id of the {name.replace('_', ' ')} (None when unset).")


class SpecialTokensMixin:
    """Holds the special tokens; the host class provides `convert_tokens_to_ids` and `_add_tokens`."""

    SPECIAL_TOKENS_ATTRIBUTES = SPECIAL_TOKENS_ATTRIBUTES

    def _init_special_tokens(self, kwargs: dict[str, Any]) -> None:
        for name in _SINGLE:
            setattr(self, "_" + name, None)
        self._additional_special_tokens: list = []
        self._pad_token_type_id = 0
        for name in SPECIAL_TOKENS_ATTRIBUTES:
            value = kwargs.get(name)
            if value is None:
                continue
            if name == "additional_special_tokens":
                if not isinstance(value, (list, tuple)):
                    raise TokenizerError(f"additional_special_tokens must be a list of str/AddedToken, got {value!r}")
                for token in value:
                    _check_token("additional_special_tokens item", token)
                self._additional_special_tokens = list(value)
            else:
                _check_token(name, value)
                setattr(self, "_" + name, value)

    @property
    def additional_special_tokens(self) -> list[str]:
        return [str(t) for t in self._additional_special_tokens]

    @additional_special_tokens.setter
    def additional_special_tokens(self, value) -> None:
        self._additional_special_tokens = list(value) if value is not None else []

    @property
    def additional_special_tokens_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.additional_special_tokens)

    @additional_special_tokens_ids.setter
    def additional_special_tokens_ids(self, values) -> None:
        self._additional_special_tokens = [self.convert_ids_to_tokens(v) for v in values]

    @property
    def pad_token_type_id(self) -> int:
        return self._pad_token_type_id

    @property
    def special_tokens_map(self) -> dict[str, str | list[str]]:
        """Set special tokens by attribute name, as strings."""
        out = {}
        for name in SPECIAL_TOKENS_ATTRIBUTES:
            value = getattr(self, name)
            if value:
                out[name] = value
        return out

    @property
    def special_tokens_map_extended(self) -> dict[str, Any]:
        """Like `special_tokens_map` but keeps AddedToken objects."""
        out = {}
        for name in SPECIAL_TOKENS_ATTRIBUTES:
            value = getattr(self, "_" + name)
            if value:
                out[name] = value
        return out

    @property
    def all_special_tokens_extended(self) -> list[str | AddedToken]:
        seen: set[str] = set()
        tokens = []
        for value in self.special_tokens_map_extended.values():
            for token in value if isinstance(value, (list, tuple)) else [value]:
                if str(token) not in seen:
                    seen.add(str(token))
                    tokens.append(token)
        return tokens

    @property
    def all_special_tokens(self) -> list[str]:
        return [str(t) for t in self.all_special_tokens_extended]

    @property
    def all_special_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    def add_tokens(self, new_tokens: Any, special_tokens: bool = False) -> int:
        """Add tokens (str or AddedToken) to the vocabulary; returns how many were new."""
        if not new_tokens:
            return 0
        if not isinstance(new_tokens, (list, tuple)):
            new_tokens = [new_tokens]
        return self._add_tokens(list(new_tokens), special_tokens=special_tokens)

    def add_special_tokens(self, special_tokens_dict: dict[str, Any], replace_additional_special_tokens: bool = True) -> int:
        """Set special tokens by attribute name and add the new ones to the vocabulary."""
        if not special_tokens_dict:
            return 0
        to_add: list = []
        for key, value in special_tokens_dict.items():
            if key not in SPECIAL_TOKENS_ATTRIBUTES:
                raise TokenizerError(f"add_special_tokens: {key!r} is not one of {SPECIAL_TOKENS_ATTRIBUTES}")
            if key == "additional_special_tokens":
                if not isinstance(value, (list, tuple)):
                    raise TokenizerError("add_special_tokens: additional_special_tokens must be a list or tuple")
                new = []
                for token in value:
                    _check_token("additional_special_tokens item", token)
                    if isinstance(token, str):
                        token = AddedToken(token, rstrip=False, lstrip=False, normalized=False, special=True)
                    if not replace_additional_special_tokens and str(token) in self.additional_special_tokens:
                        continue
                    new.append(token)
                if replace_additional_special_tokens and new:
                    self._additional_special_tokens = list(new)
                else:
                    self._additional_special_tokens.extend(new)
                to_add += new
            else:
                _check_token(key, value)
                if isinstance(value, str):
                    value = AddedToken(value, rstrip=False, lstrip=False, normalized=False, special=True)
                setattr(self, "_" + key, value)
                if value not in to_add:
                    to_add.append(value)
        return self.add_tokens(to_add, special_tokens=True)


for _name in _SINGLE:
    setattr(SpecialTokensMixin, _name, _token_property(_name))
    setattr(SpecialTokensMixin, _name + "_id", _id_property(_name))
del _name
