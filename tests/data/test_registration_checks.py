"""Checks at registration: policy findings recorded on the version, schema validation refusing."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

import mlcycle as mc
from mlcycle.data import PolicyFinding
from mlcycle.errors import ValidationFailed
from mlcycle.settings import DataSettings, Settings, StoreSettings
from mlcycle.validate import infer_schema
from mlcycle.workspace import Workspace

EMAILS = [f"user{i}@example.com" for i in range(20)]


def _customers() -> pa.Table:
    return pa.table(
        {
            "contact": EMAILS,
            "salary": [float(1000 + i) for i in range(20)],
            "spend": [float(i) for i in range(20)],
        }
    )


def _settings(home: Path, metadata_url: str | None = None) -> Settings:
    return Settings(
        home=home,
        actor="tester",
        store=StoreSettings(metadata_url=metadata_url),
        data=DataSettings(deny_columns=("Salary",)),
    )


def _check_findings(findings: list[PolicyFinding]) -> None:
    by_column = {(f.column, f.kind): f for f in findings}
    assert set(by_column) == {("contact", "email"), ("salary", "denied_column")}
    email = by_column["contact", "email"]
    assert email.matches == 20
    assert email.examples  # masked: the record holds no address
    assert not any(example in EMAILS for example in email.examples)
    assert by_column["salary", "denied_column"].matches == 20


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_policy_findings_are_recorded_and_read_after_reopening(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    with Workspace.open(_settings(tmp_path, url)) as ws:
        version = ws.data.register("customers", _customers())
        _check_findings(ws.data.policy(version))
    with Workspace.open(_settings(tmp_path, url)) as ws:
        _check_findings(ws.data.policy("customers/1"))
        _check_findings(ws.data.policy(ws.data.get("customers")))
        plain = ws.data.register("plain", pa.table({"n": [1, 2, 3]}))
        assert ws.data.policy(plain) == []


def test_mc_data_policy_reads_the_working_directory_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLCYCLE_HOME", raising=False)
    try:
        mc.data.register("customers", _customers())
        kinds = {(f.column, f.kind) for f in mc.data.policy("customers/1")}
        assert kinds == {("contact", "email")}  # no deny-list in the default settings
    finally:
        mc.close()


def _table_files(ws: Workspace, name: str) -> list[str]:
    folder = Path(ws.settings.workspace_dir) / "artifacts" / "tables" / "datasets" / name
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_validate_refuses_bad_rows_and_writes_nothing(tmp_path: Path) -> None:
    good = pa.table({"hr": list(range(24)), "season": ["winter", "summer"] * 12})
    with Workspace.open(Settings(home=tmp_path, actor="tester")) as ws:
        first = ws.data.register("bike", good)
        infer_schema(good, dataset="bike", slack=0.0).save(ws.schemas_dir / "bike.yaml")
        files = _table_files(ws, "bike")
        assert files  # the folder exists where the test looks
        bad = pa.table({"hr": [5, 99], "season": ["winter", "monsoon"]})
        with pytest.raises(ValidationFailed) as caught:
            ws.data.register("bike", bad, validate=True)
        message = str(caught.value)
        assert "out_of_range" in message
        assert "unseen_category" in message
        assert "monsoon" in message
        assert "Nothing was registered" in message
        assert ws.data.history("bike") == [first]
        assert _table_files(ws, "bike") == files
        assert ws.data.load_table("bike").equals(ws.data.load_table("bike/1"))
        fine = ws.data.register("bike", good.slice(0, 3), validate=True)
        assert fine.version == 2


def test_validate_without_a_schema_file_names_the_file(tmp_path: Path) -> None:
    with Workspace.open(Settings(home=tmp_path, actor="tester")) as ws:
        with pytest.raises(ValidationFailed, match=r"no schema file .*schemas/rides\.yaml"):
            ws.data.register("rides", pa.table({"n": [1]}), validate=True)
        assert ws.data.list() == []
