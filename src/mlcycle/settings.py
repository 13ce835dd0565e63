"""The one settings object, built at the edge and passed down.

Layers, weakest first: defaults, ``mlcycle.toml`` (found by walking up from
the working directory), the untracked ``.mlcycle/secrets.toml``, ``MLCYCLE_*``
environment variables (``MLCYCLE_STORE__METADATA_URL``), then values given in
code or on the command line. Credentials are refused in ``mlcycle.toml``: it is
meant to be committed.
"""

from __future__ import annotations

import getpass
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mlcycle.errors import ValidationFailed, WorkspaceError

__all__ = [
    "CONFIG_FILE",
    "WORKSPACE_DIR",
    "AgentSettings",
    "AlertRuleSettings",
    "AlertSettings",
    "ClockSettings",
    "DataSettings",
    "GateSettings",
    "MetricBound",
    "MonitorSettings",
    "NotifierSettings",
    "PipelineSettings",
    "RegistrySettings",
    "S3Settings",
    "ServeSettings",
    "Settings",
    "SliceGate",
    "StoreSettings",
    "TrackingSettings",
    "find_project_root",
    "load_settings",
]

CONFIG_FILE = "mlcycle.toml"
WORKSPACE_DIR = ".mlcycle"
SECRETS_FILE = "secrets.toml"
_SECRET_KEYS = frozenset(
    {"access_key_id", "secret_access_key", "session_token", "password", "token"}
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class S3Settings(_Section):
    """How to reach an S3-compatible object store; credentials come from the environment."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=60.0, gt=0)
    retries: int = Field(default=2, ge=0)


class StoreSettings(_Section):
    """Where metadata and artifacts live; ``None`` means inside the project's ``.mlcycle/``."""

    metadata_url: str | None = None
    artifacts_url: str | None = None
    busy_timeout_s: float = Field(default=30.0, gt=0)
    s3: S3Settings = S3Settings()


class TrackingSettings(_Section):
    """How runs are recorded: buffering, heartbeats and what of the environment is captured."""

    flush_interval_s: float = Field(default=0.5, gt=0, le=0.5)
    buffer_size: int = Field(default=100_000, ge=1)
    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    stale_after_s: float = Field(default=30.0, gt=0)
    capture_packages: bool = True
    env_allowlist: tuple[str, ...] = (
        "CUDA_VISIBLE_DEVICES",
        "LANG",
        "MLCYCLE_CLOCK__MODE",
        "OMP_NUM_THREADS",
        "PYTHONHASHSEED",
        "TZ",
        "VIRTUAL_ENV",
    )


class ClockSettings(_Section):
    """Real time, or simulated time shared through a state file (also by subprocesses)."""

    mode: Literal["real", "simulated"] = "real"
    state_file: Path | None = None


DatasetPattern = Annotated[
    str, StringConstraints(pattern=r"^(\*|[A-Za-z0-9][A-Za-z0-9_.\-]{0,127})$")
]
"""A dataset name, or ``*`` for every dataset."""


class DataSettings(_Section):
    """Datasets: which columns count as personal data, which are refused, how much is scanned."""

    personal_names: tuple[str, ...] = (
        "name",
        "first_name",
        "last_name",
        "full_name",
        "surname",
        "email",
        "phone",
        "address",
        "date_of_birth",
        "ssn",
    )
    deny_columns: tuple[str, ...] = ()
    pii_sample_rows: int = Field(default=100_000, ge=1)
    validate_on_register: tuple[DatasetPattern, ...] = ()
    """Datasets whose registrations are checked against ``schemas/<name>.yaml``; ``"*"``: all.

    A listed dataset without a schema file is refused; under ``"*"`` one is
    registered unchecked (its event says ``"validation": "skipped"``).
    """


class MetricBound(_Section):
    """Bounds on one metric: ``{min = 0.8}``, ``{max = 60.0}`` or both."""

    min: float | None = None
    max: float | None = None


class SliceGate(_Section):
    """Per-slice thresholds: the metric on each value of ``column`` (fairness, by ``sex``).

    Slices with fewer than ``min_rows`` test rows are reported, not judged.
    ``max_gap`` bounds the difference between the best and the worst slice.
    """

    column: str
    metrics: dict[str, MetricBound] = {}
    max_gap: dict[str, float] = {}
    min_rows: int = Field(default=30, ge=1)


class GateSettings(_Section):
    """The validation gates of one model, run by ``evaluate`` and again at promotion.

    ``target`` is the label column of the test data; ``primary_metric`` (such
    as ``rmse`` or ``accuracy``) is the one the production and baseline
    comparisons use, defaulting to ``rmse`` for regression and ``accuracy`` for
    classification. Relative tolerances: a candidate may be at most
    ``regression_tolerance`` worse than production, and must be at least
    ``baseline_margin`` better than ``baseline`` trained on the same split.
    ``None`` (or ``false`` in TOML) turns a gate off. ``positive_label`` is the
    class precision, recall, f1 and roc_auc are about in binary classification
    (default: the last class in sorted order, ``>50K`` on Adult).
    """

    task: Literal["regression", "classification"] | None = None
    target: str | None = None
    primary_metric: str | None = None
    positive_label: str | int | None = None
    thresholds: dict[str, MetricBound] = {}
    regression_tolerance: float | None = Field(default=0.02, ge=0)
    baseline: Literal["dummy", "linear"] | None = "dummy"
    baseline_margin: float = Field(default=0.05, ge=0)
    slices: tuple[SliceGate, ...] = ()
    max_latency_p99_ms: float | None = Field(default=None, gt=0)
    max_size_mb: float | None = Field(default=None, gt=0)
    allow_nan_predictions: bool = False
    require_disjoint_test: bool = True
    signature_compatible: bool = True
    deny_policy_columns: bool = True

    @field_validator("regression_tolerance", "baseline", mode="before")
    @classmethod
    def _false_is_off(cls, value: object) -> object:
        """TOML has no null: ``false`` turns the gate off."""
        return None if value is False else value


class RegistrySettings(_Section):
    """The model registry: whom to trust with code on load, guarded aliases, gates per model.

    ``trusted_publishers`` are actors whose unsafe (pickled) models load
    without ``trust=True``; ``trusted_types`` extends the built-in allow-list
    of types a skops file may hold. Promotion to a ``guarded_aliases`` alias
    runs the gates and is refused when one fails, unless forced with a reason.
    ``gates`` holds each model's gates by name; models without an entry use
    the defaults of ``GateSettings``.
    """

    trusted_publishers: tuple[str, ...] = ()
    trusted_types: tuple[str, ...] = ()
    guarded_aliases: tuple[str, ...] = ("production",)
    convert_onnx: bool = True
    gates: dict[str, GateSettings] = {}

    def gates_for(self, model: str) -> GateSettings:
        """The gates of ``model``: its own entry, or the defaults."""
        return self.gates.get(model, GateSettings())


class AgentSettings(_Section):
    """The agent: how often it polls, its lease, cron's time zone and the command it launches.

    ``command`` is the prefix a schedule's target is appended to (default:
    ``python -m mlcycle --home HOME pipelines run``). Agents that share a
    ``group`` take turns through one lease and one event cursor.
    """

    poll_interval_s: float = Field(default=5.0, gt=0)
    lease_ttl_s: float = Field(default=60.0, gt=0)
    group: str = Field(default="default", min_length=1, max_length=100)
    timezone: str = "UTC"
    command: tuple[str, ...] | None = None
    launch_timeout_s: float | None = Field(default=None, gt=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: PLC0415  (rarely set)

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r}; use a name such as 'Europe/Paris'"
            ) from exc
        return value


