"""The layers' boundaries, checked on the source: bot/ loads no model library; no module imports another's private
name (a name another module needs is public, or lives where it is used)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL_LIBRARIES = {"torch", "llama_cpp"}


def _imports(package: str) -> list[tuple[Path, int, str, str]]:
    """(file, line, module, name) for every `import module` / `from module import name` under `package`."""
    found = []
    for path in sorted((REPO / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found += [(path, node.lineno, alias.name, "") for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                found += [(path, node.lineno, node.module, alias.name) for alias in node.names]
    return found


def test_bot_imports_no_model_library() -> None:
    offending = [f"{p.relative_to(REPO)}:{line} {module}" for p, line, module, _ in _imports("bot")
                 if module.split(".")[0] in MODEL_LIBRARIES]
    assert offending == [], "the engine describes its models (Engine.describe); bot/ must not load them"


def test_no_private_name_is_imported_across_modules() -> None:
    offending = [
        f"{p.relative_to(REPO)}:{line} from {module} import {name}"
        for package in ("bot", "rag_engine", "storage", "training", "tests")
        for p, line, module, name in _imports(package)
        if name.startswith("_") and not name.startswith("__")
    ]
    assert offending == []
