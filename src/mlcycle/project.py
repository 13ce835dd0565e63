"""Lay out a new mlcycle project: a commented ``mlcycle.toml``, ``.mlcycle/`` and folders.

The layout follows what the project's guides recommend: ``data/`` for raw and
prepared data, ``pipelines/`` for pipeline code, ``schemas/`` for data contracts,
``notebooks/`` for exploration and ``tests/`` for the project's own tests. The
``.mlcycle/`` folder holds the embedded database, the artifacts and the
untracked secrets; a ``.gitignore`` inside it keeps all of that out of git.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mlcycle.errors import AlreadyExists, WorkspaceError
from mlcycle.settings import (
    CONFIG_FILE,
    SECRETS_FILE,
    WORKSPACE_DIR,
    DataSettings,
    TrackingSettings,
)

__all__ = ["FOLDERS", "init_project"]

FOLDERS: dict[str, str] = {
    "data": "Raw and prepared data files. Large files belong in the dataset store, not in git.",
    "pipelines": "Pipeline code: plain Python functions for each step, from raw data to a model.",
    "schemas": "Data contracts: the schemas that incoming data and model inputs must satisfy.",
    "notebooks": "Exploration notebooks. Move code that must be repeatable into pipelines/.",
    "tests": "Tests of this project's own code (pipelines, features), run with pytest.",
}
"""The folders ``init_project`` creates, each with a README saying what goes there."""

CONFIG_TEMPLATE = f"""\
# mlcycle project settings. This file is meant to be committed.
#
# Every setting below is shown commented out with its default value: uncomment
# a line to change it. Settings are layered, weakest first: these defaults,
# this file, .mlcycle/{SECRETS_FILE} (untracked), MLCYCLE_* environment
# variables (MLCYCLE_STORE__METADATA_URL, MLCYCLE_STORE__S3__ENDPOINT_URL, ...),
# then command-line flags (mlcycle --metadata-url ...).
#
# Credentials (passwords, tokens, S3 keys) are refused here: put them in
# .mlcycle/{SECRETS_FILE}, which is never committed, or in MLCYCLE_* variables
# such as MLCYCLE_STORE__S3__SECRET_ACCESS_KEY (the usual AWS_* variables
# work for S3 too).

# Who records runs and events; defaults to the operating-system user.
# actor = "ana"

[store]
# Where metadata (experiments, runs, metrics, events, lineage) lives.
# Default: sqlite:///<project>/.mlcycle/mlcycle.db
# Team setting, for example:
#   metadata_url = "postgresql+psycopg://mlcycle@db.example.com:5432/mlcycle"
#   (the password goes in MLCYCLE_STORE__METADATA_URL or .mlcycle/{SECRETS_FILE})
#
# Where artifacts (models, reports, data snapshots) live, content-addressed.
# Default: <project>/.mlcycle/artifacts
# Team setting, for example:
#   artifacts_url = "s3://ml-artifacts/bike-demand"
#
# How long a SQLite writer waits for a lock before retrying, in seconds.
# busy_timeout_s = 30.0

[store.s3]
# Options for an s3:// artifacts_url (any S3-compatible server).
# Keys and tokens are never written here (see the top of this file).
#   endpoint_url = "http://127.0.0.1:9000"
#   region = "us-east-1"
# connect_timeout_s = 5.0
# read_timeout_s = 60.0
# retries = 2

[tracking]
# Logged values are buffered and written in batches at least this often (at most 0.5).
# flush_interval_s = 0.5
# How many values the buffer holds; when it is full, a log call waits (never drops).
# buffer_size = 100000
# How often a running run says it is alive, and after how long without a heartbeat
# it is marked killed.
# heartbeat_interval_s = 5.0
# stale_after_s = 30.0
# Record installed package versions with each run's environment.
# capture_packages = true
# Environment variables recorded with a run (only these; values of others are never stored).
# env_allowlist = [{", ".join(f'"{name}"' for name in TrackingSettings().env_allowlist)}]

[clock]
# "real", or "simulated" to fast-forward time in tests and the demo (shared by subprocesses).
# mode = "real"
# Where a simulated clock keeps its time. Default: <project>/.mlcycle/clock.json
#   state_file = ".mlcycle/clock.json"

[data]
# Policy checks at registration (GDPR). Columns with these names (any case; separators
# ignored, so first_name also matches FirstName) are recorded as personal data.
# personal_names = [{", ".join(f'"{name}"' for name in DataSettings().personal_names)}]
# Columns that must not be used; datasets holding one are flagged, and model gates can refuse them.
# deny_columns = []
# How many rows (evenly spaced) are scanned for e-mails, phones, IPs and card numbers.
# pii_sample_rows = 100000
# Datasets whose registrations are checked against schemas/<name>.yaml, refusing bad data
# (nothing is written); "*" means every dataset that has a schema file.
# validate_on_register = []

# Pipeline parameters, overriding the defaults in the pipeline's code; a value given to
# .run() or with `mlcycle pipelines run ... --param NAME=VALUE` overrides these in turn.
# For example, for the pipeline `training`:
#   [pipelines.training.params]
#   n_estimators = 200
#   data = "bike@latest"
"""

SECRETS_TEMPLATE = """\
# Credentials for this project, never committed (.mlcycle/ is ignored by git).
# Same layout as mlcycle.toml, for example:
#
# [store]
# metadata_url = "postgresql+psycopg://mlcycle:PASSWORD@db.example.com:5432/mlcycle"
#
# [store.s3]
# access_key_id = "..."
# secret_access_key = "..."
"""


def init_project(directory: Path, *, force: bool = False) -> Path:
    """Lay out an mlcycle project in ``directory`` (created if missing) and return its path.

    Writes a commented ``mlcycle.toml``, the ``.mlcycle/`` workspace (ignored by
    git) and the folders in ``FOLDERS``. Existing folders and READMEs are kept.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     root = init_project(Path(tmp) / "bikes")
    ...     sorted(p.name for p in root.iterdir())
    ['.mlcycle', 'data', 'mlcycle.toml', 'notebooks', 'pipelines', 'schemas', 'tests']

    Raises:
        AlreadyExists: ``mlcycle.toml`` is already there and ``force`` is false.
        WorkspaceError: the directory cannot be created or written.
    """
    root = directory.expanduser().resolve()
    config = root / CONFIG_FILE
    if config.exists() and not force:
        raise AlreadyExists(
            f"{config} already exists; it was left untouched "
            "(pass --force, or force=True, to overwrite it with the defaults)"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
        _write_atomically(config, CONFIG_TEMPLATE)
        workspace = root / WORKSPACE_DIR
        workspace.mkdir(exist_ok=True)
        _write_if_missing(workspace / ".gitignore", "# Everything here stays out of git.\n*\n")
        _write_if_missing(workspace / SECRETS_FILE, SECRETS_TEMPLATE, mode=0o600)
        for name, purpose in FOLDERS.items():
            (root / name).mkdir(exist_ok=True)
            _write_if_missing(root / name / "README.md", f"# {name}/\n\n{purpose}\n")
    except OSError as exc:
        where = exc.filename or root
        raise WorkspaceError(
            f"cannot create the mlcycle project in {root}: {exc.strerror} ({where}); "
            "choose a folder you can write to"
        ) from exc
    return root


def _write_if_missing(path: Path, text: str, *, mode: int = 0o644) -> None:
    if not path.exists():
        _write_atomically(path, text, mode=mode)


def _write_atomically(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Write via a temporary file and a rename, so a crash never leaves half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
