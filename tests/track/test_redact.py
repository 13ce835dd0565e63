"""Secrets are redacted at capture: by name, by shape, in argv forms, and never reach the store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcycle.settings import Settings
from mlcycle.track import REDACTED, is_secret_name, redact_argv, redact_mapping, redact_text
from mlcycle.workspace import Workspace

SECRET_NAMES = [
    "password",
    "db_password",
    "passwd",
    "client_secret",
    "AWS_SECRET_ACCESS_KEY",
    "github_token",
    "api_key",
    "apiKey",
    "apikey",
    "access_key",
    "private_key",
    "credential",
    "gcp_credentials",
    "auth",
    "Authorization",
]
PLAIN_NAMES = ["max_tokens", "tokenizer", "author", "learning_rate", "keyboard", "model"]

SHAPES = {
    "aws key id": ("id AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE"),
    "bearer": ("Bearer abcdef0123456789", "abcdef0123456789"),
    "github": ("ghp_" + "A1b2" * 9, "ghp_" + "A1b2" * 9),
    "openai": ("key sk-" + "x9" * 20, "sk-" + "x9" * 20),
    "jwt": (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "eyJhbGciOiJIUzI1NiJ9",
    ),
    "secret after name": (
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    "json secret": ('{"api_key": "Zm9vYmFyYmF6cXV4"}', "Zm9vYmFyYmF6cXV4"),
}


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_names_redact_the_whole_value(name: str) -> None:
    assert is_secret_name(name)
    assert redact_mapping({name: "hunter2"}) == {name: REDACTED}


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_ordinary_names_are_kept(name: str) -> None:
    assert not is_secret_name(name)
    assert redact_mapping({name: "512"}) == {name: "512"}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_credential_shapes_in_values_are_redacted(shape: str) -> None:
    text, secret = SHAPES[shape]
    redacted = redact_text(text)
    assert secret not in redacted
    assert REDACTED in redacted


def test_url_keeps_everything_but_the_password() -> None:
    url = "postgresql+psycopg://ana:s3cr3t@db.internal:5432/prod"
    assert redact_text(url) == "postgresql+psycopg://ana:***redacted***@db.internal:5432/prod"
    assert redact_mapping({"db_url": url})["db_url"] == redact_text(url)


def test_plain_text_is_unchanged() -> None:
    for text in ["gbm", "0.1", "https://example.com/data.csv", "max_tokens=512", "sk-learn"]:
        assert redact_text(text) == text


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train.py", "--password=x"], ["train.py", f"--password={REDACTED}"]),
        (
            ["train.py", "--token", "abc", "--epochs", "3"],
            ["train.py", "--token", REDACTED, "--epochs", "3"],
        ),
        (["train.py", "--api-key=k1", "-v"], ["train.py", f"--api-key={REDACTED}", "-v"]),
        (
            ["train.py", "DB_PASSWORD=pw", "lr=0.1"],
            ["train.py", f"DB_PASSWORD={REDACTED}", "lr=0.1"],
        ),
        (
            ["train.py", "--db", "mysql://u:pw@h/db"],
            ["train.py", "--db", f"mysql://u:{REDACTED}@h/db"],
        ),
        (["train.py", "--auth", "--fast"], ["train.py", "--auth", "--fast"]),
        (["train.py", "--max-tokens", "512"], ["train.py", "--max-tokens", "512"]),
    ],
)
def test_command_line_forms(argv: list[str], expected: list[str]) -> None:
    assert redact_argv(argv) == expected


secret_text = st.text(alphabet=st.characters(categories=["L", "N"]), min_size=4, max_size=40)


@given(secret=secret_text, name=st.sampled_from(SECRET_NAMES))
def test_a_secret_never_survives_its_name(secret: str, name: str) -> None:
    assert secret not in redact_mapping({name: secret})[name]
    assert all(secret not in arg for arg in redact_argv([f"--{name}", secret]))
    assert all(secret not in arg for arg in redact_argv([f"--{name}={secret}"]))


@given(
    key=st.from_regex(r"AKIA[0-9A-Z]{16}", fullmatch=True),
    before=st.sampled_from(["", "x ", "id="]),
)
def test_aws_key_ids_never_survive(key: str, before: str) -> None:
    assert key not in redact_text(f"{before}{key} tail")


def test_secrets_never_reach_the_database(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = ["hunter2-pw", "tok-XYZ-123", "AKIAIOSFODNN7EXAMPLE", "argvsecret99", "envsecret77"]
    monkeypatch.setattr(sys, "argv", ["train.py", "--password", "argvsecret99", "--lr", "0.1"])
    monkeypatch.setenv("MY_TOKEN", "envsecret77")
    allow = settings.tracking.model_copy(update={"env_allowlist": ("MY_TOKEN", "LANG")})
    with Workspace.open(settings.model_copy(update={"tracking": allow})) as workspace:
        with workspace.start_run("s", params={"db_password": "hunter2-pw"}) as run:
            run.log_param("aws", "AKIAIOSFODNN7EXAMPLE")
            run.set_tags({"api_token": "tok-XYZ-123", "owner": "ana"})
        found = workspace.get_run(run.id)
    assert found.params == {"db_password": REDACTED, "aws": REDACTED}
    assert found.tags["api_token"] == REDACTED
    assert found.tags["owner"] == "ana"
    assert found.tags["env.MY_TOKEN"] == REDACTED
    assert found.command == f"train.py --password '{REDACTED}' --lr 0.1"
    stored = b"".join(
        path.read_bytes() for path in Path(settings.workspace_dir).glob("mlcycle.db*")
    )
    for secret in secrets:
        assert secret.encode() not in stored
