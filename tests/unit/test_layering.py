"""The layering rule, checked on the source: ``heldar/`` and ``config/`` never import ``actors`` or ``api``,
neither with an import statement nor by module name at run time (``importlib.import_module("api...")``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("actors", "api")


def _forbidden(module: str | None) -> bool:
    return module is not None and module.split(".")[0] in FORBIDDEN


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"{path.name}:{node.lineno} import {a.name}" for a in node.names if _forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _forbidden(node.module):
            found.append(f"{path.name}:{node.lineno} from {node.module} import ...")
        elif isinstance(node, ast.Call) and node.args:
            # any call that takes a module path as a string literal: import_module, __import__, run_module, ...
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and _forbidden(first.value):
                name = ast.unparse(node.func)
                if "import" in name or "module" in name:
                    found.append(f"{path.name}:{node.lineno} {name}({first.value!r})")
    return found


@pytest.mark.parametrize("package", ["heldar", "config"])
def test_core_never_imports_actors_or_api(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    violations = [v for f in files for v in _violations(f)]
    assert not violations, violations


def test_the_checker_sees_a_disguised_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('import importlib\nrun = importlib.import_module("api.server").run\nfrom actors import x\n')
    assert len(_violations(bad)) == 2
