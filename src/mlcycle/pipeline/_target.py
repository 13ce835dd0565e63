"""Finding a pipeline from a target such as ``pipelines.py:training`` or ``pkg.flows:training``.

Files are imported by path (their folder put on ``sys.path`` so their own
imports work); a file that is already imported is reused, so a pipeline
defined in a running program resolves to the same objects.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING

from mlcycle.errors import NotFound, ValidationFailed

if TYPE_CHECKING:
    from mlcycle.pipeline._pipeline import Pipeline

__all__ = ["load_target", "target_of"]


def target_of(module_file: str | None, name: str, *, root: Path) -> str:
    """The target text of ``name`` in ``module_file``, relative to ``root`` when under it."""
    if module_file is None:
        return name
    path = Path(module_file).resolve()
    shown = path.relative_to(root.resolve()) if path.is_relative_to(root.resolve()) else path
    return f"{shown}:{name}"


def load_target(target: str, *, root: Path) -> Pipeline:
    """The pipeline ``target`` names (``FILE.py:NAME`` or ``module:NAME``)."""
    from mlcycle.pipeline._pipeline import Pipeline  # noqa: PLC0415  (the module imports this one)

    where, sep, name = target.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise ValidationFailed(
            f"{target!r} is not a pipeline target; write FILE.py:NAME (such as "
            "pipelines.py:training) or MODULE:NAME"
        )
    module = _module_of_file(where, root) if where.endswith(".py") else _import(where)
    found = getattr(module, name, None)
    if found is None:
        defined = sorted(k for k, v in vars(module).items() if isinstance(v, Pipeline))
        listing = ", ".join(defined) or "none"
        raise NotFound(f"{where} has no '{name}'; the pipelines it defines are: {listing}")
    if not isinstance(found, Pipeline):
        raise ValidationFailed(
            f"{where}:{name} is a {type(found).__qualname__}, not a pipeline; "
            "decorate the function with @pipeline"
        )
    return found


def _import(name: str) -> types.ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise NotFound(f"no module '{name}' to load a pipeline from: {exc}") from exc


_MODULES_BY_FILE: dict[Path, types.ModuleType] = {}
"""Pipeline files already imported in this process, by resolved path."""


def _module_of_file(text: str, root: Path) -> types.ModuleType:
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = path if path.exists() else root / path
    path = path.resolve()
    if not path.is_file():
        raise NotFound(f"no pipeline file {path}; give an existing FILE.py:NAME")
    known = _MODULES_BY_FILE.get(path)
    if known is not None and sys.modules.get(known.__name__) is known:
        return known  # a worker runs many steps of one file: no scan of sys.modules each time
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) and Path(module.__file__).resolve() == path:  # type: ignore[arg-type]
            _MODULES_BY_FILE[path] = module
            return module
    name = f"mlcycle_pipeline_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:10]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValidationFailed(f"cannot import {path} as Python")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ValidationFailed(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    _MODULES_BY_FILE[path] = module
    return module
