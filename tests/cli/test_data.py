"""``mlcycle data``: register, show, history, diff, schema, validate and report, on real stores."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from mlcycle import Workspace
from mlcycle.datasets import BIKE_SHARING_HOURLY
from mlcycle.settings import Settings

Invoke = Callable[..., Result]

BIKE = str(BIKE_SHARING_HOURLY)
HEADER, *ROWS = BIKE_SHARING_HOURLY.read_text().splitlines()


def register_bike(invoke: Invoke) -> Result:
    result = invoke(
        "data", "register", "bike", BIKE,
        "--time-column", "dteday", "--key", "dteday", "--key", "hr",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result


def write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def next_day(rows: list[str], day: str) -> list[str]:
    """The first 24 hours again, moved to ``day`` (new keys: an append that adds rows)."""
    moved = []
    for number, row in enumerate(rows[:24], start=len(ROWS) + 1):
        fields = row.split(",")
        fields[0], fields[1] = str(number), day
        moved.append(",".join(fields))
    return moved


def with_field(rows: list[str], column: str, values: dict[int, str]) -> list[str]:
    """``rows`` with ``column`` set to ``values[i]`` in row ``i``."""
    index = HEADER.split(",").index(column)
    changed = []
    for i, row in enumerate(rows):
        fields = row.split(",")
        if i in values:
            fields[index] = values[i]
        changed.append(",".join(fields))
    return changed


def test_register_list_show_history_and_diff_after_an_append(
    invoke: Invoke, project: Path, project_settings: Settings
) -> None:
    first = register_bike(invoke)
    assert "registered bike/1 (create): 17,379 rows, 17 columns" in first.stdout
    again = invoke("data", "register", "bike", BIKE, "--mode", "overwrite")
    assert again.exit_code == 0, again.output
    assert "unchanged: version 1 already holds this content" in again.stdout

    listed = invoke("data", "list")
    assert listed.exit_code == 0, listed.output
    line = next(line for line in listed.stdout.splitlines() if line.startswith("bike "))
    assert line.split()[:4] == ["bike", "1", "17,379", "17"]
    assert json.loads(invoke("data", "list", "--json").stdout)[0]["latest"]["rows"] == 17_379

    shown = invoke("data", "show", "bike")
    assert shown.exit_code == 0, shown.output
    assert "dataset bike/1 (data:/bike/1)" in shown.stdout
    assert "key          dteday, hr" in shown.stdout
    cnt = next(line for line in shown.stdout.splitlines() if "│ cnt " in line)
    assert "17,379" in cnt  # the count
    assert "977" in cnt  # the largest hourly rental count
    weathersit = next(line for line in shown.stdout.splitlines() if "│ weathersit " in line)
    assert "1 (11,413)" in weathersit  # the most frequent weather, with its count
    assert "policy: no column looks like personal data" in shown.stdout
    as_json = json.loads(invoke("data", "show", "bike/1", "--json").stdout)
    assert as_json["version"]["ref"] == "data:/bike/1"
    assert as_json["dataset"]["key"] == ["dteday", "hr"]
    columns = {c["name"]: c for c in as_json["profile"]["columns"]}
    assert columns["hr"]["min"] == 0
    assert columns["hr"]["max"] == 23
    assert "sample" not in columns["temp"]

    new_rows = write_csv(project / "data" / "2013-01-01.csv", next_day(ROWS, "2013-01-01"))
    appended = invoke("data", "register", "bike", str(new_rows))
    assert appended.exit_code == 0, appended.output
    assert "registered bike/2 (append): 17,403 rows" in appended.stdout

    history = invoke("data", "history", "bike")
    assert history.exit_code == 0, history.output
    versions = [line.split()[:3] for line in history.stdout.splitlines() if line[:7].strip()]
    assert versions[1:3] == [["1", "create", "17,379"], ["2", "append", "17,403"]]
    assert "mlcycle data diff bike 1 2" in history.stdout
    records = json.loads(invoke("data", "history", "bike", "--json").stdout)
    assert [(r["version"], r["operation"]) for r in records] == [(1, "create"), (2, "append")]
    assert records[1]["source"] == f"file:{new_rows}"

    diff = invoke("data", "diff", "bike", "1", "2")
    assert diff.exit_code == 0, diff.output
    assert "17,379 → 17,403: +24 added, -0 removed, 0 changed (by key (dteday, hr))" in diff.stdout
    assert "schema   unchanged" in diff.stdout
    assert "│ dteday" not in diff.stdout  # a date column has no mean to compare
    found = json.loads(invoke("data", "diff", "bike", "1", "2", "--json").stdout)
    assert found["rows"] == {"old": 17_379, "new": 17_403, "added": 24, "removed": 0, "changed": 0}
    instant = next(c for c in found["distributions"] if c["name"] == "instant")
    assert instant["mean_new"] > instant["mean_old"]

    with Workspace.open(project_settings) as workspace:  # the CLI wrote through the real stores
        assert [v.version for v in workspace.data.history("bike")] == [1, 2]


def test_diff_shows_changed_rows_and_schema_changes(invoke: Invoke, project: Path) -> None:
    first = write_csv(project / "data" / "a.csv", ROWS[:48])
    assert invoke("data", "register", "small", str(first), "--key", "instant").exit_code == 0
    changed = with_field(ROWS[:48], "cnt", {0: "5000"})
    header = HEADER + ",rain_mm"
    second = write_csv(project / "data" / "b.csv", [row + ",0.5" for row in changed], header)
    result = invoke("data", "register", "small", str(second), "--mode", "overwrite")
    assert result.exit_code == 0, result.output
    diff = invoke("data", "diff", "small", "1", "2")
    assert diff.exit_code == 0, diff.output
    assert "+0 added, -0 removed, 1 changed (by key (instant))" in diff.stdout
    assert "+ rain_mm (double)" in diff.stdout
    cnt = next(line for line in diff.stdout.splitlines() if line.startswith("│ cnt "))
    assert "5000" not in cnt  # a mean, not the value
    assert len(cnt.split("│")) == 10  # column, mean before/after/Δ, std before/after, missing


def test_schema_then_validate_passes_and_a_bad_version_fails(invoke: Invoke, project: Path) -> None:
    register_bike(invoke)
    inferred = invoke("data", "schema", "bike")
    assert inferred.exit_code == 0, inferred.output
    assert "wrote schemas/bike.yaml: 17 columns, key (dteday, hr), from bike/1" in inferred.stdout
    assert "cnt:" in (project / "schemas" / "bike.yaml").read_text()

    passed = invoke("data", "validate", "bike")
    assert passed.exit_code == 0, passed.output
    assert "passed: bike/1 against schemas/bike.yaml: 17,379 rows, 17 columns, 0 error" in (
        passed.stdout
    )
    assert json.loads(invoke("data", "validate", "bike", "--json").stdout)["ok"] is True

    bad_rows = with_field(ROWS[:100], "cnt", {3: "-7", 50: "99999"})
    bad_rows = with_field(bad_rows, "weathersit", {7: "9"})
    bad = write_csv(project / "data" / "bad.csv", bad_rows)
    assert invoke("data", "register", "bike", str(bad), "--mode", "overwrite").exit_code == 0
    failed = invoke("data", "validate", "bike", "--html", "reports/bike-2.html")
    assert failed.exit_code == 1, failed.output
    assert "failed: bike/2 against schemas/bike.yaml" in failed.stdout
    cnt = next(line for line in failed.stdout.splitlines() if "out_of_range │ cnt" in line)
    assert "-7" in cnt
    assert "99999" in cnt
    assert "weathersit" in failed.stdout
    page = (project / "reports" / "bike-2.html").read_text()
    assert "failed" in page
    assert "out_of_range" in page
    report = json.loads(invoke("data", "validate", "bike/2", "--json").stdout)
    assert report["ok"] is False
    assert {a["column"] for a in report["anomalies"] if a["severity"] == "error"} >= {
        "cnt",
        "weathersit",
    }
    assert invoke("data", "validate", "bike/1").exit_code == 0  # the good version still passes


def test_schema_keeps_an_edited_file_unless_forced(invoke: Invoke, project: Path) -> None:
    register_bike(invoke)
    assert invoke("data", "schema", "bike").exit_code == 0
    same = invoke("data", "schema", "bike/1")
    assert same.exit_code == 0
    assert "already holds this schema" in same.stdout
    path = project / "schemas" / "bike.yaml"
    edited = path.read_text().replace("max: 1075", "max: 2000")
    path.write_text(edited)
    refused = invoke("data", "schema", "bike")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: schemas/bike.yaml exists with other content")
    assert "--force" in refused.stderr
    assert path.read_text() == edited
    printed = invoke("data", "schema", "bike", "--out", "-")
    assert printed.stdout.startswith("# mlcycle schema for bike.")
    assert "max: 1075" in printed.stdout
    assert invoke("data", "schema", "bike", "--force").exit_code == 0
    assert "max: 1075" in path.read_text()


def test_register_validate_refuses_bad_rows_and_writes_nothing(
    invoke: Invoke, project: Path
) -> None:
    register_bike(invoke)
    assert invoke("data", "schema", "bike").exit_code == 0
    bad = write_csv(
        project / "data" / "bad.csv", with_field(next_day(ROWS, "2013-01-01"), "hr", {0: "30"})
    )
    refused = invoke("data", "register", "bike", str(bad), "--validate")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: ")
    assert "out_of_range" in refused.stderr
    assert "Nothing was registered" in refused.stderr
    explicit = invoke(
        "data", "register", "bike", str(bad), "--validate", "--schema", "schemas/bike.yaml"
    )
    assert explicit.exit_code == 1
    assert "Nothing was registered" in explicit.stderr
    history = json.loads(invoke("data", "history", "bike", "--json").stdout)
    assert [v["version"] for v in history] == [1]
    good = write_csv(project / "data" / "good.csv", next_day(ROWS, "2013-01-01"))
    accepted = invoke("data", "register", "bike", str(good), "--validate")
    assert accepted.exit_code == 0, accepted.output
    assert "registered bike/2 (append)" in accepted.stdout


def test_register_follows_validate_on_register_and_no_validate_skips(
    invoke: Invoke, project: Path
) -> None:
    register_bike(invoke)
    assert invoke("data", "schema", "bike").exit_code == 0
    config = project / "mlcycle.toml"
    config.write_text(
        config.read_text().replace("[data]\n", '[data]\nvalidate_on_register = ["bike"]\n')
    )
    bad = write_csv(
        project / "data" / "bad.csv", with_field(next_day(ROWS, "2013-01-01"), "hr", {0: "30"})
    )
    refused = invoke("data", "register", "bike", str(bad))
    assert refused.exit_code == 1
    assert "out_of_range" in refused.stderr
    assert "Nothing was registered" in refused.stderr
    clash = invoke("data", "register", "bike", str(bad), "--no-validate", "--schema", "x.yaml")
    assert clash.exit_code == 1
    assert "--schema is for --validate" in clash.stderr
    skipped = invoke("data", "register", "bike", str(bad), "--no-validate")
    assert skipped.exit_code == 0, skipped.output
    assert "registered bike/2 (append)" in skipped.stdout
    with Workspace.open(Settings(home=project)) as ws:
        events = ws.events(types=["dataset.version_created"])
    assert [e.payload["validation"] for e in events] == [None, "skipped"]


def test_show_lists_policy_findings(invoke: Invoke, project: Path) -> None:
    people = project / "data" / "people.csv"
    people.write_text(
        "id,email,visits\n" + "".join(f"{i},user{i}@example.com,{i % 7}\n" for i in range(40))
    )
    registered = invoke("data", "register", "people", str(people))
    assert registered.exit_code == 0, registered.output
    assert "policy findings" in registered.stdout
    shown = invoke("data", "show", "people")
    row = next(line for line in shown.stdout.splitlines() if "│ email " in line and "40" in line)
    assert "email" in row
    assert "user1@example.com" not in shown.stdout  # examples are masked
    findings = json.loads(invoke("data", "show", "people", "--json").stdout)["version"]["policy"]
    assert ("email", "email") in {(f["column"], f["kind"]) for f in findings}
    assert not any(f["column"] in {"id", "visits"} for f in findings)


def test_report_writes_an_offline_html_profile(invoke: Invoke, project: Path) -> None:
    register_bike(invoke)
    result = invoke("data", "report", "bike/1", "--out", "out/bike.html")
    assert result.exit_code == 0, result.output
    assert "wrote out/bike.html (profile of bike/1" in result.stdout
    page = (project / "out" / "bike.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 16  # a histogram or bar chart per column but the date
    assert "http://" not in page  # nothing is fetched: the page works offline
    assert "https://" not in page
    assert "<script" not in page
    default = invoke("data", "report", "bike")
    assert default.exit_code == 0, default.output
    assert (project / "bike-v1.html").is_file()


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("data", "show", "nosuch"),
        ("data", "history", "nosuch"),
        ("data", "diff", "nosuch", "1", "2"),
        ("data", "report", "nosuch/1"),
        ("data", "schema", "nosuch"),
        ("data", "validate", "nosuch", "--schema", "schemas/bike.yaml"),
    ],
)
def test_an_unknown_dataset_is_named(invoke: Invoke, project: Path, args: tuple[str, ...]) -> None:
    register_small(invoke, project)
    (project / "schemas" / "bike.yaml").write_text("columns:\n  x:\n    type: int64\n")
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ")
    assert "'nosuch'" in result.stderr.splitlines()[0]
    assert "Traceback" not in result.output


def register_small(invoke: Invoke, project: Path) -> None:
    small = write_csv(project / "data" / "small.csv", ROWS[:30])
    assert invoke("data", "register", "bike", str(small)).exit_code == 0


def test_bad_references_and_versions(invoke: Invoke, project: Path) -> None:
    register_small(invoke, project)
    for args in (("data", "show", "bike/x"), ("data", "validate", "bike/x")):
        result = invoke(*args)
        assert result.exit_code == 1
        assert result.stderr.startswith("error: 'bike/x' is not a reference")
        assert "bike/3" in result.stderr  # shows the grammar
    missing = invoke("data", "show", "bike/7")
    assert missing.exit_code == 1
    assert "dataset 'bike' has no version 7 (latest is 1)" in missing.stderr
    named = invoke("data", "history", "bike/1")
    assert named.exit_code == 1
    assert "give the dataset's name ('bike')" in named.stderr
    assert invoke("data", "diff", "bike", "1", "x").exit_code == 2  # a usage error
    bad_mode = invoke("data", "register", "bike", "data/small.csv", "--mode", "replace")
    assert bad_mode.exit_code == 1
    assert "--mode 'replace' must be append or overwrite" in bad_mode.stderr


def test_a_missing_file_is_named_and_nothing_is_registered(invoke: Invoke, project: Path) -> None:
    result = invoke("data", "register", "bike", "data/nope.csv")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert "nope.csv" in result.stderr
    assert json.loads(invoke("data", "list", "--json").stdout) == []
    empty = invoke("data", "list")
    assert "no datasets yet" in empty.stdout


def test_validate_without_a_schema_says_how_to_make_one(invoke: Invoke, project: Path) -> None:
    register_small(invoke, project)
    result = invoke("data", "validate", "bike")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no schema for dataset 'bike' at schemas/bike.yaml")
    assert "mlcycle data schema bike" in result.stderr


def test_a_malformed_schema_file_points_at_the_line(invoke: Invoke, project: Path) -> None:
    register_small(invoke, project)
    assert invoke("data", "schema", "bike").exit_code == 0
    path = project / "schemas" / "bike.yaml"
    lines = path.read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if line.startswith("    max: ")) + 1
    lines[number - 1] = "    max: twenty-three"
    path.write_text("\n".join(lines) + "\n")
    result = invoke("data", "validate", "bike")
    assert result.exit_code == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: ")
    assert f"bike.yaml:{number}:" in first
    assert "must be a number" in first
    broken = project / "broken.yaml"
    broken.write_text("columns:\n  x:\n    type: int64\n   required: [true\n")
    result = invoke("data", "validate", "bike", "--schema", str(broken))
    assert result.exit_code == 1
    assert "broken.yaml:4: invalid YAML" in result.stderr


def test_commands_outside_a_project_refuse(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("data", "list")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no mlcycle project")
    assert not (tmp_path / ".mlcycle").exists()


@pytest.mark.slow
def test_register_show_validate_and_report_in_real_processes(project: Path) -> None:
    def mlcycle(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlcycle", "data", *args],
            cwd=project, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    registered = mlcycle("register", "bike", BIKE, "-t", "dteday", "-k", "dteday", "-k", "hr")
    assert registered.returncode == 0, registered.stderr
    assert "registered bike/1" in registered.stdout
    shown = mlcycle("show", "bike", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["version"]["rows"] == 17_379
    assert mlcycle("schema", "bike").returncode == 0
    passed = mlcycle("validate", "bike")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    bad = write_csv(project / "data" / "bad.csv", with_field(ROWS[:50], "temp", {1: "7.5"}))
    assert mlcycle("register", "bike", str(bad), "--mode", "overwrite").returncode == 0
    failed = mlcycle("validate", "bike")
    assert failed.returncode == 1
    assert "7.5" in failed.stdout
    assert failed.stderr == ""
    report = mlcycle("report", "bike/1", "--out", "bike.html")
    assert report.returncode == 0, report.stderr
    page = (project / "bike.html").read_text()
    assert "https://" not in page
    assert "http://" not in page


def test_missing_values_nan_and_a_diff_back_to_the_same_content(
    invoke: Invoke, project: Path
) -> None:
    first = project / "data" / "first.csv"
    first.write_text("x,label\n1,a\n,b\n2.5,\n")
    second = project / "data" / "second.csv"
    second.write_text("x,label\n1,a\ninf,b\n2.5,c\n")
    for path in (first, second, first):
        result = invoke("data", "register", "small", str(path), "--mode", "overwrite")
        assert result.exit_code == 0, result.output
    shown = invoke("data", "show", "small/1")
    x_row = next(line for line in shown.stdout.splitlines() if line.startswith("│ x "))
    assert "1 (33.3%)" in x_row  # one of three values missing
    moved = json.loads(invoke("data", "diff", "small", "1", "2", "--json").stdout)
    x_change = next(c for c in moved["distributions"] if c["name"] == "x")
    assert x_change["mean_new"] == "inf"  # JSON has no infinity: spelled as a string
    assert x_change["missing_old"] == pytest.approx(1 / 3)
    back = invoke("data", "diff", "small", "1", "3")
    assert back.exit_code == 0, back.output
    assert "+0 added, -0 removed, 0 changed (by row hashes (no key))" in back.stdout
    assert "no shared column changed" in back.stdout


def test_schema_options_are_checked(invoke: Invoke, project: Path) -> None:
    register_small(invoke, project)
    alone = invoke("data", "register", "bike", "data/small.csv", "--schema", "s.yaml")
    assert alone.exit_code == 1  # --schema implies --validate
    assert "schema file s.yaml does not exist" in alone.stderr
    other = project / "schemas" / "other.yaml"
    assert invoke("data", "schema", "bike", "--out", str(other)).exit_code == 0
    other.write_text(other.read_text().replace("dataset: bike", "dataset: other"))
    result = invoke("data", "validate", "bike", "--schema", str(other))
    assert result.exit_code == 0, result.output
    assert "was written for dataset 'other'" in result.stdout
