"""Credentials are removed where runs capture them, so no secret ever reaches the store.

Two tests decide. A *name* that says secret (``password``, ``api_key``,
``AWS_SECRET_ACCESS_KEY``, ``--token``) redacts its whole value. A *value*
that looks like a credential (an AWS access key id, ``Bearer ...``, a GitHub
or OpenAI token, a JWT, ``name=value`` after a secret name, a URL with a
password) is redacted where it appears, and the rest of the text is kept.
Names are split into words first, so ``max_tokens`` and ``tokenizer`` stay.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence

__all__ = ["REDACTED", "is_secret_name", "redact_argv", "redact_mapping", "redact_text"]

REDACTED = "***redacted***"

_SECRET_WORDS = frozenset(
    {
        "auth",
        "authorization",
        "credential",
        "credentials",
        "passphrase",
        "passwd",
        "password",
        "passwords",
        "pwd",
        "secret",
        "secrets",
        "token",
    }
)
_SECRET_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key")})
_SECRET_JOINED = frozenset({"apikey", "accesskey", "privatekey", "secretkey", "authtoken"})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@]*:)[^\s/@]+(?=@)")
_BEARER = re.compile(r"(?i)\b(?P<head>bearer\s+)[A-Za-z0-9\-._~+/]+=*")
_ASSIGNMENT = re.compile(
    r"(?i)(?P<name>[A-Za-z0-9_.\-]*"
    r"(?:pass|pwd|secret|token|credential|auth|key)[A-Za-z0-9_.\-]*)(?P<sep>\"?\s*[=:]\s*\"?)(?P<value>(?:bearer\s+)?[^\s\"',;&]+)"
)
_TOKEN_SHAPES = re.compile(
    r"\b(?:"
    r"(?:AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"  # GitHub tokens
    r"|sk-[A-Za-z0-9_\-]{20,}"  # OpenAI-style secret keys
    r"|xox[abprs]-[A-Za-z0-9\-]{10,}"  # Slack tokens
    r"|eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]+"  # JWT
    r")"
)


def is_secret_name(name: str) -> bool:
    """Whether a param, tag, option or variable called ``name`` holds a credential.

    >>> is_secret_name("db_password"), is_secret_name("AWS_SECRET_ACCESS_KEY")
    (True, True)
    >>> is_secret_name("max_tokens"), is_secret_name("tokenizer"), is_secret_name("author")
    (False, False, False)
    """
    words = [word.lower() for word in _WORD.findall(name)]
    if any(word in _SECRET_WORDS or word in _SECRET_JOINED for word in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def redact_text(text: str) -> str:
    """Replace every credential-shaped part of ``text``, keeping the rest.

    >>> redact_text("postgresql://ana:hunter2@db/prod")
    'postgresql://ana:***redacted***@db/prod'
    >>> redact_text("Authorization: Bearer abc.def")
    'Authorization: ***redacted***'
    """
    text = _URL_PASSWORD.sub(lambda m: m["head"] + REDACTED, text)
    text = _ASSIGNMENT.sub(_redact_assignment, text)
    text = _BEARER.sub(lambda m: m["head"] + REDACTED, text)
    return _TOKEN_SHAPES.sub(REDACTED, text)


def _redact_assignment(match: re.Match[str]) -> str:
    if not is_secret_name(match["name"]) or match["value"] == REDACTED:
        return match[0]
    return match["name"] + match["sep"] + REDACTED


def redact_value(name: str, value: str) -> str:
    """The value to store for ``name``: all of it redacted when the name says secret."""
    if is_secret_name(name):
        return REDACTED
    return redact_text(value)


def redact_mapping(values: Mapping[str, str]) -> dict[str, str]:
    """Params, tags or variables with every credential redacted."""
    return {name: redact_value(name, value) for name, value in values.items()}


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with option values, ``NAME=value`` pairs and credential shapes redacted.

    >>> redact_argv(["train.py", "--password=x", "--token", "abc", "--epochs", "3"])
    ['train.py', '--password=***redacted***', '--token', '***redacted***', '--epochs', '3']
    """
    redacted: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next and not arg.startswith("--"):
            redacted.append(REDACTED)
            hide_next = False
            continue
        hide_next = False
        name, sep, _value = arg.partition("=")
        option = name.lstrip("-")
        if sep and option and is_secret_name(option):
            redacted.append(f"{name}={REDACTED}")
        elif arg.startswith("-") and not sep and is_secret_name(option):
            redacted.append(arg)
            hide_next = True
        else:
            redacted.append(redact_text(arg))
    return redacted
