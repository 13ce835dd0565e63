"""Data benchmark: mlcycle's register, profile, schema and checks against pandas and pandera.

Run ``.venv/bin/python benchmarks/data.py`` (or ``make bench-data``). On a synthetic
1,000,000 x 25 table and on the bundled Bike Sharing data it times registering (a first
version from a pandas DataFrame and from a Parquet file), profiling, schema inference,
validation and a no-change re-register; side by side, pandas ``describe`` plus
``value_counts`` for the profile and pandera, installed into its own throwaway environment
under ``benchmarks/.work/`` (never into our lock) and run as a subprocess, for the same
checks. It prints a table and, as its last line, one JSON object with every figure.
``--quick`` shrinks the synthetic table to 200,000 rows; ``--skip-pandera`` leaves pandera
out. The figures are recorded in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"
PANDERA_VERSION = "0.35.0"
RUN_DIR = WORK / f"data-run-{os.getpid()}"  # per invocation: two benchmarks may run at once
SIDE_TIMEOUT_S = 1800
SEED = 20_240_611

sys.path.insert(0, str(HERE))
from _incumbents import incumbent_python  # noqa: E402
from tracking import machine  # noqa: E402  (the same machine record as the tracking benchmark)

FULL_ROWS = 1_000_000
QUICK_ROWS = 200_000
CATEGORIES = (5, 10, 20, 35, 50)
# Goals of issue 3 (on the synthetic table): (label, figure, "max"/"min", bound).
PROFILE_GOAL_S = 1.5
VALIDATE_GOAL_X = 5.0
NO_CHANGE_GOAL_S = 0.5
WRITE_GOAL_MB_S = 100.0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table, then the JSON line."""
    args = parse_args(argv)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    try:
        report = measure(args)
    finally:
        if not args.keep:
            shutil.rmtree(RUN_DIR, ignore_errors=True)
    print_table(report)
    sys.stdout.write(json.dumps(report, default=str) + "\n")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} synthetic rows")
    parser.add_argument("--rows", type=int, default=None, help="synthetic rows (overrides)")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions (5; quick: 3)")
    parser.add_argument("--skip-pandera", action="store_true", help="leave pandera out")
    parser.add_argument("--pandera-version", default=PANDERA_VERSION, help="pandera to compare")
    parser.add_argument("--keep", action="store_true", help=f"keep the stores in {RUN_DIR.name}")
    return parser.parse_args(argv)


def log(message: str) -> None:
    """Progress goes to stderr so stdout is the table and the JSON line."""
    sys.stderr.write(f"[bench-data] {message}\n")
    sys.stderr.flush()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of the report."""
    rows = args.rows or (QUICK_ROWS if args.quick else FULL_ROWS)
    repeats = args.repeats or (3 if args.quick else 5)
    report: dict[str, Any] = {
        "benchmark": "data",
        "quick": args.quick,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "repeats": repeats,
        "results": {},
    }
    pandera_python = None if args.skip_pandera else ensure_pandera(args.pandera_version)
    log(f"building the synthetic table ({rows:,} x 25, seed {SEED})")
    datasets = {
        "synthetic": (synthetic(rows, seed=SEED), ["id"]),
        "bike": (bike_sharing(), ["instant"]),
    }
    for label, (frame, key) in datasets.items():
        log(f"--- {label}: {len(frame):,} rows x {frame.shape[1]} columns")
        results = run_dataset(label, frame, key=key, repeats=repeats)
        if pandera_python is not None:
            results["pandera"] = run_pandera(pandera_python, label, results, repeats=repeats)
        results.pop("_spec", None)
        report["results"][label] = results
    report["goals"] = goals(report["results"]["synthetic"])
    report["versions"] = versions(report["results"])
    report["load_average_end"] = os.getloadavg()
    return report


# --- the data -------------------------------------------------------------------------------


def synthetic(rows: int, *, seed: int) -> pd.DataFrame:
    """25 columns: ``id`` and 9 more int64, 10 float64 (5 with 0.5-2.5 % NaN), 5 categoricals.

    Categoricals ``c0``..``c4`` have 5, 10, 20, 35 and 50 categories with skewed (Zipf-like)
    frequencies; ``c4`` is missing in 1 % of the rows. Strings are pandas' ``str`` dtype.
    """
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {"id": np.arange(rows, dtype=np.int64)}
    for i in range(1, 10):
        columns[f"i{i}"] = rng.integers(-(10**i) if i % 3 == 0 else 0, 10**i, rows)
    for i in range(10):
        values = rng.normal(loc=i * 10.0, scale=1.0 + i, size=rows)
        if i < 5:
            values[rng.random(rows) < 0.005 * (i + 1)] = np.nan
        columns[f"f{i}"] = values
    for i, count in enumerate(CATEGORIES):
        weights = 1.0 / np.arange(1, count + 1)
        codes = rng.choice(count, size=rows, p=weights / weights.sum())
        if i == 4:
            codes[rng.random(rows) < 0.01] = -1
        labels = [f"cat{i}_{j:02d}" for j in range(count)]
        columns[f"c{i}"] = pd.Categorical.from_codes(codes, categories=labels).astype("str")
    return pd.DataFrame(columns)


def bike_sharing() -> pd.DataFrame:
    """The bundled UCI Bike Sharing hourly data, as pandas reads the CSV."""
    from mlcycle.datasets import BIKE_SHARING_HOURLY

    return pd.read_csv(BIKE_SHARING_HOURLY)


def categorical_columns(table: pa.Table) -> list[str]:
    """The string columns of ``table``."""
    return [
        f.name
        for f in table.schema
        if pa.types.is_string(f.type)
        or pa.types.is_large_string(f.type)
        or pa.types.is_string_view(f.type)
    ]


# --- mlcycle --------------------------------------------------------------------------------


def timed(action: Callable[[], Any], repeats: int) -> tuple[dict[str, Any], Any]:
    """Median, best and every time of ``repeats`` calls; and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "best_s": min(times), "times_s": times}, result


