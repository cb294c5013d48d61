"""get_json_schema against transformers.utils.get_json_schema (4.45.2): same dicts, same key order."""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple, Union

import pytest

from formers.errors import FormersError
from formers.tokenization.json_schema import DocstringParsingException, TypeHintParsingException, get_json_schema


def get_current_temperature(location: str, unit: str):
    """
    Get the current temperature at a location.

    Args:
        location: The location to get the temperature for, in the format "City, Country"
        unit: The unit to return the temperature in. (choices: ["celsius", "fahrenheit"])
    """
    return 22.0


def multiply(x: float, y: int = 2) -> float:
    """Multiply two numbers.

    This line is part of the description too.

    Args:
        x: The first number,
            spread over two lines.
        y: The second number

    Returns:
        The product of the
        two numbers.
    """
    return x * y


def search(query: str, limit: Optional[int] = None, tags: List[str] = (), flags: Union[int, str] = 0,
           weights: Dict[str, float] = None, point: Tuple[int, float] = (0, 0.0), verbose: bool = False,
           extra: Any = None, ids: Optional[list[int]] = None, mode: Union[str, int, None] = "a") -> Dict[str, Any]:
    """Search the index.

    Args:
        query: The text to look for
        limit: At most this many results
        tags: Tags to filter on
        flags: Either a bit mask or a name
        weights: Per-field weights
        point: A 2D point
        verbose: Whether to print progress
        extra: Anything at all
        ids: Document ids
        mode: The search mode (choices: ["fast", "exact"])

    Raises:
        ValueError: when the query is empty
    """


def no_arguments() -> str:
    """Return a greeting."""
    return "hi"


def missing_description(a: int, b: int):
    """Add numbers.

    Args:
        a: The first number
    """


def missing_hint(a, b: int):
    """Add numbers.

    Args:
        a: The first number
        b: The second number
    """


def no_docstring(a: int):
    pass


@pytest.mark.parametrize("func", [get_current_temperature, multiply, search, no_arguments])
def test_schema_matches_transformers(func, oracle_schema):
    expected = oracle_schema(func)
    got = get_json_schema(func)
    assert got == expected
    assert json.dumps(got) == json.dumps(expected)  # key order matters once a template renders it


def test_known_structure():
    schema = get_json_schema(get_current_temperature)
    assert schema["function"]["parameters"]["properties"]["unit"]["enum"] == ["celsius", "fahrenheit"]
    assert schema["function"]["parameters"]["required"] == ["location", "unit"]
    assert get_json_schema(multiply)["function"]["parameters"]["required"] == ["x"]


@pytest.mark.parametrize("func, error, message", [
    (missing_description, DocstringParsingException, "no description for the argument 'b'"),
    (no_docstring, DocstringParsingException, "no docstring"),
    (missing_hint, TypeHintParsingException, "Argument a is missing a type hint"),
])
def test_errors_match_transformers(func, error, message, oracle_schema):
    with pytest.raises(Exception, match=message):
        oracle_schema(func)
    with pytest.raises(error, match=message) as info:
        get_json_schema(func)
    assert isinstance(info.value, FormersError) and isinstance(info.value, ValueError)
