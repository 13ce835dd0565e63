"""The run-search language against real SQLite and PostgreSQL databases and a Python oracle.

Every search here runs the SQL that ``compile_search`` builds on a real database
filled with Core inserts, and compares the run ids with what plain Python says
the expression means.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from mlcycle.errors import QuerySyntaxError, ValidationFailed
from mlcycle.ids import new_id
from mlcycle.store._query import (
    Comparison,
    Field,
    OrderKey,
    String,
    check_where,
    compile_search,
    parse_order_by,
    parse_where,
    quote_key,
    quote_string,
)
from mlcycle.store._schema import experiments, latest_metrics, metadata, params, runs, tags

NAN = math.nan
INF = math.inf


@dataclass
class RunRow:
    """One run as the oracle sees it."""

    id: str
    experiment: str
    name: str
    status: str
    start_time: float
    end_time: float | None
    actor: str
    parent_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


EXPERIMENTS = {"E0000000000000000000000001": "bike", "E0000000000000000000000002": "churn"}
MODELS = ["gbm", "linear", "mean", "Gbm"]
RMSE = [12.5, 40.0, 41.2, 45.0, NAN, INF, -INF, 0.0, -3.5, 1e-9, 40.0, 99.0]
NOTES = [
    "it's",
    'say "hi"',
    "'; DROP TABLE runs; --",
    "100% sure",
    "a_b",
    "C:\\dir",
    "plain",
    "ünï",
]


def make_runs() -> list[RunRow]:
    rows = []
    for i in range(36):
        run = RunRow(
            id=f"R{i:025d}",
            experiment=list(EXPERIMENTS)[i % 2],
            name=f"run-{i}",
            status=["finished", "failed", "running", "killed"][i % 4],
            start_time=1000.0 + (i // 3) * 10,  # three runs share each start time
            end_time=None if i % 4 == 2 else 2000.0 + i,
            actor="ana" if i % 3 else "bo",
            parent_id=f"R{i - 1:025d}" if i % 5 == 4 else None,
        )
        if i % 7 != 6:
            run.metrics["rmse"] = RMSE[i % len(RMSE)]
        if i % 2 == 0:
            run.metrics["mae"] = float(i) - 10
        if i % 3 == 0:
            run.metrics["val loss"] = i / 40
            run.metrics["val/loss"] = -i / 40
        if i % 6 != 5:
            run.params["model"] = MODELS[i % len(MODELS)]
        run.params["lr"] = ["0.1", "0.01", "1e-3", "0.10"][i % 4]
        run.tags["note"] = NOTES[i % len(NOTES)]
        if i % 4 == 1:
            run.tags["owner"] = "ana"
        rows.append(run)
    return rows


RUNS = make_runs()
BY_ID = {run.id: run for run in RUNS}


def insert(engine: sa.Engine, rows: list[RunRow]) -> None:
    with engine.begin() as conn:
        conn.execute(
            experiments.insert(),
            [{"id": i, "name": n, "created_at": 0.0, "actor": "t"} for i, n in EXPERIMENTS.items()],
        )
        conn.execute(
            runs.insert(),
            [
                {
                    "id": r.id,
                    "experiment_id": r.experiment,
                    "name": r.name,
                    "parent_id": None,
                    "status": r.status,
                    "start_time": r.start_time,
                    "end_time": r.end_time,
                    "heartbeat_at": r.start_time,
                    "actor": r.actor,
                }
                for r in rows
            ],
        )
        for r in rows:
            if r.parent_id:
                conn.execute(runs.update().where(runs.c.id == r.id).values(parent_id=r.parent_id))
        conn.execute(
            latest_metrics.insert(),
            [metric_row(r.id, k, v) for r in rows for k, v in r.metrics.items()],
        )
        conn.execute(
            params.insert(),
            [{"run_id": r.id, "key": k, "value": v} for r in rows for k, v in r.params.items()],
        )
        conn.execute(
            tags.insert(),
            [{"run_id": r.id, "key": k, "value": v} for r in rows for k, v in r.tags.items()],
        )


def metric_row(run_id: str, key: str, value: float) -> dict[str, Any]:
    nan = math.isnan(value)
    return {
        "run_id": run_id,
        "key": key,
        "step": 0,
        "timestamp": 0.0,
        "value": None if nan else value,
        "is_nan": nan,
    }


@pytest.fixture(scope="module")
def module_postgres_url() -> Iterator[str]:
    """A PostgreSQL database shared by this module's tests (they only read the fixed rows).

    Like conftest's ``postgres_url``, which is per test: creating and dropping a
    database costs about a second here, and these tests need a dozen of them.
    """
    psycopg = pytest.importorskip("psycopg")
    admin_url = os.environ.get("MLCYCLE_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        if os.environ.get("MLCYCLE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"PostgreSQL at {admin_url} is not available", pytrace=False)
        pytest.skip(f"PostgreSQL at {admin_url} is not available")
    name = f"mlcycle_q_{new_id().lower()}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        yield f"{base}/{name}"
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sa.Engine]:
    """A real database holding RUNS: a SQLite file or a PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('query') / 'runs.db'}"
    else:
        url = request.getfixturevalue("module_postgres_url")
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    insert(engine, RUNS)
    yield engine
    engine.dispose()