def data_mb(ws: Any, name: str) -> float:
    """Size of the Parquet data files of dataset ``name``'s Delta table, in MB (10^6 bytes)."""
    folder = Path(ws.data.tables.table_uri(f"datasets/{name}"))
    return sum(p.stat().st_size for p in folder.rglob("*.parquet")) / 1e6


def run_dataset(label: str, frame: pd.DataFrame, *, key: list[str], repeats: int) -> dict[str, Any]:
    """Every mlcycle measurement on one dataset, and the pandas profile beside it."""
    from mlcycle import Workspace, data, validate
    from mlcycle.settings import Settings

    folder = RUN_DIR / label
    folder.mkdir(parents=True)
    parquet = folder / f"{label}.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet)
    table = pq.read_table(parquet)
    cats = categorical_columns(table)
    as_dictionary = pq.read_table(parquet, read_dictionary=cats)
    results: dict[str, Any] = {
        "rows": table.num_rows,
        "columns": table.num_columns,
        "parquet_file_mb": parquet.stat().st_size / 1e6,
        "categorical": cats,
    }
    ws = Workspace.open(Settings(home=folder / "home"))
    try:
        ws.data.register("warm-up", pd.DataFrame({"x": [1.0], "c": ["a"]}))  # imports deltalake
        for source_kind, source in (("dataframe", frame), ("parquet", str(parquet))):
            results.update(registrations(ws, label, source_kind, source, key=key, repeats=repeats))
        results.update(raw_writes(table, folder / "raw", repeats=repeats))
        log(f"profile_table x{repeats}")
        results["profile"], profile = timed(lambda: data.profile_table(table), repeats)
        log(f"pandas describe(include='all') + value_counts x{repeats}")
        results["pandas_profile"], _ = timed(lambda: pandas_profile(frame, cats), repeats)
        log(f"infer_schema x{repeats}")
        results["infer_from_profile"], schema = timed(
            lambda: validate.infer_schema(profile, key=key), repeats
        )
        results["infer_from_table"], _ = timed(
            lambda: validate.infer_schema(table, key=key), repeats
        )
        for layout, data_table in (("string", table), ("category", as_dictionary)):
            log(f"check ({layout}) x{repeats}")
            figures, report = timed(lambda t=data_table: validate.check(t, schema), repeats)
            figures["ok"] = report.ok
            figures["anomalies"] = len(report.anomalies)
            results[f"check_{layout}"] = figures
        log(f"check (pandas DataFrame, converted to Arrow inside) x{repeats}")
        figures, report = timed(lambda: validate.check(frame, schema), repeats)
        figures["ok"] = report.ok
        results["check_dataframe"] = figures
        spec = folder / "schema.json"
        spec.write_text(json.dumps({"schema": schema.to_dict(), "categorical": cats}))
        results["_spec"] = (str(parquet), str(spec))
        results["schema_rules"] = schema_rules(schema)
    finally:
        ws.close()
    return results


