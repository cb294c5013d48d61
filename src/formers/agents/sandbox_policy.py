"""What the agents' sandbox allows: limits, forbidden names and attributes, module rules, size and
blocking checks, and the builtins agent code may call. The evaluator (interpreter.py) walks the code;
the values and calls it produces pass through the checks here first.
"""
from __future__ import annotations

import ast
import builtins
import math
import queue
import re
import time
import types
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import FormersError

LIST_SAFE_MODULES = ["random", "collections", "math", "time", "queue", "itertools", "re", "stat", "statistics",
                     "unicodedata"]
MAX_LEN_OUTPUT = 50_000


class InterpreterError(FormersError, ValueError):
    """The sandbox refused or could not evaluate the agent's code (the message says which line and why)."""


@dataclass
class SandboxLimits:
    max_operations: int = 10_000_000  # AST nodes evaluated per run
    max_seconds: float = 30.0
    max_elements: int = 10_000_000  # items in one sequence / characters in one string built at once
    max_int_bits: int = 1_000_000


# Attributes that lead from harmless objects to frames, code or globals without an underscore.
_FORBIDDEN_ATTRIBUTES = {"gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "ag_frame", "ag_code",
                         "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "tb_frame", "tb_next",
                         "func_globals", "mro"}
_FORMAT_FIELD_LOOKUP = re.compile(r"\{[^{}]*[.\[]\s*_")  # "{0.__class__}" / "{0[__x]}" in str.format
_SIZED_CONSTRUCTORS = (list, tuple, set, frozenset, dict, sorted)
_PADDING_METHODS = {"ljust", "rjust", "center", "zfill", "expandtabs"}
ERRORS = {name: value for name, value in vars(builtins).items()
          if isinstance(value, type) and issubclass(value, BaseException)}


def refuse_name(name: str, what: str = "name") -> None:
    if name.startswith("_") and name != "_":
        raise InterpreterError(f"Forbidden access to {what} {name!r}: names starting with '_' are not allowed")


def checked_attribute_name(name: str) -> str:
    refuse_name(name, "attribute")
    if name in _FORBIDDEN_ATTRIBUTES:
        raise InterpreterError(f"Forbidden access to attribute {name!r}")
    return name


@dataclass
class _Budget:
    deadline: float
    operations: int = 0


