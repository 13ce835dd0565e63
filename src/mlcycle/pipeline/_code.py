"""Digests of code and environment, the parts of a step's cache key that are not data.

A step's code digest covers its source and, recursively, the source of the
functions and classes it reaches through its globals that live under the
project root (so a change in a helper module misses the cache, while
library code is covered by the environment digest instead).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from mlcycle.ids import Digest
from mlcycle.track import capture_environment

__all__ = ["code_digest", "digest_of", "environment_digest"]


def digest_of(value: object) -> Digest:
    """The sha256 digest of ``value`` as canonical JSON."""
    body = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    return Digest("sha256:" + hashlib.sha256(body).hexdigest())


@functools.cache
def environment_digest() -> Digest:
    """A digest of the interpreter and installed package versions."""
    environment = capture_environment(packages=True)
    return digest_of({"python": environment.python, "packages": environment.packages})


def code_digest(fn: Callable[..., Any], *, root: Path) -> Digest:
    """The digest of ``fn``'s source and what it calls under ``root``, recursively."""
    sources: dict[str, str] = {}
    _collect(_unwrap(fn), root.resolve(), sources, top=True)
    return digest_of(sorted(sources.values()))


def _unwrap(obj: object) -> object:
    inner = getattr(obj, "fn", None)  # a Step or Pipeline wraps its function
    return inner if callable(inner) else obj


def _under(obj: object, root: Path) -> bool:
    try:
        found = inspect.getsourcefile(obj)  # type: ignore[arg-type]  # functions, classes, modules
    except TypeError:
        return False
    if found is None:
        return False
    return Path(found).resolve().is_relative_to(root)


def _source(obj: object) -> str:
    try:
        return inspect.getsource(obj)  # type: ignore[arg-type]  # functions and classes
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        return code.co_code.hex() if code is not None else repr(obj)


def _key(obj: object) -> str:
    """The file and qualified name: the same however the module was imported (by name or path)."""
    try:
        where = inspect.getsourcefile(obj) or ""  # type: ignore[arg-type]  # functions and classes
    except TypeError:
        where = getattr(obj, "__module__", "")
    return f"{where}:{getattr(obj, '__qualname__', getattr(obj, '__name__', repr(obj)))}"


def _collect(obj: object, root: Path, sources: dict[str, str], *, top: bool = False) -> None:
    key = _key(obj)
    if key in sources or not (top or _under(obj, root)):
        return
    sources[key] = _source(obj)
    for function in _functions(obj):
        names = set(_names(function.__code__))
        scope = function.__globals__
        for name in names:
            found = _unwrap(scope.get(name))
            if isinstance(found, types.ModuleType):
                if _under(found, root):
                    for attribute in names:
                        _maybe(_unwrap(getattr(found, attribute, None)), root, sources)
            else:
                _maybe(found, root, sources)


def _maybe(obj: object, root: Path, sources: dict[str, str]) -> None:
    if isinstance(obj, types.FunctionType | type):
        _collect(obj, root, sources)


def _functions(obj: object) -> Iterator[types.FunctionType]:
    if isinstance(obj, types.FunctionType):
        yield obj
    elif isinstance(obj, type):
        for value in vars(obj).values():
            inner = value.__func__ if isinstance(value, classmethod | staticmethod) else value
            if isinstance(inner, types.FunctionType):
                yield inner


def _names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)
