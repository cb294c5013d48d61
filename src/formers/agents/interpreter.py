"""A restricted Python evaluator for code written by an agent's LLM.

The code is parsed with `ast` and walked node by node; nothing is handed to `exec`/`eval`. What the
code can reach is only: its own variables (`state`), the tools it is given, a short list of safe
builtins and the modules in `authorized_imports`. Every escape route we know of is closed before it
does anything: names and attributes starting with an underscore (`__globals__`, `__subclasses__`,
`random._os`, ...), frame/code attributes of generators and tracebacks, modules reached through an
authorised module (`statistics.sys`), `getattr`/`setattr` with such names, attribute lookups hidden in
`str.format` fields, and allocations or integers too large to build. Loops are bounded by an operation
count and a wall-clock limit. A refused action raises `InterpreterError` naming what was refused.
"""
from __future__ import annotations

import ast
import builtins
import importlib
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


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


def _refuse_name(name: str, what: str = "name") -> None:
    if name.startswith("_") and name != "_":
        raise InterpreterError(f"Forbidden access to {what} {name!r}: names starting with '_' are not allowed")


def _checked_attribute_name(name: str) -> str:
    _refuse_name(name, "attribute")
    if name in _FORBIDDEN_ATTRIBUTES:
        raise InterpreterError(f"Forbidden access to attribute {name!r}")
    return name


