"""Code digests follow what a step calls under the project root; targets load by file or module."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest
from tests.pipeline import flows

from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.pipeline import code_digest, load_target

HELPERS = """
import math

class Scaler:
    factor = {factor}

    def apply(self, value: float) -> float:
        return value * self.factor

def scaled(value: float) -> float:
    return Scaler().apply(math.sqrt(value))
"""

STEP = """
import helpers_{tag} as helpers

def compute(value: float) -> float:
    def inner(x: float) -> float:
        return helpers.scaled(x)
    return inner(value)
"""


def _load(root: Path, tag: str, factor: int) -> object:
    (root / f"helpers_{tag}.py").write_text(textwrap.dedent(HELPERS.format(factor=factor)))
    (root / f"step_{tag}.py").write_text(textwrap.dedent(STEP.format(tag=tag)))
    sys.path.insert(0, str(root))
    try:
        for name in (f"helpers_{tag}", f"step_{tag}"):
            sys.modules.pop(name, None)
        spec = importlib.util.spec_from_file_location(f"step_{tag}", root / f"step_{tag}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.compute
    finally:
        sys.path.remove(str(root))


def test_the_digest_follows_nested_functions_modules_and_classes(tmp_path: Path) -> None:
    first = code_digest(_load(tmp_path, "a", 2), root=tmp_path)  # type: ignore[arg-type]
    same = code_digest(_load(tmp_path, "a", 2), root=tmp_path)  # type: ignore[arg-type]
    changed = code_digest(_load(tmp_path, "a", 3), root=tmp_path)  # type: ignore[arg-type]
    assert first == same
    assert first != changed  # a class attribute two calls away changed
    elsewhere = code_digest(_load(tmp_path, "a", 2), root=tmp_path / "other")  # type: ignore[arg-type]
    assert elsewhere != first  # outside the root only the step itself counts


def test_targets_load_by_module_name_too() -> None:
    assert load_target("tests.pipeline.flows:simple", root=Path.cwd()) is flows.simple
    with pytest.raises(NotFound, match="no module 'no_such_module'"):
        load_target("no_such_module:simple", root=Path.cwd())
    with pytest.raises(ValidationFailed, match="not a pipeline target"):
        load_target("flows.py:", root=Path.cwd())


def test_a_file_that_fails_to_import_is_named(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('no luck')\n")
    with pytest.raises(
        ValidationFailed, match=r"importing .*broken.py failed: RuntimeError: no luck"
    ):
        load_target("broken.py:training", root=tmp_path)
