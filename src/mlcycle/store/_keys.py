"""The rules metric, param and tag keys follow, checked in the store so every client gets them."""

from __future__ import annotations

import re

from mlcycle.errors import ValidationFailed

__all__ = ["MAX_KEY_LENGTH", "check_key", "check_name"]

MAX_KEY_LENGTH = 250
_ALLOWED = re.compile(r"[A-Za-z0-9_\-. /:]+")
_RULE = "letters, digits, spaces and _ - . / : only"


def check_key(key: str, *, kind: str = "key") -> str:
    """Return ``key`` if it is a valid metric, param or tag key; else raise ``ValidationFailed``.

    >>> check_key("val/rmse", kind="metric")
    'val/rmse'
    >>> check_key("rmse!", kind="metric")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mlcycle.errors.ValidationFailed: invalid metric key 'rmse!': use letters, ... (found '!')
    """
    if not isinstance(key, str):
        raise ValidationFailed(f"{kind} key {key!r} must be a string, not {type(key).__name__}")
    if not key:
        raise ValidationFailed(f"{kind} key is empty: give it a name such as 'rmse'")
    if len(key) > MAX_KEY_LENGTH:
        raise ValidationFailed(
            f"{kind} key '{key[:40]}...' has {len(key)} characters; use at most {MAX_KEY_LENGTH}"
        )
    if key != key.strip():
        raise ValidationFailed(f"invalid {kind} key {key!r}: remove the leading or trailing spaces")
    if not _ALLOWED.fullmatch(key):
        bad = "".join(sorted({char for char in key if not _ALLOWED.fullmatch(char)}))
        raise ValidationFailed(f"invalid {kind} key '{key}': use {_RULE} (found {bad!r})")
    return key


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


def check_name(name: str, *, kind: str, example: str) -> str:
    """``name`` if it can name a ``kind`` (dataset, model, schedule), else ``ValidationFailed``.

    >>> check_name("bike-demand", kind="model", example="bike-demand")
    'bike-demand'
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValidationFailed(
            f"{kind} name {name!r} must be 1 to 128 letters, digits, '_', '.' or '-', "
            f"starting with a letter or digit (such as {example})"
        )
    return name
