"""The tools formers ships: the sandboxed Python interpreter and the final-answer tool."""
from __future__ import annotations

import math

from .interpreter import LIST_SAFE_MODULES, evaluate_python_code
from .tools import Tool

# Names the code agents' interpreter offers without an import (4.45's BASE_PYTHON_TOOLS; the sandbox adds
# its own safe builtins such as print, len, range and guarded getattr/setattr on top).
BASE_PYTHON_TOOLS = {
    "ceil": math.ceil, "floor": math.floor, "log": math.log, "exp": math.exp, "sin": math.sin, "cos": math.cos,
    "tan": math.tan, "asin": math.asin, "acos": math.acos, "atan": math.atan, "atan2": math.atan2,
    "degrees": math.degrees, "radians": math.radians, "pow": math.pow, "sqrt": math.sqrt,
}


class PythonInterpreterTool(Tool):
    """Evaluates a code snippet in the sandbox (used by ReactJsonAgent with add_base_tools=True)."""

    name = "python_interpreter"
    description = "This is a tool that evaluates python code. It can be used to perform calculations."
    output_type = "string"

    def __init__(self, *args, authorized_imports: list[str] | None = None, **kwargs) -> None:
        self.authorized_imports = sorted(set(LIST_SAFE_MODULES) | set(authorized_imports or []))
        self.inputs = {"code": {
            "type": "string",
            "description": ("The code snippet to evaluate. Every variable it uses must be defined in the same "
                            f"snippet. It may import only: {self.authorized_imports}."),
        }}
        super().__init__(*args, **kwargs)

    def forward(self, code: str) -> str:
        return str(evaluate_python_code(code, static_tools=BASE_PYTHON_TOOLS, authorized_imports=self.authorized_imports))


class FinalAnswerTool(Tool):
    """What an agent calls to end its run with an answer."""

    name = "final_answer"
    description = "Provides a final answer to the given problem."
    inputs = {"answer": {"type": "any", "description": "The final answer to the problem"}}
    output_type = "any"

    def forward(self, answer):
        return answer