class AlertRuleSettings(_Section):
    """One alert rule, ``[alerts.rules.NAME]``: its condition, severity, scope and notifiers.

    ``when`` is a rule expression over monitor results, such as
    ``drift_share > 0.3 for 2 windows`` (checked by ``mlcycle alerts rules``).
    ``deployments`` limits the rule to those deployments (empty: every one).
    ``cooldown`` (``30m``, ``1h``, ``2d``) is how long after resolving a new
    firing counts as the same incident flapping: reopened, not notified again.
    ``notify`` names notifiers of ``[alerts.notifiers]``.
    """

    when: str
    severity: Literal["info", "warning", "critical"] = "warning"
    deployments: tuple[str, ...] = ()
    cooldown: str = "1h"
    notify: tuple[str, ...] = ()
    description: str = ""


class NotifierSettings(_Section):
    """One notifier, ``[alerts.notifiers.NAME]``: where alert messages go.

    ``kind`` is ``webhook`` (``url``; ``format`` ``slack`` sends Slack's
    ``text`` and ``blocks``, ``json`` the whole alert), ``file`` (JSON lines
    appended to ``path``, relative to the project), ``email`` (SMTP: ``host``,
    ``port``, ``security``, ``sender``, ``to``, and ``username`` with a
    ``password`` kept in ``.mlcycle/secrets.toml``), or a kind an installed
    package adds through the ``mlcycle.notifiers`` entry points, which reads
    ``options``. Every send gives up after ``timeout_s`` and is retried later.
    """

    kind: str
    url: str | None = None
    format: Literal["slack", "json"] = "slack"
    path: Path | None = None
    host: str | None = None
    port: int | None = None
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str | None = None
    password: SecretStr | None = None
    sender: str | None = None
    to: tuple[str, ...] = ()
    timeout_s: float = Field(default=5.0, gt=0)
    options: dict[str, Any] = {}  # Any: TOML values a third-party notifier reads