def search(
    engine: sa.Engine,
    where: str | None,
    *,
    order_by: list[str] | None = None,
    experiment_ids: list[str] | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> list[str]:
    query = compile_search(
        experiment_ids=experiment_ids,
        where=where,
        order_by=order_by or [],
        limit=limit,
        offset=offset,
    )
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


def counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (experiments, runs, params, tags, latest_metrics)
        }


# --- the oracle --------------------------------------------------------------------------------


def metric(run: RunRow, key: str, test: Callable[[float], bool]) -> bool:
    """A metric comparison: false when the run lacks the metric or its latest value is NaN."""
    value = run.metrics.get(key)
    return value is not None and not math.isnan(value) and test(value)


def is_nan(run: RunRow, key: str) -> bool:
    value = run.metrics.get(key)
    return value is not None and math.isnan(value)


def text(values: dict[str, str], key: str, test: Callable[[str], bool]) -> bool:
    value = values.get(key)
    return value is not None and test(value)


RUN1 = RUNS[1].id
RUN4 = RUNS[4].id
CASES: list[tuple[str, Callable[[RunRow], bool]]] = [
    ("metrics.rmse < 40", lambda r: metric(r, "rmse", lambda v: v < 40)),
    ("metrics.rmse <= 40", lambda r: metric(r, "rmse", lambda v: v <= 40)),
    ("metrics.rmse > 40", lambda r: metric(r, "rmse", lambda v: v > 40)),
    ("metrics.rmse >= 41.2", lambda r: metric(r, "rmse", lambda v: v >= 41.2)),
    ("metrics.rmse = 40", lambda r: metric(r, "rmse", lambda v: v == 40)),
    ("metrics.rmse == 4e1", lambda r: metric(r, "rmse", lambda v: v == 40)),
    ("metrics.rmse != 40", lambda r: metric(r, "rmse", lambda v: v != 40)),
    ("metrics.rmse <> 40", lambda r: metric(r, "rmse", lambda v: v != 40)),
    ("metrics.rmse > -3.5", lambda r: metric(r, "rmse", lambda v: v > -3.5)),
    ("metrics.rmse < .5e-8", lambda r: metric(r, "rmse", lambda v: v < 0.5e-8)),
    ("metrics.rmse = nan", lambda r: is_nan(r, "rmse")),
    ("metrics.rmse = NaN", lambda r: is_nan(r, "rmse")),
    ("metrics.rmse != nan", lambda r: metric(r, "rmse", lambda v: True)),
    ("metrics.rmse = inf", lambda r: metric(r, "rmse", lambda v: v == INF)),
    ("metrics.rmse = -Infinity", lambda r: metric(r, "rmse", lambda v: v == -INF)),
    ("metrics.rmse < inf", lambda r: metric(r, "rmse", lambda v: v < INF)),
    ("metrics.rmse > -inf", lambda r: metric(r, "rmse", lambda v: v > -INF)),
    ("metrics.rmse in (40, 12.5)", lambda r: metric(r, "rmse", lambda v: v in {40, 12.5})),
    (
        "metrics.rmse in (40, nan)",
        lambda r: metric(r, "rmse", lambda v: v == 40) or is_nan(r, "rmse"),
    ),
    ("metrics.rmse in (nan)", lambda r: is_nan(r, "rmse")),
    ("metrics.rmse not in (40, 12.5,)", lambda r: metric(r, "rmse", lambda v: v not in {40, 12.5})),
    ("metrics.rmse not in (nan)", lambda r: metric(r, "rmse", lambda v: True)),
    ("metrics.rmse is null", lambda r: "rmse" not in r.metrics),
    ("metrics.rmse IS NOT NULL", lambda r: "rmse" in r.metrics),
    ("not metrics.rmse < 40", lambda r: not metric(r, "rmse", lambda v: v < 40)),
    ("NOT NOT metrics.rmse < 40", lambda r: metric(r, "rmse", lambda v: v < 40)),
    ("not metrics.rmse = nan", lambda r: not is_nan(r, "rmse")),
    ("metrics.`val loss` >= 0.3", lambda r: metric(r, "val loss", lambda v: v >= 0.3)),
    ("metrics.val/loss < -0.3", lambda r: metric(r, "val/loss", lambda v: v < -0.3)),
    ("params.lr = 0.1", lambda r: r.params["lr"] == "0.1"),
    ("params.lr = '0.1'", lambda r: r.params["lr"] == "0.1"),
    ("params.lr = 0.10", lambda r: r.params["lr"] == "0.10"),
    ("params.lr = 1e-3", lambda r: r.params["lr"] == "1e-3"),
    ("params.model = 'gbm'", lambda r: text(r.params, "model", lambda v: v == "gbm")),
    ('params.model = "gbm"', lambda r: text(r.params, "model", lambda v: v == "gbm")),
    ("params.model != 'gbm'", lambda r: text(r.params, "model", lambda v: v != "gbm")),
    ("params.model > 'h'", lambda r: text(r.params, "model", lambda v: v > "h")),
    ("params.model <= 'Gbm'", lambda r: text(r.params, "model", lambda v: v <= "Gbm")),
    ("params.model like 'g%'", lambda r: text(r.params, "model", lambda v: v.startswith("g"))),
    ("params.model LIKE 'G%'", lambda r: text(r.params, "model", lambda v: v.startswith("G"))),
    ("params.model like 'g_m'", lambda r: text(r.params, "model", lambda v: v == "gbm")),
    (
        "params.model ilike 'G%'",
        lambda r: text(r.params, "model", lambda v: v.lower().startswith("g")),
    ),
    (
        "params.model in ('gbm', 'mean')",
        lambda r: text(r.params, "model", lambda v: v in {"gbm", "mean"}),
    ),
    ("params.model not in ('gbm')", lambda r: text(r.params, "model", lambda v: v != "gbm")),
    ("params.model is null", lambda r: "model" not in r.params),
    ("not params.model in ('gbm')", lambda r: r.params.get("model") != "gbm"),
    ("tags.note = 'it''s'", lambda r: r.tags["note"] == "it's"),
    ("tags.note = 'it\\'s'", lambda r: r.tags["note"] == "it's"),
    ('tags.note = "say \\"hi\\""', lambda r: r.tags["note"] == 'say "hi"'),
    ('tags.note = "say ""hi"""', lambda r: r.tags["note"] == 'say "hi"'),
    ("tags.note = '''; DROP TABLE runs; --'", lambda r: r.tags["note"] == "'; DROP TABLE runs; --"),
    ("tags.note = 'C:\\dir'", lambda r: r.tags["note"] == "C:\\dir"),
    ("tags.note = 'C:\\\\dir'", lambda r: r.tags["note"] == "C:\\dir"),
    ("tags.note like '%\\%%'", lambda r: "%" in r.tags["note"]),
    ("tags.note like '%\\_%'", lambda r: "_" in r.tags["note"]),
    ("tags.note like '%\\\\\\\\%'", lambda r: "\\" in r.tags["note"]),
    ("tags.note like '%[%'", lambda r: False),
    ("tags.note like '%*%'", lambda r: False),
    ("tags.note like '100\\% su_e'", lambda r: r.tags["note"] == "100% sure"),
    ("tags.note = 'ünï'", lambda r: r.tags["note"] == "ünï"),
    ("tags.owner = 'ana'", lambda r: r.tags.get("owner") == "ana"),
    ("tags.owner is not null", lambda r: "owner" in r.tags),
    ("status = 'finished'", lambda r: r.status == "finished"),
    ("status = 'FINISHED'", lambda r: r.status == "finished"),
    ("attributes.status in ('failed', 'Killed')", lambda r: r.status in {"failed", "killed"}),
    ("status != 'running'", lambda r: r.status != "running"),
    ("status not in ('running')", lambda r: r.status != "running"),
    ("status like 'f%'", lambda r: r.status.startswith("f")),
    ("name = 'run-3'", lambda r: r.name == "run-3"),
    (
        "attributes.run_name like 'run-1_'",
        lambda r: len(r.name) == 6 and r.name.startswith("run-1"),
    ),
    ("name ilike 'RUN-2%'", lambda r: r.name.startswith("run-2")),
    ("name > 'run-3'", lambda r: r.name > "run-3"),
    (f"run_id = '{RUN1}'", lambda r: r.id == RUN1),
    (f"attributes.run_id in ('{RUN1}', '{RUN4}')", lambda r: r.id in {RUN1, RUN4}),
    ("parent_id is null", lambda r: r.parent_id is None),
    (f"parent_id = '{RUNS[3].id}'", lambda r: r.parent_id == RUNS[3].id),
    ("actor = 'bo'", lambda r: r.actor == "bo"),
    ("user_id = 'ana'", lambda r: r.actor == "ana"),
    ("experiment = 'churn'", lambda r: EXPERIMENTS[r.experiment] == "churn"),
    ("experiment_id = 'E0000000000000000000000001'", lambda r: r.experiment.endswith("1")),
    ("start_time > 1050", lambda r: r.start_time > 1050),
    ("start_time >= '1970-01-01T00:17:30Z'", lambda r: r.start_time >= 1050),
    ("start_time >= '1970-01-01T01:17:30+01:00'", lambda r: r.start_time >= 1050),
    ("start_time < '1970-01-01 00:17:30'", lambda r: r.start_time < 1050),
    ("start_time in (1000, 1010)", lambda r: r.start_time in {1000, 1010}),
    ("end_time is null", lambda r: r.end_time is None),
    ("end_time > 2030", lambda r: r.end_time is not None and r.end_time > 2030),
    ("not end_time > 2030", lambda r: not (r.end_time is not None and r.end_time > 2030)),
    (
        "(metrics.rmse < 41 or metrics.mae < 0) and not status = 'failed'",
        lambda r: (
            (metric(r, "rmse", lambda v: v < 41) or metric(r, "mae", lambda v: v < 0))
            and r.status != "failed"
        ),
    ),
    (
        "metrics.rmse < 41 OR params.model = 'linear' AND tags.owner = 'ana'",
        lambda r: (
            metric(r, "rmse", lambda v: v < 41)
            or (r.params.get("model") == "linear" and r.tags.get("owner") == "ana")
        ),
    ),
    (
        "metrics.rmse > 0 and metrics.rmse < 50 and metrics.mae >= -4",
        lambda r: metric(r, "rmse", lambda v: 0 < v < 50) and metric(r, "mae", lambda v: v >= -4),
    ),
    (
        "Metrics.rmse < 41 And PARAMS.model Like 'g%' aNd nOt TAGS.note iS NuLl",
        lambda r: metric(r, "rmse", lambda v: v < 41) and r.params.get("model", "").startswith("g"),
    ),
]


