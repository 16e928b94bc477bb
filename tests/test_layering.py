"""No import runs upward: the packages of cnnzip stand in layers, and each may import only
its own layer and those below it (docs/ARCHITECTURE.md, "Layers").

Every module's imports are read with ``ast``, those inside functions included, so an
import hidden in a function body to dodge a cycle counts like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "cnnzip"

LAYERS = (  # bottom first; a part is a module or package directly under cnnzip
    ("errors", "fileio"),
    ("data", "models", "transforms"),
    ("codec", "profiling"),
    ("prune", "quantize", "binary", "train", "distill", "runs"),
    ("recipes", "runtime", "survey", "export", "report", "cli", "__init__", "__main__"),
)
LEVEL = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def _part(module: str) -> str | None:
    """``cnnzip.codec.model`` -> ``codec``; None outside cnnzip."""
    names = module.split(".")
    if names[0] != "cnnzip":
        return None
    return names[1] if len(names) > 1 else "__init__"


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    names = list(rel.parts)
    return ".".join(names[:-1] if names[-1] == "__init__" else names)


def _imports(path: Path, root: Path = SRC) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path``, relative ones resolved; for
    ``from cnnzip import x`` the module ``cnnzip.x`` too."""
    return _walk_imports(ast.parse(path.read_text(), str(path)), path, root)


def _walk_imports(tree: ast.AST, path: Path, root: Path) -> list[tuple[int, str]]:
    package = _module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join(names + ([node.module] if node.module else []))
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names if base == "cnnzip"]
    return out


def upward_imports(root: Path = SRC) -> list[str]:
    """Every import in the package at ``root`` from a part to a part of a higher layer."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        own = "__init__" if rel == Path("__init__.py") else rel.parts[0].removesuffix(".py")
        for line, module in _imports(path, root):
            other = _part(module)
            if other is not None and other in LEVEL and LEVEL[other] > LEVEL[own]:
                found.append(f"{rel}:{line} ({own}) imports {module} ({other}, a higher layer)")
    return found


def test_every_part_has_a_layer() -> None:
    parts = {
        p.name.removesuffix(".py")
        for p in SRC.iterdir()
        if p.suffix == ".py" or (p / "__init__.py").exists()
    }
    assert parts - LEVEL.keys() == set(), "place each new package in LAYERS (and ARCHITECTURE.md)"


def test_no_import_runs_upward() -> None:
    assert upward_imports() == []


def test_an_import_inside_a_function_counts(tmp_path: Path) -> None:
    """The checker sees what a function body hides, and resolves relative imports."""
    module = tmp_path / "cnnzip" / "codec" / "lazy.py"
    module.parent.mkdir(parents=True)
    module.write_text("def f():\n    from ..binary import layers\n    import cnnzip.cli\n")
    root = tmp_path / "cnnzip"
    assert [m for _, m in _imports(module, root)] == ["cnnzip.binary", "cnnzip.cli"]
    assert _imports_in_functions(module, root) == ["cnnzip.binary", "cnnzip.cli"]
    assert upward_imports(root) == [
        "codec/lazy.py:2 (codec) imports cnnzip.binary (binary, a higher layer)",
        "codec/lazy.py:3 (codec) imports cnnzip.cli (cli, a higher layer)",
    ]


def _imports_in_functions(path: Path, root: Path = SRC) -> list[str]:
    """cnnzip modules imported inside a function of ``path``."""
    found = []
    for func in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            inner = ast.Module(body=func.body, type_ignores=[])
            found += [m for _, m in _walk_imports(inner, path, root) if _part(m) is not None]
    return found


def test_no_cnnzip_import_hides_in_a_function() -> None:
    """A cycle is broken by the layers, not by deferring an import to call time (as
    profiling.storage once imported codec.sparse inside a function)."""
    hidden = {
        str(path.relative_to(SRC)): names
        for path in sorted(SRC.rglob("*.py"))
        if (names := _imports_in_functions(path))
    }
    assert hidden == {}
