"""Test and bench tooling stays out of production code: ``services/`` and ``shared/``
import neither ``devservices`` (local Kafka/PostgreSQL), nor ``tests``, nor ``bench``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLING = ("devservices", "tests", "bench")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_production_code_imports_no_tooling() -> None:
    offenders = sorted(
        f"{path.relative_to(ROOT)}: {module}"
        for top in ("services", "shared")
        for path in (ROOT / top).rglob("*.py")
        for module in imported_modules(path)
        if module.split(".")[0] in TOOLING
    )
    assert offenders == []