def registrations(
    ws: Any, label: str, kind: str, source: Any, *, key: list[str], repeats: int
) -> dict[str, Any]:
    """First versions of ``source`` under new names, then no-change re-registers of one."""
    names = iter(range(repeats))
    sizes: list[float] = []

    def first_version() -> Any:
        name = f"{label}-{kind}-{next(names)}"
        version = ws.data.register(name, source, key=key)
        sizes.append(data_mb(ws, name))
        return version

    def again() -> Any:
        return ws.data.register(f"{label}-{kind}-0", source, mode="overwrite")

    log(f"register {kind} (first version) x{repeats}")
    first, version = timed(first_version, repeats)
    first["delta_data_mb"] = statistics.median(sizes)
    first["mb_per_s"] = first["delta_data_mb"] / first["median_s"]
    first["version"] = version.version
    log(f"no-change re-register {kind} x{repeats}")
    again()  # untimed: the first re-read of a Parquet file pays the page cache
    same, latest = timed(again, repeats)
    same["no_new_version"] = latest.version == 1
    return {f"register_{kind}": first, f"reregister_{kind}": same}


def raw_writes(table: pa.Table, folder: Path, *, repeats: int) -> dict[str, Any]:
    """The Delta write alone, as register makes it and as ``write_deltalake`` would.

    The same canonical table with its row numbers and the same Parquet options,
    each repetition a new table: the ceiling of a register's write rate here.
    """
    from deltalake import write_deltalake

    from mlcycle.data._content import canonical
    from mlcycle.data._datasets import ROW_COLUMN, TABLE_PROPERTIES
    from mlcycle.data._delta_files import commit_files, write_data_files, writer_properties

    rows = np.arange(table.num_rows, dtype=np.int64)
    numbered = canonical(table).append_column(ROW_COLUMN, pa.array(rows))
    plain = (ROW_COLUMN,)
    tables = iter(range(2 * repeats))

    def ours() -> Path:
        uri = folder / f"ours-{next(tables)}"
        files = write_data_files(str(uri), numbered, plain=plain)
        commit_files(
            str(uri),
            None,
            files,
            mode="overwrite",
            schema=numbered.schema,
            storage_options=None,
            configuration=TABLE_PROPERTIES,
            commit_properties=None,
        )
        return uri

    def delta_rs() -> Path:
        uri = folder / f"delta-rs-{next(tables)}"
        properties = writer_properties(numbered.schema, plain=plain)
        write_deltalake(str(uri), numbered, mode="overwrite", writer_properties=properties)
        return uri

    found: dict[str, Any] = {}
    for test, action in (("write_files", ours), ("write_deltalake", delta_rs)):
        log(f"{test} (the write alone) x{repeats}")
        figures, uri = timed(action, repeats)
        figures["delta_data_mb"] = sum(p.stat().st_size for p in uri.rglob("*.parquet")) / 1e6
        figures["mb_per_s"] = figures["delta_data_mb"] / figures["median_s"]
        found[test] = figures
    shutil.rmtree(folder, ignore_errors=True)
    return found


def pandas_profile(frame: pd.DataFrame, categorical: list[str]) -> None:
    """The incumbent profile: ``describe(include="all")`` and each categorical's counts."""
    frame.describe(include="all")
    for name in categorical:
        frame[name].value_counts(dropna=False)


def schema_rules(schema: Any) -> dict[str, int]:
    """How many rules of each kind the inferred schema holds (pandera checks the same)."""
    columns = schema.columns
    return {
        "dtype": len(columns),
        "required": sum(c.required for c in columns),
        "max_missing_fraction": sum(not c.required for c in columns),
        "bounds": sum((c.min is not None) + (c.max is not None) for c in columns),
        "domain": sum(c.domain is not None for c in columns),
        "key": len(schema.key),
    }


# --- pandera --------------------------------------------------------------------------------


def ensure_pandera(version: str) -> Path:
    """pandera in its throwaway venv, with the same pandas, numpy and pyarrow as ours."""
    pins = [f"{name}=={metadata.version(name)}" for name in ("pandas", "numpy", "pyarrow")]
    return incumbent_python("pandera", version, requirement="pandera[pandas]", pins=pins, log=log)


