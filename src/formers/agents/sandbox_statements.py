"""The statements of the agents' sandbox (assignments, control flow, functions, classes, imports): a mixin
of the evaluator in interpreter.py, which also evaluates the expressions these statements contain.
"""
from __future__ import annotations

import ast
import importlib
import types
from typing import Any, Callable

from .sandbox_policy import InterpreterError, checked_attribute_name, refuse_name


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


def _as_load(target: ast.expr) -> ast.expr:
    """The target of `x += 1` read as a value (the same expression with a Load context)."""
    return ast.parse(ast.unparse(target), mode="eval").body


class StatementsMixin:
    """eval_<Statement> methods; `self.run` / `self.run_body` evaluate nested nodes."""

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
                refuse_name(target.id)
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
            value = getattr(module, checked_attribute_name(alias.name))
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
        refuse_name(name)
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
            setattr(self.run(target.value), checked_attribute_name(target.attr), value)
        else:
            raise InterpreterError(f"Cannot assign to {type(target).__name__}")



def make_function(evaluator: Any, node: ast.FunctionDef | ast.Lambda) -> Callable:
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
