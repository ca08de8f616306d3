"""Issue 12's size rule, enforced: no source file over 300 lines, no function over 60 lines unless a
`# long: <reason>` comment stands on the line above its def (or its decorators)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("common", "ncf", "dlrm", "sim") for p in (ROOT / d).rglob("*.py"))
MAX_FILE, MAX_FUNCTION = 300, 60


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_file_and_function_sizes(path: Path) -> None:
    lines = path.read_text().splitlines()
    assert len(lines) <= MAX_FILE, f"{path.name}: {len(lines)} lines; split it by what it holds"
    long = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            reason = "# long:" in "\n".join(lines[max(0, first - 3) : node.lineno])
            if node.end_lineno - node.lineno + 1 > MAX_FUNCTION and not reason:
                long.append(f"{node.name} (line {node.lineno}, {node.end_lineno - node.lineno + 1} lines)")
    assert not long, f"{path.name}: functions over {MAX_FUNCTION} lines without a '# long:' reason: {long}"
