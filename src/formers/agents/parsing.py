"""Reading actions out of an LLM's text: JSON tool calls, fenced code blobs, 'Action:' text calls."""
from __future__ import annotations

import json
import re
from typing import Any

from ..errors import FormersError


class AgentError(FormersError, Exception):
    """Base of the errors an agent records in its logs and shows the LLM in its next step."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AgentParsingError(AgentError):
    """The LLM's output does not hold an action in the expected format."""


class AgentExecutionError(AgentError):
    """A tool call or code execution failed."""


class AgentMaxIterationsError(AgentError):
    """The agent used all its steps without a final answer."""


class AgentGenerationError(AgentError):
    """The LLM engine raised."""


_CODE_BLOB = re.compile(r"```(?:py|python)?\n(.*?)\n```", re.DOTALL)


def parse_json_blob(json_blob: str) -> dict[str, Any]:
    """The JSON object between the first '{' and the last '}' of `json_blob`."""
    start, end = json_blob.find("{"), json_blob.rfind("}")
    if start < 0 or end < start:
        raise ValueError(f"No JSON object found in: {json_blob!r}")
    blob = json_blob[start:end + 1].replace('\\"', "'")
    try:
        return json.loads(blob, strict=False)
    except json.JSONDecodeError as error:
        if blob[error.pos - 1:error.pos + 2] == "},\n":
            raise ValueError("JSON is invalid: you probably tried to provide multiple tool calls in one action. "
                             "PROVIDE ONLY ONE TOOL CALL.") from None
        raise ValueError(f"The JSON blob you used is invalid: {error}. JSON blob was: {blob}, decoding failed near "
                         f"'{blob[max(error.pos - 4, 0):error.pos + 5]}'.") from None


def parse_code_blob(code_blob: str) -> str:
    """The Python code inside the first ```py fence of `code_blob`."""
    match = _CODE_BLOB.search(code_blob)
    if match is None:
        raise ValueError("The code blob is invalid: put the code between a ```py line and a ``` line, e.g.\n"
                         "Thought: your thoughts\nCode:\n```py\n# your python code here\n```<end_action>")
    return match.group(1).strip()


def parse_json_tool_call(json_blob: str) -> tuple[str, Any]:
    """(tool name, arguments) from an {"action": ..., "action_input": ...} blob."""
    call = parse_json_blob(json_blob.replace("```json", "").replace("```", ""))
    if "action" not in call:
        raise ValueError(f"Missing key 'action' in the JSON blob {call}")
    return call["action"], call.get("action_input")


def parse_text_tool_call(text: str) -> tuple[str, Any]:
    """(tool name, arguments) from text in the 'Action: name / Action input: {...}' format."""
    text = text.split("Observation:")[0]
    if "Action:" in text:
        text = text.split("Action:")[1]
    if "Action input:" not in text:
        raise ValueError("Expected 'Action:' followed by 'Action input:' in the text tool call")
    name, arguments = text.split("Action input:", 1)
    parsed = parse_json_blob(arguments) if "{" in arguments else arguments.strip().replace('"', "")
    return name.strip().replace('"', "").replace("\\", ""), parsed