def test_expressions_select_what_the_oracle_says(engine: sa.Engine) -> None:
    wrong = []
    for expression, oracle in CASES:
        expected = {run.id for run in RUNS if oracle(run)}
        found = search(engine, expression)
        if set(found) != expected or len(found) != len(expected):
            wrong.append(
                f"{expression}: extra {set(found) - expected}, missing {expected - set(found)}"
            )
    assert wrong == []


def test_the_dataset_makes_the_cases_meaningful() -> None:
    # A case that matches nothing or everything would not catch much.
    trivial = [e for e, oracle in CASES if len({r.id for r in RUNS if oracle(r)}) in {0, len(RUNS)}]
    assert set(trivial) == {"tags.note like '%[%'", "tags.note like '%*%'"}


def test_experiment_ids_limit_the_search(engine: sa.Engine) -> None:
    first, second = EXPERIMENTS
    assert set(search(engine, None, experiment_ids=[first])) == {
        r.id for r in RUNS if r.experiment == first
    }
    assert set(search(engine, "metrics.rmse < 41", experiment_ids=[second])) == {
        r.id for r in RUNS if r.experiment == second and metric(r, "rmse", lambda v: v < 41)
    }
    assert search(engine, None, experiment_ids=[]) == []
    assert len(search(engine, None, experiment_ids=None)) == len(RUNS)