class Evaluator:
    """Walks one program's AST; one instance per `evaluate_python_code` call, shared by the functions it defines."""

    def __init__(self, state: dict, static_tools: dict, custom_tools: dict, authorized_imports: list[str],
                 limits: SandboxLimits) -> None:
        self.state = state
        self.static_tools = static_tools
        self.custom_tools = custom_tools
        self.authorized_imports = list(authorized_imports)
        self.limits = limits
        self.budget = _Budget(time.monotonic() + limits.max_seconds)  # shared with child scopes
        self.printed: list[str] = []
        self.builtins = safe_builtins(self)

    # --- bookkeeping ----------------------------------------------------------------------------------
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

    # --- dispatch -------------------------------------------------------------------------------------
    def run(self, node: ast.AST) -> Any:
        self.tick()
        method = getattr(self, f"eval_{type(node).__name__}", None)
        if method is None:
            raise InterpreterError(f"{type(node).__name__} is not supported")
        return method(node)

    def run_body(self, body: list[ast.stmt]) -> Any:
        result = None
        for statement in body:
            result = self.run(statement)
        return result

    # --- statements -----------------------------------------------------------------------------------
    def eval_Expr(self, node: ast.Expr) -> Any:
        return self.run(node.value)

    def eval_Pass(self, node: ast.Pass) -> None:
        return None

    def eval_Assign(self, node: ast.Assign) -> Any:
        value = self.run(node.value)
        for target in node.targets:
            self.assign(target, value)
        return value

    def eval_AnnAssign(self, node: ast.AnnAssign) -> Any:
        if node.value is None:
            return None
        value = self.run(node.value)
        self.assign(node.target, value)
        return value

    def eval_AugAssign(self, node: ast.AugAssign) -> Any:
        current = self.run(_as_load(node.target))
        value = self.binary(node.op, current, self.run(node.value))
        self.assign(node.target, value)
        return value

    def eval_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            if isinstance(target, ast.Name):
                _refuse_name(target.id)
                self.state.pop(target.id, None)
            elif isinstance(target, ast.Subscript):
                del self.run(target.value)[self.run(target.slice)]
            else:
                raise InterpreterError(f"Deleting {type(target).__name__} is not supported")

    def eval_If(self, node: ast.If) -> Any:
        return self.run_body(node.body if self.run(node.test) else node.orelse)

    def eval_For(self, node: ast.For) -> Any:
        result = None
        for item in self.run(node.iter):
            self.assign(node.target, item)
            try:
                result = self.run_body(node.body)
            except _Break:
                break
            except _Continue:
                continue
        else:
            result = self.run_body(node.orelse)
        return result

    def eval_While(self, node: ast.While) -> Any:
        while self.run(node.test):
            try:
                self.run_body(node.body)
            except _Break:
                break
            except _Continue:
                continue
        return None

    def eval_Break(self, node: ast.Break) -> None:
        raise _Break()

    def eval_Continue(self, node: ast.Continue) -> None:
        raise _Continue()

    def eval_Return(self, node: ast.Return) -> None:
        raise _Return(None if node.value is None else self.run(node.value))

    def eval_Assert(self, node: ast.Assert) -> None:
        if not self.run(node.test):
            message = self.run(node.msg) if node.msg else f"Assertion failed: {ast.unparse(node.test)}"
            raise AssertionError(message)

    def eval_Raise(self, node: ast.Raise) -> None:
        exception = self.run(node.exc) if node.exc else None
        if exception is None:
            raise InterpreterError("A bare 'raise' outside an except block is not supported")
        cause = self.run(node.cause) if node.cause else None
        raise exception from cause

    def eval_Try(self, node: ast.Try) -> Any:
        try:
            result = self.run_body(node.body)
        except (_Break, _Continue, _Return, InterpreterError):
            raise
        except Exception as error:  # the agent's own exceptions, matched against its handlers
            for handler in node.handlers:
                wanted = self.run(handler.type) if handler.type else Exception
                if isinstance(error, wanted):
                    if handler.name:
                        self.assign(ast.Name(id=handler.name, ctx=ast.Store()), error)
                    return self.run_body(handler.body)
            raise
        else:
            if node.orelse:
                result = self.run_body(node.orelse)
            return result
        finally:
            if node.finalbody:
                self.run_body(node.finalbody)

    def eval_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            module = self.import_module(alias.name)
            if alias.asname:
                self.assign_name(alias.asname, module)
            else:  # `import a.b` binds `a`, which must be allowed itself
                self.assign_name(alias.name.split(".")[0], self.import_module(alias.name.split(".")[0]))

    def eval_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = self.import_module(node.module or "")
        for alias in node.names:
            if alias.name == "*":
                raise InterpreterError("'from ... import *' is not allowed")
            value = getattr(module, _checked_attribute_name(alias.name))
            self.assign_name(alias.asname or alias.name, self.check_value(value))

    def import_module(self, name: str) -> types.ModuleType:
        if not self.module_allowed(name):
            raise InterpreterError(f"Import of {name} is not allowed. Authorized imports are: {self.authorized_imports}")
        return importlib.import_module(name)

    def eval_FunctionDef(self, node: ast.FunctionDef) -> Callable:
        function = make_function(self, node)
        self.assign_name(node.name, function)
        return function

    def eval_ClassDef(self, node: ast.ClassDef) -> type:
        bases = tuple(self.run(base) for base in node.bases)
        namespace_evaluator = self.child(dict(self.state))
        for statement in node.body:
            if isinstance(statement, ast.FunctionDef):  # methods may be dunders (__init__); their use is checked
                namespace_evaluator.state[statement.name] = make_function(namespace_evaluator, statement)
            else:
                namespace_evaluator.run(statement)
        namespace = {key: value for key, value in namespace_evaluator.state.items()
                     if key not in self.state or namespace_evaluator.state[key] is not self.state[key]}
        cls = type(node.name, bases, namespace)
        self.assign_name(node.name, cls)
        return cls

    def eval_Global(self, node: ast.Global) -> None:
        raise InterpreterError("'global' is not supported")

    eval_Nonlocal = eval_Global

    # --- assignment -----------------------------------------------------------------------------------
    def assign_name(self, name: str, value: Any) -> None:
        _refuse_name(name)
        if name in self.static_tools:
            raise InterpreterError(f"Cannot assign to name '{name}': doing this would erase the existing tool!")
        self.state[name] = value

    def assign(self, target: ast.AST, value: Any) -> None:
        if isinstance(target, ast.Name):
            self.assign_name(target.id, value)
        elif isinstance(target, (ast.Tuple, ast.List)):
            values = list(value)
            starred = [i for i, element in enumerate(target.elts) if isinstance(element, ast.Starred)]
            if not starred and len(values) != len(target.elts):
                raise InterpreterError(f"Cannot unpack {len(values)} values into {len(target.elts)} names")
            if starred:
                i = starred[0]
                tail = len(target.elts) - i - 1
                values = values[:i] + [values[i:len(values) - tail]] + values[len(values) - tail:]
            for element, item in zip(target.elts, values):
                self.assign(element.value if isinstance(element, ast.Starred) else element, item)
        elif isinstance(target, ast.Subscript):
            self.run(target.value)[self.run(target.slice)] = value
        elif isinstance(target, ast.Attribute):
            setattr(self.run(target.value), _checked_attribute_name(target.attr), value)
        else:
            raise InterpreterError(f"Cannot assign to {type(target).__name__}")

    # --- expressions ----------------------------------------------------------------------------------
    def eval_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def eval_Name(self, node: ast.Name) -> Any:
        name = node.id
        _refuse_name(name)
        for scope in (self.state, self.static_tools, self.custom_tools, self.builtins, ERRORS):
            if name in scope:
                return scope[name]
        raise InterpreterError(f"The variable `{name}` is not defined.")

    def eval_Attribute(self, node: ast.Attribute) -> Any:
        obj = self.run(node.value)
        return self.check_value(getattr(obj, _checked_attribute_name(node.attr)))

    def eval_Subscript(self, node: ast.Subscript) -> Any:
        return self.run(node.value)[self.run(node.slice)]

    def eval_Slice(self, node: ast.Slice) -> slice:
        return slice(*(self.run(part) if part is not None else None for part in (node.lower, node.upper, node.step)))

    def eval_Index(self, node) -> Any:  # Python < 3.9 ASTs
        return self.run(node.value)

    def eval_List(self, node: ast.List) -> list:
        return self.elements(node.elts)

    def eval_Tuple(self, node: ast.Tuple) -> tuple:
        return tuple(self.elements(node.elts))

    def eval_Set(self, node: ast.Set) -> set:
        return set(self.elements(node.elts))

    def eval_Dict(self, node: ast.Dict) -> dict:
        result = {}
        for key, value in zip(node.keys, node.values):
            if key is None:
                result.update(self.run(value))
            else:
                result[self.run(key)] = self.run(value)
        return result

    def elements(self, nodes: list[ast.expr]) -> list:
        items: list = []
        for element in nodes:
            if isinstance(element, ast.Starred):
                items.extend(self.run(element.value))
            else:
                items.append(self.run(element))
        return items

    def eval_JoinedStr(self, node: ast.JoinedStr) -> str:
        return "".join(str(self.run(value)) for value in node.values)

    def eval_FormattedValue(self, node: ast.FormattedValue) -> str:
        value = self.run(node.value)
        if node.conversion == ord("r"):
            value = repr(value)
        elif node.conversion == ord("s"):
            value = str(value)
        elif node.conversion == ord("a"):
            value = ascii(value)
        spec = self.run(node.format_spec) if node.format_spec else ""
        return format(value, spec)

    def eval_IfExp(self, node: ast.IfExp) -> Any:
        return self.run(node.body) if self.run(node.test) else self.run(node.orelse)

    def eval_NamedExpr(self, node: ast.NamedExpr) -> Any:
        value = self.run(node.value)
        self.assign(node.target, value)
        return value

    def eval_BoolOp(self, node: ast.BoolOp) -> Any:
        value = None
        for operand in node.values:
            value = self.run(operand)
            if isinstance(node.op, ast.And) and not value:
                return value
            if isinstance(node.op, ast.Or) and value:
                return value
        return value

    def eval_UnaryOp(self, node: ast.UnaryOp) -> Any:
        operand = self.run(node.operand)
        operations = {ast.USub: lambda x: -x, ast.UAdd: lambda x: +x, ast.Not: lambda x: not x,
                      ast.Invert: lambda x: ~x}
        return operations[type(node.op)](operand)

    def eval_BinOp(self, node: ast.BinOp) -> Any:
        return self.binary(node.op, self.run(node.left), self.run(node.right))

    def binary(self, op: ast.operator, left: Any, right: Any) -> Any:
        self.check_binary_size(op, left, right)
        return _BINARY[type(op)](left, right)

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

    def eval_Compare(self, node: ast.Compare) -> bool:
        left = self.run(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            right = self.run(comparator)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def eval_Lambda(self, node: ast.Lambda) -> Callable:
        return make_function(self, node)

    def eval_Call(self, node: ast.Call) -> Any:
        function = self.run(node.func)
        args = self.elements(node.args)
        kwargs: dict = {}
        for keyword in node.keywords:
            if keyword.arg is None:
                kwargs.update(self.run(keyword.value))
            else:
                kwargs[keyword.arg] = self.run(keyword.value)
        self.check_call(function, args, kwargs)
        return function(*args, **kwargs)

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

    # comprehensions run in a child scope so their loop variables do not leak (as in Python 3)
    def comprehension(self, generators: list[ast.comprehension], emit: Callable[["Evaluator"], None]) -> None:
        scope = self.child(dict(self.state))

        def loop(index: int) -> None:
            if index == len(generators):
                emit(scope)
                return
            generator = generators[index]
            for item in scope.run(generator.iter):
                scope.assign(generator.target, item)
                if all(scope.run(condition) for condition in generator.ifs):
                    loop(index + 1)

        loop(0)

    def eval_ListComp(self, node: ast.ListComp) -> list:
        result: list = []
        self.comprehension(node.generators, lambda scope: result.append(scope.run(node.elt)))
        return result

    eval_GeneratorExp = eval_ListComp  # evaluated eagerly: simpler, and bounded by the operation count

    def eval_SetComp(self, node: ast.SetComp) -> set:
        result: set = set()
        self.comprehension(node.generators, lambda scope: result.add(scope.run(node.elt)))
        return result

    def eval_DictComp(self, node: ast.DictComp) -> dict:
        result: dict = {}

        def emit(scope: "Evaluator") -> None:
            result[scope.run(node.key)] = scope.run(node.value)

        self.comprehension(node.generators, emit)
        return result

    def child(self, state: dict) -> "Evaluator":
        """An evaluator over another variable scope that shares this run's tools, limits and counters."""
        other = object.__new__(Evaluator)
        other.__dict__.update(self.__dict__)
        other.state = state
        return other


@dataclass
class _Budget:
    deadline: float
    operations: int = 0


def _as_load(target: ast.expr) -> ast.expr:
    copy = ast.fix_missing_locations(ast.parse(ast.unparse(target), mode="eval").body)
    return copy


_BINARY = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a ** b, ast.LShift: lambda a, b: a << b, ast.RShift: lambda a, b: a >> b,
    ast.BitOr: lambda a, b: a | b, ast.BitAnd: lambda a, b: a & b, ast.BitXor: lambda a, b: a ^ b,
    ast.MatMult: lambda a, b: a @ b,
}
_COMPARE = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b, ast.Is: lambda a, b: a is b,
    ast.IsNot: lambda a, b: a is not b,
}