class AlertSettings(_Section):
    """Alerting: the rules, the notifiers, and how failed notifications are retried.

    A notification that fails is kept and tried again after
    ``retry_initial_s``, doubling up to ``retry_max_s``, at most
    ``max_attempts`` times; then it is marked failed (and an
    ``alert.delivery_failed`` event says so).
    """

    rules: dict[str, AlertRuleSettings] = {}
    notifiers: dict[str, NotifierSettings] = {}
    max_attempts: int = Field(default=8, ge=1)
    retry_initial_s: float = Field(default=30.0, gt=0)
    retry_max_s: float = Field(default=3600.0, gt=0)


DriftTestName = Literal["ks", "wasserstein", "chi2", "jensenshannon", "psi"]


class MonitorSettings(_Section):
    """How one deployment is monitored, ``[monitors.NAME]``; every key is optional.

    ``window`` is the default window length (``1h``, ``1d``); ``features`` the
    inputs tested for drift (default: every input of the model's signature);
    ``numeric_test`` and ``categorical_test`` choose the drift tests, ``tests``
    and ``thresholds`` override them per feature; ``drift_share`` is the share
    of drifted features that counts as dataset drift. ``label_column`` is the
    column ``mc.serve.join_labels`` reads by default (the report names it),
    ``task`` overrides the task read from the model (``regression`` or
    ``classification``), ``positive_label`` is the class
    precision, recall and f1 are about, and ``slices`` lists input columns
    whose values each get their own performance metrics.
    """

    window: str = "1d"
    features: tuple[str, ...] | None = None
    numeric_test: DriftTestName = "ks"
    categorical_test: DriftTestName = "chi2"
    tests: dict[str, DriftTestName] = {}
    thresholds: dict[str, float] = {}
    drift_share: float = Field(default=0.5, gt=0, le=1)
    label_column: str | None = None
    task: Literal["regression", "classification"] | None = None
    positive_label: str | int | None = None
    slices: tuple[str, ...] = ()

    @field_validator("window")
    @classmethod
    def _a_duration(cls, value: str) -> str:
        if not re.fullmatch(r"\s*\d+(\.\d+)?\s*[smhdw]\s*", value, flags=re.IGNORECASE):
            raise ValueError(f"{value!r} is not a window length; write one such as 6h, 1d or 1w")
        return value


class PipelineSettings(_Section):
    """One pipeline's settings: parameter values that override the defaults in its code.

    ``[pipelines.training.params]`` with ``n_estimators = 200`` runs ``training``
    with 200 unless the call or the command line gives another value.
    """

    params: dict[str, Any] = {}  # Any: TOML values, checked against the pipeline's parameters


