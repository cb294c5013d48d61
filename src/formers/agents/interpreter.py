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
from typing import Any, Callable

from .sandbox_policy import (ERRORS, LIST_SAFE_MODULES, InterpreterError, SandboxGuard, SandboxLimits,
                             checked_attribute_name, refuse_name)
from .sandbox_statements import StatementsMixin, _Break, _Continue, _Return, make_function

__all__ = ["InterpreterError", "LIST_SAFE_MODULES", "SandboxLimits", "evaluate_python_code"]


class Evaluator(StatementsMixin, SandboxGuard):
    """Walks one program's AST; one instance per `evaluate_python_code` call, shared by the functions it defines."""

    def __init__(self, state: dict, static_tools: dict, custom_tools: dict, authorized_imports: list[str],
                 limits: SandboxLimits) -> None:
        super().__init__(authorized_imports, limits)
        self.state = state
        self.static_tools = static_tools
        self.custom_tools = custom_tools

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

    # --- expressions ----------------------------------------------------------------------------------
    def eval_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def eval_Name(self, node: ast.Name) -> Any:
        name = node.id
        refuse_name(name)
        for scope in (self.state, self.static_tools, self.custom_tools, self.builtins, ERRORS):
            if name in scope:
                return scope[name]
        raise InterpreterError(f"The variable `{name}` is not defined.")

    def eval_Attribute(self, node: ast.Attribute) -> Any:
        obj = self.run(node.value)
        return self.check_value(getattr(obj, checked_attribute_name(node.attr)))

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