def make_function(evaluator: Evaluator, node: ast.FunctionDef | ast.Lambda) -> Callable:
    """A Python callable whose body runs in the sandbox, in a scope that starts from the defining scope."""
    arguments = node.args
    positional = [a.arg for a in arguments.posonlyargs + arguments.args]
    defaults = [evaluator.run(d) for d in arguments.defaults]
    keyword_only = [a.arg for a in arguments.kwonlyargs]
    keyword_defaults = {a.arg: evaluator.run(d) for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults)
                        if d is not None}
    first_default = len(positional) - len(defaults)
    name = getattr(node, "name", "<lambda>")

    def function(*args, **kwargs):
        scope = evaluator.child(dict(evaluator.state))
        if len(args) > len(positional) and arguments.vararg is None:
            raise TypeError(f"{name}() takes {len(positional)} positional arguments but {len(args)} were given")
        for index, parameter in enumerate(positional):
            if index < len(args):
                scope.state[parameter] = args[index]
            elif parameter in kwargs:
                scope.state[parameter] = kwargs.pop(parameter)
            elif index >= first_default:
                scope.state[parameter] = defaults[index - first_default]
            else:
                raise TypeError(f"{name}() missing required argument: '{parameter}'")
        if arguments.vararg is not None:
            scope.state[arguments.vararg.arg] = tuple(args[len(positional):])
        for parameter in keyword_only:
            if parameter in kwargs:
                scope.state[parameter] = kwargs.pop(parameter)
            elif parameter in keyword_defaults:
                scope.state[parameter] = keyword_defaults[parameter]
            else:
                raise TypeError(f"{name}() missing required keyword argument: '{parameter}'")
        if arguments.kwarg is not None:
            scope.state[arguments.kwarg.arg] = kwargs
        elif kwargs:
            raise TypeError(f"{name}() got unexpected keyword arguments {sorted(kwargs)}")
        if isinstance(node, ast.Lambda):
            return scope.run(node.body)
        try:
            scope.run_body(node.body)
        except _Return as returned:
            return returned.value
        return None

    function.__name__ = name
    return function