class ServeSettings(_Section):
    """The model server: where it listens, its workers, micro-batching and load limits.

    A predict call takes up to ``max_batch_size`` rows from concurrent
    requests and waits at most ``max_batch_wait_ms`` for more to arrive.
    Beyond ``max_inflight`` requests in one worker, new ones get 503; bodies
    over ``max_body_bytes`` get 413 and requests over ``max_rows`` rows 422.
    Servers poll the event log every ``poll_interval_s`` seconds for moved
    aliases and changed deployments; copies for a shadow variant's process
    wait in a backlog of ``shadow_queue`` rows, and are dropped first when it
    is full.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    max_batch_size: int = Field(default=64, ge=1)
    max_batch_wait_ms: float = Field(default=1.0, ge=0, le=1000)
    max_inflight: int = Field(default=256, ge=1)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_rows: int = Field(default=10_000, ge=1)
    poll_interval_s: float = Field(default=1.0, gt=0, le=60)
    shadow_queue: int = Field(default=4_096, ge=1)
    token_file: Path | None = None


class Settings(BaseSettings):
    """Everything mlcycle is configured by; derived locations are properties."""

    model_config = SettingsConfigDict(
        env_prefix="MLCYCLE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    home: Path = Field(default_factory=Path.cwd)
    actor: str = Field(default_factory=getpass.getuser)
    store: StoreSettings = StoreSettings()
    tracking: TrackingSettings = TrackingSettings()
    clock: ClockSettings = ClockSettings()
    data: DataSettings = DataSettings()
    registry: RegistrySettings = RegistrySettings()
    agent: AgentSettings = AgentSettings()
    serve: ServeSettings = ServeSettings()
    alerts: AlertSettings = AlertSettings()
    monitors: dict[str, MonitorSettings] = {}
    pipelines: dict[str, PipelineSettings] = {}
    deployments: dict[str, dict[str, Any]] = {}  # Any: TOML values, checked by mlcycle.serve
    training: dict[str, dict[str, Any]] = {}  # Any: TOML values, checked by mlcycle.agent

    @property
    def workspace_dir(self) -> Path:
        """The project's ``.mlcycle/`` folder."""
        return self.home / WORKSPACE_DIR

    @property
    def metadata_url(self) -> str:
        """The SQLAlchemy URL of the metadata store."""
        return self.store.metadata_url or f"sqlite:///{self.workspace_dir / 'mlcycle.db'}"

    @property
    def artifacts_url(self) -> str:
        """The root of the artifact store: a local path or ``s3://bucket/prefix``."""
        return self.store.artifacts_url or str(self.workspace_dir / "artifacts")

    @property
    def clock_state_file(self) -> Path:
        """Where a simulated clock keeps its time, shared by every process of the project."""
        return self.clock.state_file or self.workspace_dir / "clock.json"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order the layers: code and CLI, environment, secrets file, ``mlcycle.toml``."""
        init_kwargs: dict[str, Any] = getattr(init_settings, "init_kwargs", {})
        home = Path(init_kwargs.get("home") or os.environ.get("MLCYCLE_HOME") or Path.cwd())
        return (
            init_settings,
            env_settings,
            _TomlLayer(settings_cls, home / WORKSPACE_DIR / SECRETS_FILE, secrets_allowed=True),
            _TomlLayer(settings_cls, home / CONFIG_FILE, secrets_allowed=False),
        )


class _TomlLayer(PydanticBaseSettingsSource):
    """One TOML file as a settings layer; a missing file is an empty layer."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path, *, secrets_allowed: bool):
        super().__init__(settings_cls)
        self.path = path
        self.data = _read_toml(path)
        if not secrets_allowed:
            _refuse_secrets(self.data, path)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ValidationFailed(
            f"{path} is not valid TOML: {exc}; fix the file or remove it"
        ) from exc
    except OSError as exc:
        raise WorkspaceError(f"cannot read {path}: {exc.strerror}") from exc


def _refuse_secrets(data: Mapping[str, Any], path: Path, prefix: str = "") -> None:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _refuse_secrets(value, path, f"{dotted}.")
        elif key in _SECRET_KEYS or (isinstance(value, str) and _has_password(value)):
            env = "MLCYCLE_" + dotted.upper().replace(".", "__")
            raise ValidationFailed(
                f"{path} holds a credential at '{dotted}'; mlcycle.toml is meant to be committed. "
                f"Move it to {WORKSPACE_DIR}/{SECRETS_FILE} (untracked) or the environment ({env})"
            )


def _has_password(url: str) -> bool:
    _scheme, sep, rest = url.partition("://")
    authority = rest.split("/", 1)[0]
    return bool(sep) and "@" in authority and ":" in authority.split("@", 1)[0]


def find_project_root(start: Path | None = None) -> Path | None:
    """Return the nearest folder at or above ``start`` that holds ``mlcycle.toml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    return None


def load_settings(start: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings for the project found from ``start`` (default: the working directory).

    ``overrides`` are the strongest layer, as command-line flags are. Without a
    project above ``start``, ``start`` itself is the home.
    """
    if "home" not in overrides:
        env_home = os.environ.get("MLCYCLE_HOME")
        root = Path(env_home) if env_home else find_project_root(start)
        overrides["home"] = root or (start or Path.cwd()).resolve()
    try:
        return Settings(**overrides)
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise ValidationFailed(
            f"invalid settings ({problems}); check {CONFIG_FILE}, "
            f"{WORKSPACE_DIR}/{SECRETS_FILE} and MLCYCLE_* variables"
        ) from exc
