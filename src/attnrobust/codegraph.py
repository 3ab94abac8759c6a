"""The project's own import graph, read from the source with ``ast`` (nothing is imported).

Every ``import attnrobust...`` and ``from attnrobust... import ...`` counts, at module level or
inside a function, and importing ``attnrobust.a.b`` also runs ``attnrobust/__init__.py`` and
``attnrobust/a/__init__.py``. The ``code`` stage writes each stage script's closure with a hash
per file (``code/<script>.json``), which is what every other stage lists as its code dependency;
``tests/test_imports.py`` checks that and that no module imports a room above it.

Every function takes ``src``, the folder holding ``attnrobust/`` (default: this package's own),
so the stage hashes the checkout it runs in, whichever copy of the package Python imported.
"""
from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]
PACKAGE = "attnrobust"


def module_file(module: str, src: Path = SRC) -> Path | None:
    """The file that defines ``module`` (a package's ``__init__.py``), or None if it is not ours."""
    base = Path(src).joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.resolve().relative_to(Path(src).resolve()).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _with_parents(module: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a module runs its packages' ``__init__``."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@cache
def direct_imports(path: Path, src: Path = SRC) -> frozenset[str]:
    """Project modules that the file at ``path`` imports anywhere in its body."""
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from attnrobust.a import b`: b is a submodule or a name in attnrobust.a
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] != PACKAGE:
                continue
            for module in _with_parents(name):
                if module_file(module, src) is not None:
                    found.add(module)
    inside = path.resolve().is_relative_to(Path(src).resolve())
    found.discard(module_name(path, src) if inside else "")
    return frozenset(found)


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:``, which never run."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def closure(path: Path, src: Path = SRC) -> set[Path]:
    """Every project file that running ``path`` can import, transitively (``path`` excluded)."""
    seen: set[Path] = set()
    todo = [path]
    while todo:
        for module in direct_imports(todo.pop(), src):
            file = module_file(module, src)
            if file not in seen:
                seen.add(file)
                todo.append(file)
    return seen


def all_modules(src: Path = SRC) -> list[Path]:
    return sorted((Path(src) / PACKAGE).rglob("*.py"))


def cycles() -> list[list[str]]:
    """Import cycles between modules (a package's ``__init__`` importing its own submodules, the
    usual re-export, is not a cycle), each as the list of modules around it."""
    graph = {module_name(p): {m for m in direct_imports(p) if not _is_reexport(module_name(p), m)}
             for p in all_modules()}
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def _is_reexport(importer: str, imported: str) -> bool:
    return imported.startswith(importer + ".") or importer.startswith(imported + ".") or imported == PACKAGE