def safe_builtins(evaluator: Evaluator) -> dict[str, Any]:
    """The builtins agent code may call; attribute helpers refuse the names attribute syntax refuses."""

    def safe_getattr(obj, name, *default):
        return evaluator.check_value(getattr(obj, _checked_attribute_name(name), *default))

    def safe_hasattr(obj, name):
        return not (name.startswith("_") or name in _FORBIDDEN_ATTRIBUTES) and hasattr(obj, name)

    def safe_setattr(obj, name, value):
        setattr(obj, _checked_attribute_name(name), value)

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


def evaluate_python_code(code: str, static_tools: dict[str, Callable] | None = None,
                         custom_tools: dict[str, Callable] | None = None, state: dict[str, Any] | None = None,
                         authorized_imports: list[str] = LIST_SAFE_MODULES,
                         limits: SandboxLimits | None = None) -> Any:
    """Run `code` in the sandbox and return the value of its last statement (transformers 4.45's signature).

    `state` holds the variables and is updated in place; what the code printed is stored in
    `state["print_outputs"]`. `static_tools` cannot be reassigned by the code, `custom_tools` can.
    """
    try:
        program = ast.parse(code)
    except SyntaxError as error:
        raise InterpreterError(f"The code generated by the agent is not valid.\n{error}") from None
    state = {} if state is None else state
    evaluator = Evaluator(state, dict(static_tools or {}), dict(custom_tools or {}), authorized_imports,
                          limits or SandboxLimits())
    result = None
    try:
        for statement in program.body:
            try:
                result = evaluator.run(statement)
            except (_Break, _Continue, _Return):
                raise InterpreterError(f"'{type(statement).__name__}' outside a loop or function") from None
            except RecursionError:
                raise InterpreterError(_failure(code, statement, evaluator, "maximum recursion depth exceeded")) from None
            except Exception as error:  # noqa: BLE001 - every failure becomes one clear error for the agent
                raise InterpreterError(_failure(code, statement, evaluator, f"{type(error).__name__}: {error}")) from None
    finally:
        state["print_outputs"] = evaluator.print_outputs()
    return result


def _failure(code: str, statement: ast.stmt, evaluator: Evaluator, reason: str) -> str:
    printed = evaluator.print_outputs()
    prefix = f"Print outputs:\n{printed}\n====\n" if printed else ""
    return (f"{prefix}EXECUTION FAILED:\nEvaluation stopped at line '{ast.get_source_segment(code, statement)}' "
            f"because of the following error:\n{reason}")
