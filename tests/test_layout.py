"""The engine issue's size limits, kept: no function in src/ over 60 lines, no module over
400, and no private JAX API in src/ or benchmarks/."""

from __future__ import annotations

import ast

from tests.conftest import PROJECT_ROOT

SOURCES = sorted((PROJECT_ROOT / "src").rglob("*.py"))


def test_no_function_is_longer_than_60_lines():
    long = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_no_module_is_longer_than_400_lines():
    long = [f"{p.relative_to(PROJECT_ROOT)} ({n} lines)" for p in SOURCES
            if (n := len(p.read_text().splitlines())) > 400]
    assert not long, long


def test_no_private_jax_api():
    files = [*SOURCES, *(PROJECT_ROOT / "benchmarks").rglob("*.py")]
    assert [p.name for p in files if "jax._src" in p.read_text()] == []