# --- ordering and pages -------------------------------------------------------------------------


def oracle_order(key: Callable[[RunRow], Any], *, descending: bool = False) -> list[str]:
    """Runs without a value last, then newest first, then by id: what every page relies on."""
    base = sorted(RUNS, key=lambda r: (-r.start_time, r.id))
    present = [r for r in base if key(r) is not None]
    missing = [r for r in base if key(r) is None]
    return [r.id for r in sorted(present, key=key, reverse=descending) + missing]


def latest(name: str) -> Callable[[RunRow], float | None]:
    def value(run: RunRow) -> float | None:
        v = run.metrics.get(name)
        return None if v is None or math.isnan(v) else v

    return value


ORDERS: list[tuple[str, Callable[[RunRow], Any], bool]] = [
    ("metrics.rmse", latest("rmse"), False),
    ("metrics.rmse ASC", latest("rmse"), False),
    ("metrics.rmse DESC", latest("rmse"), True),
    ("metrics.`val loss` desc", latest("val loss"), True),
    ("params.model", lambda r: r.params.get("model"), False),
    ("params.model DESC", lambda r: r.params.get("model"), True),
    ("tags.note", lambda r: r.tags.get("note"), False),
    ("start_time", lambda r: r.start_time, False),
    ("start_time DESC", lambda r: r.start_time, True),
    ("end_time desc", lambda r: r.end_time, True),
    ("name", lambda r: r.name, False),
    ("status DESC", lambda r: r.status, True),
    ("experiment", lambda r: EXPERIMENTS[r.experiment], False),
    ("parent_id", lambda r: r.parent_id, False),
]


def test_order_by_sorts_missing_values_last_and_breaks_ties_stably(engine: sa.Engine) -> None:
    wrong = []
    for key, value, descending in ORDERS:
        if search(engine, None, order_by=[key]) != oracle_order(value, descending=descending):
            wrong.append(key)
    assert wrong == []