def run_pandera(python: Path, label: str, ours: dict[str, Any], *, repeats: int) -> dict[str, Any]:
    """The pandera side on the same Parquet file and rules, in its own process."""
    parquet, spec = ours["_spec"]
    command = [str(python), str(HERE / "_pandera_side.py"), parquet, spec, str(repeats)]
    log(f"pandera on {label} x{repeats} (string and category layouts)")
    started = time.perf_counter()
    result = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        check=False,
        timeout=SIDE_TIMEOUT_S,
    )
    log(f"  done in {time.perf_counter() - started:.1f} s (exit {result.returncode})")
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        log(f"  FAILED:\n{tail}")
        return {"error": tail.splitlines()[-1] if tail else f"exit {result.returncode}"}
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


# --- figures --------------------------------------------------------------------------------


def seconds(figures: dict[str, Any] | None, test: str) -> float | None:
    """The median seconds of ``test``."""
    value = ((figures or {}).get(test) or {}).get("median_s")
    return float(value) if value is not None else None


def verdict(value: float | None, *, at_most: float | None = None, at_least: float = 0.0) -> str:
    """PASS, MISS or n/a for ``value`` against its bound."""
    if value is None:
        return "n/a"
    passed = value <= at_most if at_most is not None else value >= at_least
    return "PASS" if passed else "MISS"


def goals(synthetic: dict[str, Any]) -> dict[str, Any]:
    """The goals of issue 3 on the synthetic table, each source and layout on its own row."""
    found: dict[str, Any] = {}
    profile_s = seconds(synthetic, "profile")
    found["profile"] = {
        "label": "`profile_table` of the synthetic table",
        "value": profile_s,
        "unit": "s",
        "goal": f"≤ {PROFILE_GOAL_S} s",
        "verdict": verdict(profile_s, at_most=PROFILE_GOAL_S),
    }
    for layout in ("string", "category"):
        ours = seconds(synthetic, f"check_{layout}")
        theirs = seconds(synthetic.get("pandera"), layout)
        ratio = theirs / ours if ours and theirs else None
        goal_row = layout == "string"  # the plain layout is what a frame or Delta table gives
        found[f"validate_{layout}"] = {
            "label": f"`check` vs pandera, categoricals as {layout}"
            + (" (the goal)" if goal_row else " (for reference)"),
            "value": ratio,
            "unit": "x",
            "goal": f"≥ {VALIDATE_GOAL_X:.0f}x",
            "verdict": verdict(ratio, at_least=VALIDATE_GOAL_X),
        }
    for kind, title in (("dataframe", "DataFrame"), ("parquet", "Parquet file")):
        no_change = seconds(synthetic, f"reregister_{kind}")
        found[f"no_change_{kind}"] = {
            "label": f"no-change re-register, {title}",
            "value": no_change,
            "unit": "s",
            "goal": f"≤ {NO_CHANGE_GOAL_S} s",
            "verdict": verdict(no_change, at_most=NO_CHANGE_GOAL_S),
        }
    for kind, title in (("dataframe", "DataFrame"), ("parquet", "Parquet file")):
        rate = synthetic.get(f"register_{kind}", {}).get("mb_per_s")
        found[f"write_rate_{kind}"] = {
            "label": f"register (first version) from a {title}, Parquet written",
            "value": rate,
            "unit": "MB/s",
            "goal": f"≥ {WRITE_GOAL_MB_S:.0f} MB/s",
            "verdict": verdict(rate, at_least=WRITE_GOAL_MB_S),
        }
    return found


def versions(results: dict[str, Any]) -> dict[str, Any]:
    """Versions of everything measured."""
    side = results["synthetic"].get("pandera", {}).get("versions", {})
    ours = {
        name: metadata.version(name)
        for name in ("mlcycle", "deltalake", "pyarrow", "pandas", "numpy")
    }
    return {**ours, "pandera": side.get("pandera"), "pandas_pandera_env": side.get("pandas")}


# --- the table ------------------------------------------------------------------------------


def fmt_s(value: float | None) -> str:
    """Seconds for the table."""
    if value is None:
        return "-"
    return f"{value * 1000:,.1f} ms" if value < 10 else f"{value:,.1f} s"


def fmt_x(ours: float | None, theirs: float | None) -> str:
    """How many times faster ours is."""
    return f"{theirs / ours:,.1f}x" if ours and theirs else "-"