class SandboxGuard:
    """The checks and bookkeeping of one run; the evaluator inherits them (child scopes share the budget)."""

    def __init__(self, authorized_imports: list[str], limits: SandboxLimits) -> None:
        self.authorized_imports = list(authorized_imports)
        self.limits = limits
        self.budget = _Budget(time.monotonic() + limits.max_seconds)
        self.printed: list[str] = []
        self.builtins = safe_builtins(self)

    def tick(self) -> None:
        budget = self.budget
        budget.operations += 1
        if budget.operations > self.limits.max_operations:
            raise InterpreterError(f"Reached the max number of operations ({self.limits.max_operations}): "
                                   f"the code probably loops forever")
        if budget.operations % 1000 == 0 and time.monotonic() > budget.deadline:
            raise InterpreterError(f"Time limit of {self.limits.max_seconds} s exceeded")

    def print(self, *args, sep: str = " ", end: str = "\n") -> None:
        self.printed.append(sep.join(map(str, args)) + end)

    def print_outputs(self) -> str:
        text = "".join(self.printed)
        if len(text) > MAX_LEN_OUTPUT:
            text = text[:MAX_LEN_OUTPUT] + f"\n_Print outputs were over {MAX_LEN_OUTPUT} characters, so they have been truncated._"
        return text

    def module_allowed(self, name: str) -> bool:
        parts = name.split(".")
        return any(".".join(parts[:i]) in self.authorized_imports for i in range(1, len(parts) + 1))

    def check_value(self, value: Any) -> Any:
        """Refuse values that open a way out: a module reached through an allowed one (statistics.sys) that is
        not itself allowed, and `str.format` callables whose fields could look attributes up."""
        if isinstance(value, types.ModuleType) and not self.module_allowed(value.__name__):
            raise InterpreterError(f"Forbidden access to module {value.__name__!r}: it is not an authorized import")
        if value is str.format or value is str.format_map:
            raise InterpreterError("Forbidden access to str.format through the str type; call .format on a string")
        if getattr(value, "__name__", None) in ("format", "format_map"):
            template = getattr(value, "__self__", None)
            if isinstance(template, str) and _FORMAT_FIELD_LOOKUP.search(template):
                raise InterpreterError("Forbidden access in a format string: fields may not look up '_' attributes")
        return value

    def check_size(self, count: int, what: str) -> None:
        if count > self.limits.max_elements:
            raise InterpreterError(f"{what} would hold {count} elements, over the limit of {self.limits.max_elements}")

    def check_binary_size(self, op: ast.operator, left: Any, right: Any) -> None:
        if isinstance(op, ast.Mult):
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, (str, bytes, list, tuple)) and isinstance(count, int):
                    self.check_size(len(sequence) * max(count, 0), "A repeated sequence")
        elif isinstance(op, ast.Pow) and isinstance(left, int) and isinstance(right, int) and right > 0:
            bits = right * max(abs(left), 1).bit_length()
            if bits > self.limits.max_int_bits:
                raise InterpreterError(f"{left} ** {right} would need about {bits} bits, over the limit of "
                                       f"{self.limits.max_int_bits}")
        elif isinstance(op, ast.LShift) and isinstance(right, int) and right > self.limits.max_int_bits:
            raise InterpreterError(f"A shift by {right} bits is over the limit of {self.limits.max_int_bits}")

    def check_call(self, function: Callable, args: list, kwargs: dict) -> None:
        """Refuse calls that would allocate past the limits or block past the time limit."""
        owner = getattr(function, "__self__", None)
        name = getattr(function, "__name__", "")
        if any(function is constructor for constructor in _SIZED_CONSTRUCTORS) and args and hasattr(args[0], "__len__"):
            self.check_size(len(args[0]), f"{name}()")
        elif isinstance(owner, (str, bytes)) and name in _PADDING_METHODS and args and isinstance(args[0], int):
            self.check_size(args[0], f"str.{name}()")
        elif isinstance(owner, (str, bytes)) and name == "join" and args and hasattr(args[0], "__len__"):
            self.check_size(len(args[0]), "str.join()")
        elif function is time.sleep and args and args[0] > self.budget.deadline - time.monotonic():
            raise InterpreterError(f"time.sleep({args[0]}) would pass the time limit of {self.limits.max_seconds} s")
        elif isinstance(owner, (queue.Queue, queue.SimpleQueue)) and name == "get" and owner.empty():
            raise InterpreterError("Queue.get() on an empty queue would block forever (one thread only here)")
        elif isinstance(owner, queue.Queue) and name == "put" and owner.full():
            raise InterpreterError("Queue.put() on a full queue would block forever (one thread only here)")
        elif isinstance(owner, queue.Queue) and name == "join" and owner.unfinished_tasks:
            raise InterpreterError("Queue.join() would block forever: tasks are unfinished")


def safe_builtins(evaluator: "SandboxGuard") -> dict[str, Any]:
    """The builtins agent code may call; attribute helpers refuse the names attribute syntax refuses."""

    def safe_getattr(obj, name, *default):
        return evaluator.check_value(getattr(obj, checked_attribute_name(name), *default))

    def safe_hasattr(obj, name):
        return not (name.startswith("_") or name in _FORBIDDEN_ATTRIBUTES) and hasattr(obj, name)

    def safe_setattr(obj, name, value):
        setattr(obj, checked_attribute_name(name), value)

    def safe_type(*args):  # one argument only: type(name, bases, dict) would build classes outside the sandbox
        if len(args) != 1:
            raise InterpreterError("type() with 3 arguments (building a class) is not allowed; use a class statement")
        return type(args[0])

    names = ["isinstance", "range", "float", "int", "bool", "str", "round", "len", "sum", "max", "min", "abs",
             "enumerate", "zip", "reversed", "all", "any", "map", "filter", "ord", "chr", "next", "iter", "divmod",
             "callable", "issubclass", "repr", "hash", "format", "slice", "complex", "bin", "hex", "oct"]
    table: dict[str, Any] = {name: getattr(builtins, name) for name in names}
    table.update({constructor.__name__: constructor for constructor in _SIZED_CONSTRUCTORS})
    table.update({
        "print": evaluator.print, "getattr": safe_getattr, "hasattr": safe_hasattr, "setattr": safe_setattr,
        "type": safe_type, "ceil": math.ceil, "floor": math.floor, "log": math.log, "exp": math.exp,
        "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos,
        "atan": math.atan, "atan2": math.atan2, "degrees": math.degrees, "radians": math.radians,
        "pow": math.pow, "sqrt": math.sqrt,
    })
    return table
