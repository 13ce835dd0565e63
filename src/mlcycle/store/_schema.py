"""The metadata tables, one definition for SQLite and PostgreSQL.

Times are stored as float seconds since the epoch: the same type and the same
ordering on every backend, and what metric timestamps are anyway. In
``latest_metrics``, NaN values are stored as NULL with ``is_nan`` set, because
SQLite turns NaN into NULL on its own; infinities are stored as they are.
Metric history is kept in ``metric_chunks``: one row per run and key per
write, holding that write's points packed in ``data`` (``_metric_chunks``,
ADR 0006), where NaN and the infinities are plain float64.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = [
    "agent_leases",
    "alert_deliveries",
    "alert_rule_states",
    "alerts",
    "alias_moves",
    "artifacts",
    "dataset_versions",
    "datasets",
    "deployments",
    "environments",
    "event_cursors",
    "events",
    "experiments",
    "latest_metrics",
    "lineage_edges",
    "metadata",
    "metric_chunks",
    "model_aliases",
    "model_versions",
    "monitor_results",
    "params",
    "pipeline_runs",
    "registered_models",
    "runs",
    "schedules",
    "step_runs",
    "tags",
    "trigger_firings",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_ID = String(26)
_KEY = String(250)
_REF = String(1000)
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
_SERIAL = BigInteger().with_variant(Integer(), "sqlite")

experiments = Table(
    "experiments",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("name", String(256), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("actor", String(256), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("experiment_id", _ID, ForeignKey("experiments.id"), nullable=False),
    Column("name", String(256), nullable=False),
    Column("parent_id", _ID, ForeignKey("runs.id"), nullable=True, index=True),
    Column("status", String(16), nullable=False),
    Column("start_time", Float, nullable=False),
    Column("end_time", Float, nullable=True),
    Column("heartbeat_at", Float, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("environment_digest", String(80), nullable=True),
    Column("git_commit", String(64), nullable=True),
    Column("git_dirty", Boolean, nullable=True),
    Column("command", Text, nullable=True),
    Column("seed", BigInteger, nullable=True),
    Column("error_type", String(256), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("error_traceback", Text, nullable=True),
    Index(None, "experiment_id", "start_time"),
    Index(None, "status", "heartbeat_at"),
)

params = Table(
    "params",
    metadata,
    Column("run_id", _ID, ForeignKey("runs.id"), primary_key=True),
    Column("key", _KEY, primary_key=True),
    Column("value", Text, nullable=False),
    Index(None, "key", "value"),
)

tags = Table(
    "tags",
    metadata,
    Column("run_id", _ID, ForeignKey("runs.id"), primary_key=True),
    Column("key", _KEY, primary_key=True),
    Column("value", Text, nullable=False),
    Index(None, "key"),
)

metric_chunks = Table(
    "metric_chunks",
    metadata,
    Column("id", _SERIAL, primary_key=True, autoincrement=True),
    Column("run_id", _ID, ForeignKey("runs.id"), nullable=False),
    Column("key", _KEY, nullable=False),
    Column("count", Integer, nullable=False),
    Column("min_step", BigInteger, nullable=False),
    Column("max_step", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Index(None, "run_id", "key"),
)

latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_id", _ID, ForeignKey("runs.id"), primary_key=True),
    Column("key", _KEY, primary_key=True),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", Float, nullable=False),
    Column("value", Float, nullable=True),
    Column("is_nan", Boolean, nullable=False),
    Index(None, "key", "value"),
)

environments = Table(
    "environments",
    metadata,
    Column("digest", String(80), primary_key=True),
    Column("python", String(64), nullable=False),
    Column("platform", String(256), nullable=False),
    Column("packages", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("run_id", _ID, ForeignKey("runs.id"), primary_key=True),
    Column("name", String(1000), primary_key=True),
    Column("digest", String(80), nullable=False, index=True),
    Column("size", BigInteger, nullable=False),
    Column("media_type", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("position", _SERIAL, primary_key=True, autoincrement=True),
    Column("id", _ID, nullable=False, unique=True),
    Column("time", Float, nullable=False),
    Column("type", String(128), nullable=False, index=True),
    Column("subject", _REF, nullable=False, index=True),
    Column("actor", String(256), nullable=False),
    Column("payload", Text, nullable=False),
)

event_cursors = Table(
    "event_cursors",
    metadata,
    Column("consumer", String(256), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", Float, nullable=False),
)

lineage_edges = Table(
    "lineage_edges",
    metadata,
    Column("source", _REF, primary_key=True),
    Column("target", _REF, primary_key=True, index=True),
    Column("kind", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("actor", String(256), nullable=False),
)

datasets = Table(
    "datasets",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("time_column", String(256), nullable=True),
    Column("key", Text, nullable=False),
    Column("description", Text, nullable=True),
    Column("lock_owner", String(64), nullable=True),
    Column("lock_until", Float, nullable=True),
    Column("table_path", String(512), nullable=True),
)

dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("name", String(128), ForeignKey("datasets.name"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("rows", BigInteger, nullable=False),
    Column("columns", Text, nullable=False),
    Column("digest", String(80), nullable=False, index=True),
    Column("created_at", Float, nullable=False),
    Column("source", Text, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("delta_version", BigInteger, nullable=False),
    Column("operation", String(16), nullable=False),
    Column("profile_digest", String(80), nullable=True),
    Column("policy", Text, nullable=False),
    Column("description", Text, nullable=True),
)

registered_models = Table(
    "registered_models",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("description", Text, nullable=True),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("name", String(128), ForeignKey("registered_models.name"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("flavor", String(64), nullable=False),
    Column("digest", String(80), nullable=False, index=True),
    Column("signature", Text, nullable=False),
    Column("run_id", _ID, nullable=True, index=True),
    Column("dataset_versions", Text, nullable=False),
    Column("code_version", String(80), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("safe", Boolean, nullable=False),
    Column("files", Text, nullable=False),
    Column("metrics", Text, nullable=False),
    Column("tags", Text, nullable=False),
    Column("params", Text, nullable=False),
    Column("description", Text, nullable=True),
    Column("limitations", Text, nullable=True),
    Column("evaluation", Text, nullable=True),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("name", String(128), ForeignKey("registered_models.name"), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)

alias_moves = Table(
    "alias_moves",
    metadata,
    Column("id", _SERIAL, primary_key=True, autoincrement=True),
    Column("name", String(128), ForeignKey("registered_models.name"), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("kind", String(16), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("time", Float, nullable=False),
    Column("reason", Text, nullable=True),
    Column("forced", Boolean, nullable=False),
    Column("gates", Text, nullable=True),
    Column("position", BigInteger, nullable=False),
    Index(None, "name", "alias"),
)

schedules = Table(
    "schedules",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("target", String(1000), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("spec", String(256), nullable=False),
    Column("params", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("added_position", BigInteger, nullable=False),
    Column("last_fired_at", Float, nullable=True),
    Column("last_fired_tick", Float, nullable=True),
)

# No foreign key to schedules: the firings of a removed schedule stay as its history.
trigger_firings = Table(
    "trigger_firings",
    metadata,
    Column("schedule", String(128), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("trigger", String(16), nullable=False),
    Column("fired_at", Float, nullable=False, index=True),
    Column("agent", String(256), nullable=False),
    Column("tick", Float, nullable=True),
    Column("position", BigInteger, nullable=True),
    Column("command", Text, nullable=True),
    Column("pid", Integer, nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("finished_at", Float, nullable=True),
)

deployments = Table(
    "deployments",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("policy", String(16), nullable=False),
    Column("variants", Text, nullable=False),
    Column("sticky_key", String(256), nullable=True),
    Column("key_columns", Text, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("actor", String(256), nullable=False),
)

agent_leases = Table(
    "agent_leases",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("holder", String(256), nullable=False),
    Column("expires_at", Float, nullable=False),
)

pipeline_runs = Table(
    "pipeline_runs",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("pipeline", String(256), nullable=False),
    Column("target", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("params", Text, nullable=False),
    Column("param_sources", Text, nullable=False),
    Column("datasets", Text, nullable=False),
    Column("code_digest", String(80), nullable=False),
    Column("executor", String(256), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    Column("run_id", _ID, nullable=True),
    Column("error", Text, nullable=True),
    Column("resumes", Integer, nullable=False),
    Column("code_changed", Boolean, nullable=False),
    Index(None, "pipeline", "created_at"),
    Index(None, "status", "heartbeat_at"),
)

step_runs = Table(
    "step_runs",
    metadata,
    Column("pipeline_run_id", _ID, ForeignKey("pipeline_runs.id"), primary_key=True),
    Column("step", String(256), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("upstream", Text, nullable=False),
    Column("params", Text, nullable=False),
    Column("inputs", Text, nullable=False),
    Column("outputs", Text, nullable=False),
    Column("code_digest", String(80), nullable=True),
    Column("cache_key", String(80), nullable=True, index=True),
    Column("cached_from", _ID, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("duration_s", Float, nullable=True),
    Column("run_id", _ID, nullable=True),
    Column("logs", Text, nullable=False),
    Column("error", Text, nullable=True),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("rule", String(128), nullable=False),
    Column("deployment", String(128), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("expression", Text, nullable=False),
    Column("fired_at", Float, nullable=False),
    Column("window_end", Float, nullable=False),
    Column("windows", Text, nullable=False),
    Column("why", Text, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("resolved_at", Float, nullable=True),
    Column("resolved_window_end", Float, nullable=True),
    Column("flaps", Integer, nullable=False),
    Index(None, "state", "fired_at"),
    Index(None, "rule", "deployment"),
)

# No foreign key to alerts: a rule's state outlives nothing, and alert_id may name none yet.
alert_rule_states = Table(
    "alert_rule_states",
    metadata,
    Column("rule", String(128), primary_key=True),
    Column("deployment", String(128), primary_key=True),
    Column("streak", Integer, nullable=False),
    Column("last_window_end", Float, nullable=True),
    Column("recent", Text, nullable=False),
    Column("alert_id", _ID, nullable=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)

alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("alert_id", _ID, ForeignKey("alerts.id"), nullable=False, index=True),
    Column("notifier", String(128), nullable=False),
    Column("event", String(128), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("delivered_at", Float, nullable=True),
    Column("claimed_by", String(256), nullable=True),
    Column("claimed_until", Float, nullable=True),
    Index(None, "status", "next_attempt_at"),
)

# One row per metric of a monitored window: a long time series, read by metric and time range.
monitor_results = Table(
    "monitor_results",
    metadata,
    Column("deployment", String(128), primary_key=True),
    Column("window_end", Float, primary_key=True),
    Column("window_start", Float, primary_key=True),
    Column("metric", String(512), primary_key=True),
    Column("value", Float, nullable=True),
    Column("recorded_at", Float, nullable=False),
    Index(None, "deployment", "metric", "window_end"),
)