def print_table(report: dict[str, Any]) -> None:
    """The figures as Markdown tables (pasted into docs/benchmarks.md)."""
    results = report["results"]
    header = ["measurement", *(dataset_title(results[d]) for d in results)]
    rows = [header, ["---"] * len(header)]

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> None:
        rows.append([label, *(cell(results[d]) for d in results)])

    for kind, title in (("dataframe", "pandas DataFrame"), ("parquet", "Parquet file")):
        row(
            f"register, first version, from a {title}",
            lambda r, k=kind: (
                f"{fmt_s(seconds(r, f'register_{k}'))} "
                f"({r[f'register_{k}']['mb_per_s']:,.0f} MB/s of "
                f"{r[f'register_{k}']['delta_data_mb']:,.1f} MB)"
            ),
        )
    for test, title in (
        ("write_files", "the write alone: pyarrow files + one Delta commit (what register does)"),
        ("write_deltalake", "the write alone: `write_deltalake`, same table and options"),
    ):
        row(
            title,
            lambda r, k=test: (
                f"{fmt_s(seconds(r, k))} ({r[k]['mb_per_s']:,.0f} MB/s of "
                f"{r[k]['delta_data_mb']:,.1f} MB)"
            ),
        )
    for kind, title in (("dataframe", "DataFrame"), ("parquet", "Parquet file")):
        row(
            f"no-change re-register, same {title}",
            lambda r, k=kind: (
                fmt_s(seconds(r, f"reregister_{k}"))
                + ("" if r[f"reregister_{k}"]["no_new_version"] else " (NEW VERSION!)")
            ),
        )
    row("`profile_table`", lambda r: fmt_s(seconds(r, "profile")))
    row(
        "pandas `describe(include='all')` + `value_counts`",
        lambda r: (
            f"{fmt_s(seconds(r, 'pandas_profile'))} "
            f"(ours {fmt_x(seconds(r, 'profile'), seconds(r, 'pandas_profile'))} faster)"
        ),
    )
    row("`infer_schema` from the profile", lambda r: fmt_s(seconds(r, "infer_from_profile")))
    row("`infer_schema` from the table", lambda r: fmt_s(seconds(r, "infer_from_table")))
    for layout in ("string", "category"):
        arrow = "string" if layout == "string" else "dictionary<string>"
        row(
            f"`check`, categoricals as Arrow `{arrow}`",
            lambda r, k=layout: (
                fmt_s(seconds(r, f"check_{k}")) + ("" if r[f"check_{k}"]["ok"] else " (NOT OK!)")
            ),
        )
        pandas_dtype = "str" if layout == "string" else "category"
        row(
            f"pandera `validate(lazy=True)`, categoricals as pandas `{pandas_dtype}`",
            lambda r, k=layout: pandera_cell(r, k),
        )
    row("`check` of the pandas DataFrame (Arrow conversion inside)", check_dataframe_cell)
    for line in rows:
        print("| " + " | ".join(line) + " |")
    print()
    goal_rows = [["goal (synthetic table)", "figure", "goal", ""], ["---"] * 4]
    for goal in report["goals"].values():
        value = goal["value"]
        if value is None:
            shown = "-"
        elif goal["unit"] == "x":
            shown = f"{value:,.1f}x"
        elif goal["unit"] == "MB/s":
            shown = f"{value:,.0f} MB/s"
        else:
            shown = fmt_s(value)
        goal_rows.append([goal["label"], shown, goal["goal"], goal["verdict"]])
    for line in goal_rows:
        print("| " + " | ".join(line) + " |")
    print()


def dataset_title(results: dict[str, Any]) -> str:
    """A column header: rows x columns."""
    return f"{results['rows']:,} x {results['columns']}"


def pandera_cell(results: dict[str, Any], layout: str) -> str:
    """pandera's time, and how many times faster ours is."""
    side = results.get("pandera") or {}
    if "error" in side:
        return "failed"
    theirs = seconds(side, layout)
    if theirs is None:
        return "-"
    failures = side[layout].get("failures")
    note = "" if failures == 0 else f", {failures} FAILURES"
    return f"{fmt_s(theirs)} (ours {fmt_x(seconds(results, f'check_{layout}'), theirs)}{note})"


def check_dataframe_cell(results: dict[str, Any]) -> str:
    """``check`` of the DataFrame, against pandera on strings."""
    ours = seconds(results, "check_dataframe")
    theirs = seconds(results.get("pandera"), "string")
    return f"{fmt_s(ours)} (vs pandera `str`: {fmt_x(ours, theirs)})"


if __name__ == "__main__":
    sys.exit(main())
