"""Checks at registration: policy findings recorded on the version, schema validation refusing."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from tests.data.conftest import Stores, table_files

import mlcycle as mc
from mlcycle.data import PolicyFinding
from mlcycle.errors import ValidationFailed
from mlcycle.settings import DataSettings, Settings, load_settings
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


def _settings(home: Path, stores: Stores) -> Settings:
    return stores.settings(home, data=DataSettings(deny_columns=("Salary",)))


def _check_findings(findings: list[PolicyFinding]) -> None:
    by_column = {(f.column, f.kind): f for f in findings}
    assert set(by_column) == {("contact", "email"), ("salary", "denied_column")}
    email = by_column["contact", "email"]
    assert email.matches == 20
    assert email.examples  # masked: the record holds no address
    assert not any(example in EMAILS for example in email.examples)
    assert by_column["salary", "denied_column"].matches == 20


def test_policy_findings_are_recorded_and_read_after_reopening(
    tmp_path: Path, stores: Stores
) -> None:
    with Workspace.open(_settings(tmp_path, stores)) as ws:
        version = ws.data.register("customers", _customers())
        _check_findings(ws.data.policy(version))
    with Workspace.open(_settings(tmp_path, stores)) as ws:
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


GOOD = pa.table({"hr": list(range(24)), "season": ["winter", "summer"] * 12})
BAD = pa.table({"hr": [5, 99], "season": ["winter", "monsoon"]})


def _save_schema(ws: Workspace, name: str = "bike") -> None:
    infer_schema(GOOD, dataset=name, slack=0.0).save(ws.schemas_dir / f"{name}.yaml")


def _state(ws: Workspace) -> tuple[object, ...]:
    """Everything a refused registration must leave alone: files, metadata and events."""
    return (
        table_files(ws),
        [(d.name, ws.data.history(d.name)) for d in ws.data.list()],
        ws.events(),
    )


def _validations(ws: Workspace) -> list[tuple[str, object]]:
    events = ws.events(types=["dataset.version_created"])
    return [(e.subject, e.payload["validation"]) for e in events]


def test_validate_refuses_bad_rows_and_writes_nothing(ws: Workspace) -> None:
    first = ws.data.register("bike", GOOD)
    _save_schema(ws)
    before = _state(ws)
    assert before[0]  # the table's files are where the test looks
    with pytest.raises(ValidationFailed) as caught:
        ws.data.register("bike", BAD, validate=True)
    message = str(caught.value)
    assert "out_of_range" in message
    assert "unseen_category" in message
    assert "monsoon" in message
    assert "Nothing was registered" in message
    assert _state(ws) == before
    assert ws.data.history("bike") == [first]
    assert ws.data.load_table("bike").equals(ws.data.load_table("bike/1"))
    fine = ws.data.register("bike", GOOD.slice(0, 3), validate=True)
    assert fine.version == 2
    assert _validations(ws) == [("data:/bike/1", None), ("data:/bike/2", "passed")]


def test_validate_without_a_schema_file_names_the_file_and_the_fix(ws: Workspace) -> None:
    with pytest.raises(ValidationFailed) as caught:
        ws.data.register("rides", pa.table({"n": [1]}), validate=True)
    message = str(caught.value)
    assert f"no schema file {ws.schemas_dir / 'rides.yaml'}" in message
    assert "`mlcycle data schema rides`" in message
    assert "validate=False" in message
    assert ws.data.list() == []
    assert table_files(ws) == []


def test_a_listed_dataset_is_validated_unless_told_not_to(tmp_path: Path, stores: Stores) -> None:
    settings = stores.settings(tmp_path, data=DataSettings(validate_on_register=("bike",)))
    with Workspace.open(settings) as ws:
        with pytest.raises(ValidationFailed, match=r"no schema file .*bike\.yaml"):
            ws.data.register("bike", GOOD)  # listed: a schema is required
        ws.data.register("bike", GOOD, validate=False)
        _save_schema(ws)
        before = _state(ws)
        with pytest.raises(ValidationFailed, match="Nothing was registered"):
            ws.data.register("bike", BAD)
        assert _state(ws) == before
        ws.data.register("bike", GOOD.slice(0, 2))
        ws.data.register("bike", BAD, validate=False)
        ws.data.register("other", BAD)  # not listed
        assert ws.data.get("bike").rows == 28
        assert _validations(ws) == [
            ("data:/bike/1", "skipped"),
            ("data:/bike/2", "passed"),
            ("data:/bike/3", "skipped"),
            ("data:/other/1", None),
        ]


def test_a_star_validates_every_dataset_that_has_a_schema(tmp_path: Path, stores: Stores) -> None:
    settings = stores.settings(tmp_path, data=DataSettings(validate_on_register=("*",)))
    with Workspace.open(settings) as ws:
        ws.data.register("bike", GOOD)  # no schema yet: registered unchecked
        _save_schema(ws)
        _save_schema(ws, "rides")
        before = _state(ws)
        for name in ("bike", "rides"):
            with pytest.raises(ValidationFailed, match="unseen_category"):
                ws.data.register(name, BAD)
        assert _state(ws) == before
        ws.data.register("rides", GOOD)
        with pytest.raises(ValidationFailed, match="no schema file"):
            ws.data.register("other", BAD, validate=True)
        assert _validations(ws) == [("data:/bike/1", "skipped"), ("data:/rides/1", "passed")]
        assert ws.data.rollback("bike", 1).version == 1  # the same content: no new version


def test_the_setting_is_read_from_the_project_file(tmp_path: Path) -> None:
    (tmp_path / "mlcycle.toml").write_text('[data]\nvalidate_on_register = ["bike", "*"]\n')
    assert load_settings(tmp_path).data.validate_on_register == ("bike", "*")
    (tmp_path / "mlcycle.toml").write_text('[data]\nvalidate_on_register = ["no such"]\n')
    with pytest.raises(ValidationFailed, match="validate_on_register"):
        load_settings(tmp_path)


def test_mc_data_register_follows_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLCYCLE_HOME", raising=False)
    (tmp_path / "mlcycle.toml").write_text('[data]\nvalidate_on_register = ["*"]\n')
    (tmp_path / "schemas").mkdir()
    infer_schema(GOOD, dataset="bike", slack=0.0).save(tmp_path / "schemas" / "bike.yaml")
    try:
        with pytest.raises(ValidationFailed, match="Nothing was registered"):
            mc.data.register("bike", BAD)
        assert mc.data.list() == []
        assert mc.data.register("bike", BAD, validate=False).rows == 2
    finally:
        mc.close()
