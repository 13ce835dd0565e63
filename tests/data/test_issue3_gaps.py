"""Issue 3 lines no other test showed (see the audit in ``audit-3.md``).

Same rows in another order or under another schema are new content; a CSV glob
is a source; a SQL query runs on a real PostgreSQL server through a SQLAlchemy
URL whose password never reaches the record; every kind of new version (create,
append, merge, overwrite, rollback) is one event and has a lineage edge to
where it came from; a run opened with ``mc.start_run`` records the version it
loads and ``mlcycle runs show`` (a real process) lists it with its source; and
the walk-through of ``docs/data.md`` gives the figures the page prints.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from tests.data.conftest import table_files

import mlcycle as mc
from mlcycle.data import SqlQuery
from mlcycle.datasets import BIKE_SHARING_HOURLY
from mlcycle.errors import ValidationFailed
from mlcycle.settings import Settings
from mlcycle.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]


def test_the_same_rows_in_another_order_or_schema_are_a_new_version(ws: Workspace) -> None:
    frame = pd.DataFrame({"hr": [0, 1, 2], "cnt": [5.0, 6.0, 7.0]})
    first = ws.data.register("rides", frame)
    assert ws.data.register("rides", frame.copy(), mode="overwrite") == first  # same content
    reordered = ws.data.register("rides", frame.iloc[::-1], mode="overwrite")
    assert (reordered.version, reordered.rows) == (2, 3)
    assert reordered.digest != first.digest
    narrower = pa.table(
        {"hr": pa.array([0, 1, 2], pa.int32()), "cnt": [5.0, 6.0, 7.0]}
    )  # the same values as version 1, as int32
    retyped = ws.data.register("rides", narrower, mode="overwrite")
    assert (retyped.version, retyped.types) == (3, ["int32", "double"])
    assert len({first.digest, reordered.digest, retyped.digest}) == 3
    assert ws.data.load("rides/2")["hr"].tolist() == [2, 1, 0]


def test_a_csv_glob_registers_its_files_in_name_order(ws: Workspace, tmp_path: Path) -> None:
    for day in (3, 1, 2):
        (tmp_path / f"rides-{day}.csv").write_text(f"day,cnt\n{day},{day * 10}\n{day},{day}\n")
    version = ws.data.register("rides", str(tmp_path / "rides-*.csv"))
    assert version.rows == 6
    assert version.source.startswith(f"file:{tmp_path}")
    assert ws.data.load("rides")["day"].tolist() == [1, 1, 2, 2, 3, 3]
    (tmp_path / "rides-4.csv").write_text("day,cnt\n4\n")  # one ragged file in the glob
    with pytest.raises(ValidationFailed, match=r"rides-4\.csv, line 2: expected 2 fields"):
        ws.data.register("rides", str(tmp_path / "rides-*.csv"), mode="overwrite")
    assert ws.data.history("rides") == [version]


@pytest.mark.postgres
def test_a_postgresql_query_registers_without_its_password(
    tmp_path: Path, postgres_url: str
) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(
            sqlalchemy.text("CREATE TABLE hour (dteday DATE, hr INT, cnt DOUBLE PRECISION)")
        )
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO hour SELECT DATE '2030-01-01', h, h * 1.5"
                " FROM generate_series(0, 23) h"
            )
        )
    engine.dispose()
    # the server trusts loopback, so any password is accepted: it must still never be stored
    user = sqlalchemy.engine.make_url(postgres_url).username or "postgres"
    url = sqlalchemy.engine.make_url(postgres_url).set(password="s3cr3t-pw", username=user)
    secret_url = url.render_as_string(hide_password=False)
    assert "s3cr3t-pw" in secret_url
    with Workspace.open(Settings(home=tmp_path, actor="tester")) as ws:
        with pytest.raises(ValidationFailed, match=r"the query failed on .*nope"):
            ws.data.register("bike", SqlQuery("SELECT * FROM nope", secret_url))
        assert ws.data.list() == []
        version = ws.data.register(
            "bike", SqlQuery("SELECT * FROM hour ORDER BY hr", secret_url), key=["dteday", "hr"]
        )
        assert (version.rows, version.columns) == (24, ["dteday", "hr", "cnt"])
        assert version.source.startswith("sql:postgresql+psycopg://")
        assert ws.data.load("bike")["cnt"].sum() == pytest.approx(1.5 * sum(range(24)))
        stored = [
            version.source,
            *(e.source for e in ws.metadata.edges_into(version.ref)),
            *(json.dumps(e.payload) for e in ws.events()),
        ]
    assert not any("s3cr3t-pw" in text for text in stored)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]  # the SQLite file, tables, blobs
    assert tmp_path / ".mlcycle" / "mlcycle.db" in files
    for path in files:
        assert b"s3cr3t-pw" not in path.read_bytes(), path


def test_every_new_version_is_an_event_and_an_edge_to_its_source(
    ws: Workspace, tmp_path: Path
) -> None:
    path = tmp_path / "rides.csv"
    path.write_text("hr,cnt\n0,1.0\n1,2.0\n")
    versions = [
        ws.data.register("rides", path),
        ws.data.register("rides", pd.DataFrame({"hr": [2], "cnt": [3.0]})),
        ws.data.register(
            "rides", pd.DataFrame({"hr": [3], "cnt": [4.0], "temp": [0.5]}), schema="merge"
        ),
        ws.data.register("rides", pa.table({"hr": [9], "cnt": [9.0]}), mode="overwrite"),
    ]
    versions.append(ws.data.rollback("rides", 2))
    assert [v.operation for v in versions] == [
        "create",
        "append",
        "append",
        "overwrite",
        "rollback",
    ]
    events = ws.events(types=["dataset.version_created"])
    assert [e.subject for e in events] == [v.ref for v in versions]
    for version in versions:
        edges = ws.metadata.edges_into(version.ref)
        assert edges, f"{version.ref} has no lineage edge"
        if version.operation == "create":
            assert [(e.source, e.kind) for e in edges] == [(f"file:{path.resolve()}", "source")]
        if version.operation == "rollback":
            assert versions[1].ref in {e.source for e in edges}  # restored from version 2


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project in the working directory; the default workspace closed afterwards."""
    from mlcycle.project import init_project

    home = init_project(tmp_path / "project")
    monkeypatch.chdir(home)
    monkeypatch.delenv("MLCYCLE_HOME", raising=False)
    try:
        yield home
    finally:
        mc.close()