def test_default_order_is_newest_first_then_id(engine: sa.Engine) -> None:
    assert search(engine, None) == [r.id for r in sorted(RUNS, key=lambda r: (-r.start_time, r.id))]


def test_several_order_keys_apply_in_turn(engine: sa.Engine) -> None:
    def key(r: RunRow) -> tuple[Any, ...]:
        model, rmse = r.params.get("model"), latest("rmse")(r)
        return (model is None, model or "", rmse is None, -(rmse or 0), -r.start_time, r.id)

    expected = [r.id for r in sorted(RUNS, key=key)]
    assert search(engine, None, order_by=["params.model", "metrics.rmse DESC"]) == expected
    assert search(engine, None, order_by=["params.model, metrics.rmse DESC"]) == expected


def test_pages_concatenate_to_the_whole_result(engine: sa.Engine) -> None:
    where, order = "metrics.rmse is not null or params.model = 'gbm'", ["metrics.rmse"]
    whole = search(engine, where, order_by=order)
    pages = [search(engine, where, order_by=order, limit=5, offset=n) for n in range(0, 40, 5)]
    assert [run for page in pages for run in page] == whole
    assert search(engine, where, order_by=order, limit=0) == []


def test_a_plain_string_order_by_is_one_key() -> None:
    one = compile_search(experiment_ids=None, where=None, order_by="name", limit=1, offset=0)
    listed = compile_search(experiment_ids=None, where=None, order_by=["name"], limit=1, offset=0)
    assert str(one) == str(listed)


def test_negative_limit_or_offset_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="limit and offset"):
        compile_search(experiment_ids=None, where=None, order_by=[], limit=-1, offset=0)
    with pytest.raises(ValidationFailed, match="limit and offset"):
        compile_search(experiment_ids=None, where=None, order_by=[], limit=1, offset=-5)


# --- injection and bound parameters -------------------------------------------------------------


def test_a_statement_after_the_expression_is_a_syntax_error_at_the_semicolon(
    engine: sa.Engine,
) -> None:
    before = counts(engine)
    expression = "metrics.rmse < 1; DROP TABLE runs"
    with pytest.raises(QuerySyntaxError) as caught:
        search(engine, expression)
    assert caught.value.column == expression.index(";") + 1
    assert "unexpected character ';'" in str(caught.value)
    assert str(caught.value).splitlines()[-1] == "  " + " " * expression.index(";") + "^"
    assert counts(engine) == before


@pytest.mark.parametrize(
    "expression",
    [
        "metrics.rmse < 1 -- comment",
        "metrics.rmse < 1 /* x */",
        "metrics.rmse < 1) or (1 = 1",
        "name = 'x' or 1 = 1",
        "name = x",
        "name = `x`",
        "metrics.rmse < 1 union select id from runs",
    ],
)
def test_sql_fragments_do_not_parse(expression: str) -> None:
    with pytest.raises(QuerySyntaxError):
        parse_where(expression)


def test_hostile_values_match_literally_and_change_nothing(engine: sa.Engine) -> None:
    before = counts(engine)
    hostile = [
        "'; DROP TABLE runs; --",
        "x' OR '1'='1",
        '" OR ""="',
        "%",
        "_",
        "\\",
        "\\'; DELETE FROM params; --",
        "Robert'); DROP TABLE runs;--",
    ]
    newest_first = sorted(RUNS, key=lambda r: (-r.start_time, r.id))
    for value in hostile:
        assert search(engine, f"tags.note = {quote_string(value)}") == [
            r.id for r in newest_first if r.tags["note"] == value
        ]
        for expression in (
            f"name = {quote_string(value)}",
            f"params.{quote_key(value)} = {quote_string(value)}",
            f"metrics.{quote_key(value)} < 1",
            f"name in ({quote_string(value)}, 'x')",
        ):
            assert search(engine, expression) == [], expression
    assert len(search(engine, "tags.note = " + quote_string(NOTES[2]))) == 5
    assert counts(engine) == before


def test_no_user_text_reaches_the_sql() -> None:
    expression = (
        "metrics.zz_metric < 12345.678 and params.zz_param = 'qq_value'"
        " and tags.zz_tag like 'qq_like%' and name ilike 'qq_ilike' and status in ('killed')"
        " and experiment = 'qq_exp'"
        " and start_time > 987654321 and metrics.zz_nan = nan and params.zz_number = 31415"
    )
    query = compile_search(
        experiment_ids=["qq_experiment_id"],
        where=expression,
        order_by=["metrics.zz_order DESC", "params.zz_param"],
        limit=77,
        offset=88,
    )
    literals = ["zz_", "qq_", "12345", "987654321", "31415", "killed", "77", "88"]
    for sql in (
        str(query),
        str(query.compile(dialect=sqlite.dialect())),
        str(query.compile(dialect=postgresql.dialect())),
    ):
        assert [text for text in literals if text in sql] == [], sql
    bound = set()
    for value in query.compile().params.values():
        bound.update(map(str, value) if isinstance(value, list) else [str(value)])
    assert {"zz_metric", "qq_value", "qq_like%", "31415", "killed", "77", "88"} <= bound


