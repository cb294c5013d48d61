"""The default model's training text: English that every CPython installation carries.

Two sources, both read from the running interpreter, nothing downloaded:
- `pydoc_data.topics`: the language reference sections `help("with")` prints;
- docstrings of the standard library: parsed from the `.py` sources with `ast` (no import, so no
  module runs code), plus the docstrings of built-in and C-extension modules, which need an import.
Documents are cleaned, deduplicated on a normalised form, and split into train / held-out by a hash
of their text, so the split is stable across runs and no document appears on both sides.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import re
import sys
import sysconfig
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

# Folders of the stdlib that are tests, demos or vendored tools rather than documentation.
_SKIP_DIRS = {"test", "tests", "idle_test", "turtledemo", "site-packages", "dist-packages", "__pycache__"}
# Compiled modules whose import has side effects or that exist only for CPython's own tests.
_SKIP_MODULES = re.compile(r"^(_test|_xx|xx|_ctypes_test|antigravity|this|ossaudiodev|nis|spwd|readline|_tkinter"
                           r"|_curses|_crypt|_msi|winreg|_winapi|msvcrt)")
MIN_CHARS = 60  # shorter docstrings ("Return self==value.") carry little English


@dataclass(frozen=True)
class Document:
    """One training document: `text` is what the model reads; `source` says where it came from."""

    text: str
    source: str
    question: str | None = None  # set for documents that can become a chat example (see chat_examples)


@dataclass
class CorpusSplit:
    train: list[Document]
    held_out: list[Document]


def pydoc_topics() -> Iterator[Document]:
    """The language-reference topics shipped in `pydoc_data` (titles like 'The "with" statement')."""
    from pydoc_data.topics import topics

    for key in sorted(topics):
        text = clean(topics[key])
        title = text.split("\n", 1)[0].strip()
        yield Document(text, f"pydoc_data:{key}", question=f"Explain {title.replace(chr(34), '')}.")


def source_docstrings(stdlib: Path | None = None) -> Iterator[Document]:
    """Module, class and function docstrings of the stdlib `.py` files, read with `ast` (no import)."""
    root = Path(stdlib or sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if any(part in _SKIP_DIRS or part.startswith("config-3") for part in relative.parts[:-1]):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid escape sequences in old sources
                tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        yield from _tree_docstrings(tree, module)


def _tree_docstrings(tree: ast.Module, module: str) -> Iterator[Document]:
    doc = ast.get_docstring(tree)
    if doc:
        yield Document(clean(doc), f"{module}", question=f"What is the {module} module for?")
    stack: list[tuple[str, ast.AST]] = [(module, node) for node in tree.body]
    while stack:
        prefix, node = stack.pop(0)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}.{node.name}"
            doc = ast.get_docstring(node)
            if doc:
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                yield Document(clean(doc), name, question=f"What does the {kind} {name} do?")
            if isinstance(node, ast.ClassDef):
                stack.extend((name, child) for child in node.body)


def compiled_docstrings() -> Iterator[Document]:
    """Docstrings of built-in and C-extension modules and their public members (`str.split`, `math.log`)."""
    names = set(sys.builtin_module_names)
    dynload = Path(sysconfig.get_paths()["platstdlib"]) / "lib-dynload"
    names.update(p.name.split(".", 1)[0] for p in dynload.glob("*.so"))
    for name in sorted(names):
        if _SKIP_MODULES.match(name) or name.startswith("_"):
            continue
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module that fails to import has nothing to give
            continue
        yield from _object_docstrings(module, name)


def _object_docstrings(module, name: str) -> Iterator[Document]:
    if module.__doc__:
        yield Document(clean(module.__doc__), name, question=f"What is the {name} module for?")
    for attr, value in sorted(vars(module).items()):
        if attr.startswith("_") or not (inspect.isroutine(value) or inspect.isclass(value)):
            continue
        qualified = f"{name}.{attr}"
        if value.__doc__:
            yield Document(clean(value.__doc__), qualified, question=f"What does {qualified} do?")
        if inspect.isclass(value) and value.__module__ == name:
            for method, member in sorted(vars(value).items()):
                if not method.startswith("_") and inspect.isroutine(member) and member.__doc__:
                    yield Document(clean(member.__doc__), f"{qualified}.{method}",
                                   question=f"What does {qualified}.{method} do?")


def clean(text: str) -> str:
    """Dedent, strip trailing spaces, collapse runs of blank lines; keep the line structure."""
    text = inspect.cleandoc(text).replace("\r\n", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _normalised(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def deduplicate(documents: Iterator[Document], min_chars: int = MIN_CHARS) -> list[Document]:
    """Keep the first document of each normalised text, and only documents of `min_chars` or more."""
    seen: set[str] = set()
    kept = []
    for doc in documents:
        if len(doc.text) < min_chars:
            continue
        key = hashlib.sha1(_normalised(doc.text).encode()).hexdigest()
        if key not in seen:
            seen.add(key)
            kept.append(doc)
    return kept


def split(documents: list[Document], held_out_percent: int = 4) -> CorpusSplit:
    """A stable split by text hash: the same document always lands on the same side."""
    result = CorpusSplit([], [])
    for doc in documents:
        bucket = int(hashlib.sha1(doc.text.encode()).hexdigest(), 16) % 100
        (result.held_out if bucket < held_out_percent else result.train).append(doc)
    return result


def gather(held_out_percent: int = 4) -> CorpusSplit:
    """Every source, deduplicated and split."""
    def every_source() -> Iterator[Document]:
        yield from pydoc_topics()
        yield from source_docstrings()
        yield from compiled_docstrings()

    return split(deduplicate(every_source()), held_out_percent)