@pytest.mark.slow
def test_mc_start_run_records_the_version_and_runs_show_lists_it(project: Path) -> None:
    shutil.copy(BIKE_SHARING_HOURLY, project / "hour.csv")
    first = mc.data.register("bike", "hour.csv", key=["dteday", "hr"])
    second = mc.data.register("bike", mc.data.load("bike/1").tail(3).assign(cnt=0))
    with mc.start_run("bike-demand") as run:
        assert len(mc.data.load("bike/2")) == 17382
    lines = mc.lineage(run.id).lines()
    assert f"└── {second.ref} (input)" in lines
    assert any(f"{first.ref} (previous)" in line for line in lines)
    assert any(f"{first.source} (source)" in line for line in lines)
    mc.close()
    shown = subprocess.run(
        [sys.executable, "-m", "mlcycle", "runs", "show", run.id],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert second.ref in shown.stdout
    assert "input" in shown.stdout
    assert "hour.csv" in shown.stdout  # where the version came from


def test_the_docs_walkthrough_gives_the_figures_the_page_prints(project: Path) -> None:
    page = (ROOT / "docs" / "data.md").read_text()
    (project / "data").mkdir(exist_ok=True)
    shutil.copy(BIKE_SHARING_HOURLY, project / "data" / "hour.csv")
    v = mc.data.register("bike", "data/hour.csv", time_column="dteday", key=["dteday", "hr"])
    assert (v.version, v.rows) == (1, 17379)
    assert "(1, 17379, 'file:" in page
    assert mc.data.register("bike", "data/hour.csv", mode="overwrite") == v
    last_day = mc.data.load("bike").tail(24)
    new_rows = last_day.assign(dteday=last_day.dteday + timedelta(days=1))
    assert "last_day.dteday + timedelta(days=1)" in page
    v2 = mc.data.register("bike", new_rows, mode="append")
    assert (v2.version, v2.rows) == (2, 17403)
    assert "# version 2, 17,403 rows" in page
    history = [(h.version, h.operation, h.rows) for h in mc.data.history("bike")]
    assert history == [(1, "create", 17379), (2, "append", 17403)]
    assert "# [(1, 'create', 17379), (2, 'append', 17403)]" in page
    d = mc.data.diff("bike", 1, 2)
    assert (d.rows_added, d.rows_removed, d.rows_changed) == (24, 0, 0)  # a new day
    assert "# (24, 0, 0) by the key (dteday, hr)" in page
    assert (d.columns_added, d.types_changed) == ([], [])
    assert {c.name for c in d.distributions} >= {"cnt", "temp"}
    with mc.start_run("bike-demand") as run:
        mc.data.load("bike/2")
    assert "    └── data:/bike/2 (input)" not in page  # the page's tree starts at the run
    assert "└── data:/bike/2 (input)" in "\n".join(mc.lineage(run.id).lines())
    v3 = mc.data.rollback("bike", 1)
    assert (v3.version, v3.digest) == (3, v.digest)
    schema = mc.validate.infer_schema("bike/1")
    assert (project / "schemas" / "bike.yaml").exists()
    assert schema.dataset == "bike"
    assert mc.validate.check("bike/1").ok
    assert mc.validate.check("bike/2").ok  # the appended day keeps the key unique


@pytest.mark.slow
def test_the_data_benchmark_reports_every_figure() -> None:
    """``benchmarks/data.py`` runs on a small table and reports what docs/benchmarks.md needs.

    No timing is asserted (timings belong to the benchmark). pandera is left out: it
    installs into its own environment, which needs the network.
    """
    done = subprocess.run(
        [
            *(sys.executable, str(ROOT / "benchmarks" / "data.py"), "--quick"),
            *("--rows", "20000", "--repeats", "1", "--skip-pandera"),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        check=False,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["benchmark"] == "data"
    assert {"machine", "versions", "load_average_end", "results", "goals"} <= set(report)
    synthetic, bike = report["results"]["synthetic"], report["results"]["bike"]
    assert (synthetic["rows"], synthetic["columns"]) == (20000, 25)
    assert (bike["rows"], bike["columns"]) == (17379, 17)
    steps = {"register_dataframe", "register_parquet", "reregister_dataframe", "profile"}
    steps |= {"pandas_profile", "infer_from_profile", "check_string", "reregister_parquet"}
    assert steps <= set(synthetic)
    assert steps <= set(bike)
    assert set(report["goals"]) == {
        *("profile", "validate_string", "validate_category", "no_change_dataframe"),
        *("no_change_parquet", "write_rate_dataframe", "write_rate_parquet"),
    }
    assert report["goals"]["validate_string"]["verdict"] == "n/a"  # pandera left out
    assert {goal["verdict"] for goal in report["goals"].values()} <= {"PASS", "MISS", "n/a"}
    assert "| goal (synthetic table) | figure | goal |  |" in done.stdout


def test_diff_lists_removed_columns_and_changed_types(ws: Workspace) -> None:
    ws.data.register("rides", pa.table({"hr": [0, 1], "cnt": [1, 2], "temp": [0.1, 0.2]}))
    ws.data.register(
        "rides", pa.table({"hr": [0, 1], "cnt": [1.0, 2.5]}), mode="overwrite"
    )  # temp dropped, cnt int64 -> double
    diff = ws.data.diff("rides", 1, 2)
    assert diff.columns_removed == [("temp", "double")]
    assert diff.types_changed == [("cnt", "int64", "double")]
    assert diff.columns_added == []
    assert [c.name for c in diff.distributions] == ["hr"]  # only columns of one type compare
    assert not diff.unchanged


@pytest.mark.s3
def test_the_data_commands_work_on_an_s3_artifact_store(
    project: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    """``mlcycle data …`` on a project whose tables and blobs live in a bucket (moto)."""
    from typer.testing import CliRunner

    from mlcycle.cli._app import app
    from mlcycle.settings import load_settings

    config = project / "mlcycle.toml"
    config.write_text(
        config.read_text()
        .replace("[store]\n", f'[store]\nartifacts_url = "s3://{s3_bucket}/team"\n', 1)
        .replace(
            "[store.s3]\n", f'[store.s3]\nendpoint_url = "{s3_endpoint}"\nregion = "us-east-1"\n', 1
        )
    )
    runner = CliRunner()

    def invoke(*args: str) -> str:
        result = runner.invoke(app, list(args), catch_exceptions=False, prog_name="mlcycle")
        assert result.exit_code == 0, result.output
        return result.stdout

    shutil.copy(BIKE_SHARING_HOURLY, project / "hour.csv")
    invoke("data", "register", "bike", "hour.csv", "--key", "dteday", "--key", "hr")
    hot = pd.read_csv(project / "hour.csv").tail(48).assign(hr=99)
    hot.to_csv(project / "hot.csv", index=False)
    invoke("data", "register", "bike", "hot.csv", "--mode", "overwrite")
    assert "bike" in invoke("data", "list")
    assert "17,379" in invoke("data", "show", "bike/1")
    assert "overwrite" in invoke("data", "history", "bike")
    assert "48 added" in invoke("data", "diff", "bike", "1", "2").replace("+", "")
    assert "wrote schemas/bike.yaml" in invoke("data", "schema", "bike/1")
    assert invoke("data", "validate", "bike/1")
    failed = runner.invoke(app, ["data", "validate", "bike/2"], prog_name="mlcycle")
    assert failed.exit_code != 0
    assert "out_of_range" in failed.output
    invoke("data", "report", "bike/1", "--out", "bike.html")
    assert "<svg" in (project / "bike.html").read_text()
    with Workspace.open(load_settings(project)) as ws:
        assert ws.settings.artifacts_url == f"s3://{s3_bucket}/team"
        assert any(name.startswith("datasets/bike/") for name in table_files(ws))
    assert not (project / ".mlcycle" / "artifacts").exists()  # nothing went to local files