def test_values_in_lists_are_bound_too() -> None:
    query = compile_search(
        experiment_ids=None,
        where="params.model in ('qq_a', 'qq_b') and metrics.m not in (111222, nan)",
        order_by=[],
        limit=1,
        offset=0,
    )
    compiled = query.compile(dialect=sqlite.dialect(), compile_kwargs={"render_postcompile": True})
    assert "qq_" not in str(compiled)
    assert "111222" not in str(compiled)


# --- the query plan -----------------------------------------------------------------------------


def test_sqlite_plan_looks_up_each_key_by_index(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    metadata.create_all(engine)
    insert(engine, RUNS)
    query = compile_search(
        experiment_ids=list(EXPERIMENTS)[:1],
        where="metrics.rmse < 45 and params.model = 'gbm' and tags.owner is null",
        order_by=["metrics.rmse"],
        limit=100,
        offset=0,
    )
    executed: list[tuple[str, Any]] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def remember(*args: Any) -> None:
        executed.append((args[2], args[3]))

    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.execute(query).all()
        statement, parameters = executed[-1]
        plan = [
            row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        ]
    engine.dispose()
    scans = [line for line in plan if line.startswith("SCAN") and "USING" not in line]
    assert scans == [], plan
    for alias in ("m_1", "p_2", "t_3"):
        assert any(alias in line and "INDEX" in line for line in plan), plan


# --- errors -------------------------------------------------------------------------------------


ERRORS = [
    ("metrics.rmse < 1; DROP TABLE runs", "unexpected character ';'", ";"),
    ("metric.rmse < 1", "did you mean metrics.rmse?", "metric."),
    ("param.lr = 0.1", "did you mean params.lr?", "param."),
    ("tag.x = 'a'", "did you mean tags.x?", "tag."),
    ("attribute.status = 'failed'", "did you mean attributes.status?", "attribute."),
    ("metricz.rmse < 1", "did you mean metrics.rmse?", "metricz"),
    ("foo.bar = 1", "unknown prefix 'foo.'", "foo"),
    ("rmse < 1", "unknown attribute 'rmse'; attributes are actor, end_time", "rmse"),
    ("attributes.color = 'red'", "for a metric, param or tag write metrics.color", "attributes"),
    ("status = 3", "status is text; quote the value", "3"),
    ("name = 3", "name is text; quote the value: name = '3'", "3"),
    ("status = 'done'", "unknown status 'done'; use one of 'running', 'finished'", "'done'"),
    ("status < 'finished'", "status has no order", "<"),
    ("metrics.rmse like '4%'", "LIKE works on text, and metrics.rmse is a number", "like"),
    ("metrics.rmse ilike '4%'", "ILIKE works on text", "ilike"),
    ("start_time like '2026%'", "LIKE works on text, and start_time is a time", "like"),
    ("metrics.rmse = '41'", "metrics.rmse is a number; compare it with a number", "'41'"),
    ("metrics.rmse in (1, 'a')", "not the text 'a'", "'a'"),
    ("metrics.rmse < nan", "nothing is less or greater than nan", "nan"),
    ("start_time = nan", "start_time is a time and cannot be nan", "nan"),
    ("start_time > 'yesterday'", "'yesterday' is not a time", "'yesterday'"),
    ("name = 'abc", "unterminated string: add the closing '", "'abc"),
    ('name = "abc', 'unterminated string: add the closing "', '"abc'),
    ("metrics.`val loss < 1", "unterminated backquoted key", "`val"),
    ("metrics. < 1", "a key must follow the dot", " < 1"),
    ("metrics.`` < 1", "the key is empty", "metrics"),
    ("metrics.rmse <", "the expression ends too early; expected a quoted string or a number", ""),
    ("metrics.rmse < 1 and", "expected a field such as metrics.rmse, 'not' or '('", ""),
    ("(metrics.rmse < 1", "ends too early; expected 'and', 'or' or ')'", ""),
    (
        "metrics.rmse < 1)",
        "unexpected token ')'; expected 'and', 'or' or the end of the expression",
        ")",
    ),
    ("metrics.rmse 1", "unexpected token '1'; expected 'not', a comparison", "1"),
    (
        "metrics.rmse < 1 metrics.mae < 2",
        "unexpected token 'metrics.mae'; expected 'and'",
        "metrics.mae",
    ),
    ("metrics.rmse in ()", "unexpected token ')'", ")"),
    ("and metrics.rmse < 1", "unexpected keyword 'and'", "and"),
    ("name like 'a\\\\'", "ends with a lone backslash", "'a"),
    ("", "the expression is empty", ""),
    ("   ", "the expression is empty", ""),
    ("name = 'a' @", "unexpected character '@'; expected 'and', 'or' or the end", "@"),
]


@pytest.mark.parametrize(("expression", "message", "at"), ERRORS)
def test_invalid_expressions_name_the_problem_and_point_at_it(
    expression: str, message: str, at: str
) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_where(expression)
    error = caught.value
    assert message in str(error)
    column = expression.index(at) + 1 if at else len(expression.rstrip()) + 1
    if at.startswith("`"):
        column = expression.index("`") + 1
    assert error.column == column
    lines = str(error).splitlines()
    assert lines[-2] == "  " + expression
    assert lines[-1] == "  " + " " * (column - 1) + "^"
    assert isinstance(error, ValidationFailed)


def test_a_multi_line_expression_is_shown_on_one_line_with_the_caret_aligned() -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_where("metrics.rmse < 1\n\tand status = 7")
    lines = str(caught.value).splitlines()
    assert lines[-2] == "  metrics.rmse < 1  and status = 7"
    assert lines[-1].index("^") == lines[-2].index("7")


def test_check_where_accepts_blank_and_rejects_bad_expressions() -> None:
    check_where(None)
    check_where("  ")
    check_where("metrics.rmse < 1")
    with pytest.raises(QuerySyntaxError, match="unknown attribute"):
        check_where("rmse < 1")


def test_order_by_errors_point_at_the_key() -> None:
    with pytest.raises(QuerySyntaxError, match=r"did you mean metrics\.rmse") as caught:
        parse_order_by("metric.rmse DESC")
    assert caught.value.column == 1
    with pytest.raises(QuerySyntaxError, match="unexpected token 'up'") as caught:
        parse_order_by("metrics.rmse up")
    assert caught.value.column == 14
    with pytest.raises(QuerySyntaxError, match="empty"):
        parse_order_by(" ")
    with pytest.raises(QuerySyntaxError, match="unknown attribute"):
        compile_search(experiment_ids=None, where=None, order_by=["rmse"], limit=1, offset=0)


def test_parse_order_by_reads_directions_and_lists() -> None:
    assert parse_order_by("metrics.`val loss` desc, start_time") == (
        OrderKey(Field("metric", "val loss", 1), descending=True),
        OrderKey(Field("attribute", "start_time", 26), descending=False),
    )
    assert parse_order_by("attributes.run_name ASC") == (
        OrderKey(Field("attribute", "name", 1), descending=False),
    )


# --- properties ---------------------------------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30)


@given(TEXT)
def test_quoted_strings_parse_back_to_themselves(value: str) -> None:
    comparison = parse_where(f"tags.t = {quote_string(value)}")
    assert isinstance(comparison, Comparison)
    assert comparison.values[0] == String(value, 10)


@given(TEXT.filter(bool))
def test_quoted_keys_parse_back_to_themselves(key: str) -> None:
    comparison = parse_where(f"params.{quote_key(key)} = 1")
    assert isinstance(comparison, Comparison)
    assert comparison.field == Field("param", key, 1)


VALUES = st.one_of(
    st.sampled_from([x for x in RMSE if not math.isnan(x)] + [-10.0, 25.0]),
    st.floats(allow_nan=False, min_value=-1e6, max_value=1e6),
    st.just(INF),
    st.just(-INF),
)
OPERATORS = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@st.composite
def metric_leaf(draw: st.DrawFn) -> tuple[str, Callable[[RunRow], bool]]:
    key = draw(st.sampled_from(["rmse", "mae", "val loss"]))
    shape = draw(st.sampled_from(["compare", "nan", "in", "null"]))
    name = f"metrics.{quote_key(key)}"
    if shape == "compare":
        op, threshold = draw(st.sampled_from(sorted(OPERATORS))), draw(VALUES)
        test = OPERATORS[op]
        return f"{name} {op} {threshold!r}", lambda r: metric(r, key, lambda v: test(v, threshold))
    if shape == "nan":
        equal = draw(st.booleans())
        if equal:
            return f"{name} = nan", lambda r: is_nan(r, key)
        return f"{name} != nan", lambda r: metric(r, key, lambda v: True)
    if shape == "in":
        listed = draw(st.lists(VALUES, min_size=1, max_size=3))
        negated = draw(st.booleans())
        rendered = f"{name} {'not in' if negated else 'in'} ({', '.join(map(repr, listed))})"
        if negated:
            return rendered, lambda r: metric(r, key, lambda v: v not in listed)
        return rendered, lambda r: metric(r, key, lambda v: v in listed)
    present = draw(st.booleans())
    return (
        f"{name} is {'not ' if present else ''}null",
        lambda r: (key in r.metrics) == present,
    )


@st.composite
def text_leaf(draw: st.DrawFn) -> tuple[str, Callable[[RunRow], bool]]:
    key = draw(st.sampled_from(["model", "lr"]))
    op = draw(st.sampled_from(sorted(OPERATORS)))
    value = draw(st.sampled_from([*MODELS, "0.1", "h", "", "zz"]))
    test = OPERATORS[op]
    return f"params.{key} {op} {quote_string(value)}", lambda r: text(
        r.params, key, lambda v: test(v, value)
    )


def combine(
    children: st.SearchStrategy[tuple[str, Callable[[RunRow], bool]]],
) -> st.SearchStrategy[tuple[str, Callable[[RunRow], bool]]]:
    def both(
        word: str, pair: list[tuple[str, Callable[[RunRow], bool]]]
    ) -> tuple[str, Callable[[RunRow], bool]]:
        (left, f), (right, g) = pair
        if word == "and":
            return f"({left}) and ({right})", lambda r: f(r) and g(r)
        return f"({left}) or ({right})", lambda r: f(r) or g(r)

    def negate(child: tuple[str, Callable[[RunRow], bool]]) -> tuple[str, Callable[[RunRow], bool]]:
        return f"not ({child[0]})", lambda r: not child[1](r)

    pairs = st.lists(children, min_size=2, max_size=2)
    return st.one_of(
        st.builds(both, st.sampled_from(["and", "or"]), pairs),
        children.map(negate),
    )


EXPRESSIONS = st.recursive(st.one_of(metric_leaf(), text_leaf()), combine, max_leaves=5)


@settings(max_examples=60, deadline=None)
@given(EXPRESSIONS)
def test_random_expressions_filter_as_python_does(
    engine: sa.Engine, case: tuple[str, Callable[[RunRow], bool]]
) -> None:
    expression, oracle = case
    assert set(search(engine, expression)) == {r.id for r in RUNS if oracle(r)}, expression


def keep_none_or_nan(value: float | None) -> bool:
    return value is None or math.isnan(value)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.floats(), st.just(NAN)), min_size=len(RUNS), max_size=len(RUNS)
    ),
    st.sampled_from(sorted(OPERATORS)),
    st.floats(allow_nan=False),
)
def test_random_metric_values_filter_and_sort_as_python_does(
    engine: sa.Engine, values: list[float | None], op: str, threshold: float
) -> None:
    with engine.begin() as conn:
        rows = [
            metric_row(r.id, "random", v)
            for r, v in zip(RUNS, values, strict=True)
            if v is not None
        ]
        if rows:
            conn.execute(latest_metrics.insert(), rows)
    try:
        check_random_metric(engine, values, op, threshold)
    finally:
        with engine.begin() as conn:
            conn.execute(latest_metrics.delete().where(latest_metrics.c.key == "random"))


def check_random_metric(
    engine: sa.Engine, values: list[float | None], op: str, threshold: float
) -> None:
    stored = dict(zip([r.id for r in RUNS], values, strict=True))
    test = OPERATORS[op]

    def keep(run_id: str) -> bool:
        v = stored[run_id]
        return v is not None and not math.isnan(v) and test(v, threshold)

    found = search(engine, f"metrics.random {op} {threshold!r}")
    assert set(found) == {r.id for r in RUNS if keep(r.id)}
    order = search(engine, None, order_by=["metrics.random DESC"])
    ranked = [v for v in (stored[i] for i in order) if v is not None and not math.isnan(v)]
    assert ranked == sorted(ranked, reverse=True)
    assert order[len(ranked) :] == [i for i in search(engine, None) if keep_none_or_nan(stored[i])]


@settings(max_examples=30, deadline=None)
@given(TEXT)
def test_random_strings_match_only_themselves_and_change_nothing(
    engine: sa.Engine, value: str
) -> None:
    target = RUNS[0].id
    before = counts(engine)
    with engine.begin() as conn:
        conn.execute(tags.insert(), [{"run_id": target, "key": "random", "value": value}])
    try:
        check_random_string(engine, target, value)
    finally:
        with engine.begin() as conn:
            conn.execute(tags.delete().where(tags.c.key == "random"))
    assert counts(engine) == before


def check_random_string(engine: sa.Engine, target: str, value: str) -> None:
    before = counts(engine)
    assert search(engine, f"tags.random = {quote_string(value)}") == [target]
    like = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    assert search(engine, f"tags.random like {quote_string(like)}") == [target]
    assert search(engine, f"tags.random != {quote_string(value)}") == []
    assert search(engine, f"tags.{quote_key(value or 'k')} = {quote_string(value)}") == (
        [target] if value == "random" else []
    )
    assert counts(engine) == before
