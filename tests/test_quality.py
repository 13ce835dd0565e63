"""The code gates run as tests: lint, format, strict typing, layering, public APIs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SRC = ROOT / "src" / "mlcycle"


def run_tool(*argv: str) -> None:
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"


@pytest.mark.slow
def test_ruff_check_passes() -> None:
    run_tool(str(BIN / "ruff"), "check", "src", "tests", "benchmarks")


@pytest.mark.slow
def test_ruff_format_is_clean() -> None:
    run_tool(str(BIN / "ruff"), "format", "--check", "src", "tests", "benchmarks")


@pytest.mark.slow
def test_mypy_strict_passes_on_src() -> None:
    run_tool(str(BIN / "mypy"), "--strict", "src")


@pytest.mark.slow
def test_layering_contracts_hold() -> None:
    run_tool(str(BIN / "lint-imports"))


def test_private_modules_are_used_only_inside_their_package() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        package = path.relative_to(SRC).parts[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                parts = name.split(".")
                private = len(parts) > 2 and parts[0] == "mlcycle" and parts[2].startswith("_")
                if private and parts[1] != package:
                    offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []
