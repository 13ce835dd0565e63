"""Registry benchmark: register, load, predict and gate models on the Bike Sharing data.

Run ``.venv/bin/python benchmarks/registry.py`` (or ``make bench-registry``). In a fresh
workspace (SQLite and a local artifact store under ``benchmarks/.work/``) it trains the
demo's models on the demo's time split and features, plus XGBoost, LightGBM and a small
custom (pyfunc) model, and times: registering each flavor (scikit-learn with and without
the ONNX copy), loading each flavor once the libraries are imported (warm) and in a fresh
process (cold: time to the first prediction), single-row and 64-row predictions of the
gradient boosting model as scikit-learn and as ONNX (with the worst difference on the
whole test split), and a full gate evaluation. It prints Markdown tables and, as its last
line, one JSON object with every figure. ``--quick`` is a small workload for a smoke test.
The figures are recorded in ``docs/benchmarks.md``.
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
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"
RUN_DIR = WORK / f"registry-run-{os.getpid()}"  # per invocation: two benchmarks may run at once
CHILD_TIMEOUT_S = 300

sys.path.insert(0, str(HERE))
from _registry_models import HourlyMeans  # noqa: E402  (the pyfunc model: importable by path)
from tracking import machine  # noqa: E402  (the same machine record as the tracking benchmark)

# Goals of issue 4.
LOAD_GOAL_S = 0.2
ONNX_SPEEDUP_GOAL_X = 5.0
RELATIVE_TOLERANCE = 1e-5
ABSOLUTE_TOLERANCE = 1e-6
BATCH_ROWS = 64
MODEL_NAME = "bike-demand"


@dataclass(frozen=True)
class Workload:
    """How much of everything one invocation does."""

    register_repeats: int
    load_repeats: int
    cold_repeats: int
    single_calls: int
    batch_calls: int
    rounds: int
    evaluate_repeats: int
    boosting_rounds: int | None  # None: the demo's 300 iterations


FULL = Workload(
    register_repeats=5,
    load_repeats=20,
    cold_repeats=3,
    single_calls=2_000,
    batch_calls=500,
    rounds=5,
    evaluate_repeats=3,
    boosting_rounds=None,
)
QUICK = Workload(
    register_repeats=2,
    load_repeats=3,
    cold_repeats=1,
    single_calls=50,
    batch_calls=10,
    rounds=2,
    evaluate_repeats=1,
    boosting_rounds=20,
)

# (key, title, flavor the version is stored as, how to load it)
MODELS = (
    ("gbm", "scikit-learn HistGradientBoostingRegressor (the demo's gbm)", "sklearn", "native"),
    ("ridge", "scikit-learn pipeline: one-hot + Ridge (the demo's ridge)", "sklearn", "native"),
    ("gbm_onnx", "ONNX copy of the gbm, `load(runtime='onnx')`", "sklearn", "onnx"),
    ("onnx", "ONNX model registered as such (the gbm converted)", "onnx", "native"),
    ("xgboost", "XGBoost XGBRegressor", "xgboost", "native"),
    ("lightgbm", "LightGBM LGBMRegressor", "lightgbm", "native"),
    ("pyfunc", "pyfunc: custom class `HourlyMeans` (`trust=True`)", "pyfunc", "native"),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables, then the JSON line."""
    args = parse_args(argv)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    try:
        report = measure(args)
    finally:
        if not args.keep:
            shutil.rmtree(RUN_DIR, ignore_errors=True)
    print_tables(report)
    sys.stdout.write(json.dumps(report, default=str) + "\n")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a small workload (smoke test)")
    parser.add_argument("--keep", action="store_true", help=f"keep the stores in {RUN_DIR.name}")
    return parser.parse_args(argv)


def log(message: str) -> None:
    """Progress goes to stderr so stdout is the tables and the JSON line."""
    sys.stderr.write(f"[bench-registry] {message}\n")
    sys.stderr.flush()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of the report."""
    from threadpoolctl import threadpool_limits

    from mlcycle import Workspace
    from mlcycle.settings import RegistrySettings, Settings

    workload = QUICK if args.quick else FULL
    report: dict[str, Any] = {
        "benchmark": "registry",
        "quick": args.quick,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "workload": asdict(workload),
    }
    home = RUN_DIR / "home"
    plain = Settings(home=RUN_DIR / "home-no-onnx", registry=RegistrySettings(convert_onnx=False))
    # One OpenMP thread, as the demo trains and as the gates time a prediction: on a
    # shared 2-core machine a spinning OpenMP pool makes every figure noise.
    with (
        threadpool_limits(limits=1, user_api="openmp"),
        Workspace.open(Settings(home=home)) as ws,
        Workspace.open(plain) as ws_plain,
    ):
        log("registering dataset bike and splitting it as the demo does")
        bike = BikeData.load(ws)
        models = train(bike, workload)
        report["register"] = registrations(ws, ws_plain, models, bike, workload)
        refs = report["register"].pop("_refs")
        report["load_warm"] = warm_loads(ws, refs, bike, workload)
        report["predict"] = predict_latency(ws, refs["gbm"], bike, workload)
        report["evaluate"] = evaluations(ws, models["gbm"], bike, workload)
        ws.flush()
    report["load_cold"] = cold_loads(home, refs, bike, workload)
    report["goals"] = goals(report)
    report["versions"] = versions()
    report["load_average_end"] = os.getloadavg()
    return report


# --- the data and the models ----------------------------------------------------------------


@dataclass
class BikeData:
    """The demo's dataset version, split by time, with its features and target."""

    ref: str
    train: pd.DataFrame
    test: pd.DataFrame
    features: list[str]
    target: str

    @classmethod
    def load(cls, ws: Any) -> BikeData:  # Any: a Workspace
        """Register the bundled CSV as the demo does and split it at the demo's date."""
        from _bike import CATEGORICAL, DATASET, NUMERIC, TARGET
        from _bike import split as _split
        from mlcycle.datasets import BIKE_SHARING_HOURLY

        version = ws.data.register(
            DATASET, BIKE_SHARING_HOURLY, time_column="dteday", key=["dteday", "hr"]
        )
        ref = f"{version.name}/{version.version}"
        train, test = _split(ws.data.load(ref))
        return cls(ref, train, test, CATEGORICAL + NUMERIC, TARGET)

    @property
    def x_train(self) -> pd.DataFrame:
        """The training features."""
        return self.train[self.features]

    @property
    def x_test(self) -> pd.DataFrame:
        """The test features."""
        return self.test[self.features]

    @property
    def example(self) -> pd.DataFrame:
        """The input example registered with every version, as the demo's."""
        return self.x_test.head(5)


def train(bike: BikeData, workload: Workload) -> dict[str, Any]:
    """Every model the benchmark registers, fitted on the training months."""
    import lightgbm
    import xgboost

    from _bike import model as bike_model
    from mlcycle.registry import convert_to_onnx

    models: dict[str, Any] = {}
    for kind in ("gbm", "ridge"):
        model = bike_model(kind)
        if kind == "gbm" and workload.boosting_rounds is not None:
            model.set_params(max_iter=workload.boosting_rounds)
        log(f"training the demo's {kind}")
        models[kind] = model.fit(bike.x_train, bike.train[bike.target])
    rounds = workload.boosting_rounds or 300
    boosters = {
        "xgboost": xgboost.XGBRegressor(
            n_estimators=rounds, learning_rate=0.1, max_leaves=31, tree_method="hist", n_jobs=1
        ),
        "lightgbm": lightgbm.LGBMRegressor(
            n_estimators=rounds, learning_rate=0.1, num_leaves=31, n_jobs=1, verbose=-1
        ),
    }
    for kind, model in boosters.items():
        log(f"training {kind} ({rounds} rounds)")
        models[kind] = model.fit(bike.x_train, bike.train[bike.target])
    models["pyfunc"] = HourlyMeans().fit(bike.x_train, bike.train[bike.target])
    models["onnx"] = convert_to_onnx(models["gbm"], bike.example)
    return models


# --- timing helpers -------------------------------------------------------------------------


def timed(action: Callable[[], Any], repeats: int) -> tuple[dict[str, Any], Any]:
    """Median, best and every time of ``repeats`` calls; and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return summary(times), result


def summary(times: Sequence[float], *, keep: bool = True) -> dict[str, Any]:
    """Median, p99, best and (unless ``keep`` is false) every time, in seconds."""
    figures: dict[str, Any] = {
        "count": len(times),
        "median_s": statistics.median(times),
        "p99_s": float(np.percentile(times, 99)),
        "best_s": min(times),
    }
    if keep:
        figures["times_s"] = list(times)
    return figures


# --- register -------------------------------------------------------------------------------


def registrations(
    ws: Any, ws_plain: Any, models: dict[str, Any], bike: BikeData, workload: Workload
) -> dict[str, Any]:  # Any: Workspaces
    """Register each flavor ``register_repeats`` times; the refs to load come back in ``_refs``.

    The scikit-learn models are registered in both workspaces: with the ONNX copy
    (``registry.convert_onnx``, the default) and without it.
    """
    results: dict[str, Any] = {}
    refs: dict[str, str] = {}
    cases = [
        ("gbm", ws, "gbm"),
        ("gbm_no_onnx", ws_plain, "gbm"),
        ("ridge", ws, "ridge"),
        ("ridge_no_onnx", ws_plain, "ridge"),
        ("onnx", ws, "onnx"),
        ("xgboost", ws, "xgboost"),
        ("lightgbm", ws, "lightgbm"),
        ("pyfunc", ws, "pyfunc"),
    ]
    for label, where, kind in cases:
        name = f"bench-{label.replace('_', '-')}"
        # pickle is never chosen by itself: the pyfunc flavor is asked for by name
        options = {"input_example": bike.example, "flavor": "pyfunc" if kind == "pyfunc" else None}
        where.registry.register(f"{name}-warm-up", models[kind], **options)
        log(f"register {label} x{workload.register_repeats}")
        figures, version = timed(
            lambda w=where, n=name, k=kind, o=options: w.registry.register(n, models[k], **o),
            workload.register_repeats,
        )
        figures.update(flavor=version.flavor, size_bytes=version.size, tags=dict(version.tags))
        results[label] = figures
        if where is ws:
            refs[label] = version.ref
    refs["gbm_onnx"] = refs["gbm"]
    results["_refs"] = refs
    return results


# --- load, warm and cold --------------------------------------------------------------------


def load_options(key: str) -> dict[str, Any]:
    """The ``load`` arguments of each benchmarked model."""
    runtime = next(how for k, _, _, how in MODELS if k == key)
    return {"runtime": runtime, "trust": key == "pyfunc"}


def warm_loads(
    ws: Any, refs: dict[str, str], bike: BikeData, workload: Workload
) -> dict[str, Any]:  # Any: a Workspace
    """``registry.load`` of each model once its libraries are imported (one untimed load first)."""
    results: dict[str, Any] = {}
    for key, *_ in MODELS:
        options = load_options(key)
        ws.registry.load(refs[key], **options).predict(bike.example)  # imports, first call
        log(f"warm load {key} x{workload.load_repeats}")
        figures, loaded = timed(
            lambda k=key, o=options: ws.registry.load(refs[k], **o), workload.load_repeats
        )
        figures["ref"] = refs[key]
        figures["predicts"] = bool(np.isfinite(loaded.predict(bike.example)).all())
        results[key] = figures
    return results


COLD_CHILD = """
import json, sys, time
started = time.time()
import mlcycle
from mlcycle import Workspace
from mlcycle.settings import Settings
imported = time.time()
import pandas as pd
home, ref, runtime, trust, row = sys.argv[1:6]
ws = Workspace.open(Settings(home=home))
opened = time.time()
model = ws.registry.load(ref, runtime=runtime, trust=trust == "1")
loaded = time.time()
row = json.loads(row)
prediction = model.predict(pd.DataFrame(row["records"]).astype(row["dtypes"]))
predicted = time.time()
ws.close()
print(json.dumps({"started": started, "imported": imported, "opened": opened,
                  "loaded": loaded, "predicted": predicted, "prediction": float(prediction[0])}))
"""


def cold_loads(
    home: Path, refs: dict[str, str], bike: BikeData, workload: Workload
) -> dict[str, Any]:
    """A fresh process per load: import mlcycle, open the workspace, load, predict one row."""
    first = bike.example.head(1)
    row = json.dumps(
        {
            "records": first.to_dict(orient="records"),
            "dtypes": {name: str(dtype) for name, dtype in first.dtypes.items()},
        }
    )
    env = {**os.environ, "PYTHONPATH": str(HERE), "PYTHONWARNINGS": "ignore"}
    results: dict[str, Any] = {}
    for key, *_ in MODELS:
        options = load_options(key)
        log(f"cold start {key} x{workload.cold_repeats}")
        runs = []
        for _ in range(workload.cold_repeats):
            command = [
                sys.executable,
                "-c",
                COLD_CHILD,
                str(home),
                refs[key],
                options["runtime"],
                "1" if options["trust"] else "0",
                row,
            ]
            spawned = time.time()
            done = subprocess.run(
                command,
                cwd=RUN_DIR,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=CHILD_TIMEOUT_S,
            )
            if done.returncode != 0:
                log(f"  FAILED:\n{done.stderr.strip()[-2000:]}")
                results[key] = {"error": done.stderr.strip().splitlines()[-1]}
                break
            marks = json.loads(done.stdout.strip().splitlines()[-1])
            runs.append(
                {
                    "first_prediction_s": marks["predicted"] - spawned,
                    "python_start_s": marks["started"] - spawned,
                    "import_mlcycle_s": marks["imported"] - marks["started"],
                    "open_workspace_s": marks["opened"] - marks["imported"],
                    "load_s": marks["loaded"] - marks["opened"],
                    "first_predict_s": marks["predicted"] - marks["loaded"],
                }
            )
        else:
            results[key] = {
                part: statistics.median(run[part] for run in runs) for part in runs[0]
            } | {"runs": runs}
    return results


# --- predict --------------------------------------------------------------------------------


def predict_latency(
    ws: Any, ref: str, bike: BikeData, workload: Workload
) -> dict[str, Any]:  # Any: a Workspace
    """Single-row and 64-row latency of the gbm as scikit-learn and as ONNX; same predictions?"""
    native = ws.registry.load(ref)
    onnx = ws.registry.load(ref, runtime="onnx")
    session = onnx.model
    (input_name,) = (spec.name for spec in session.get_inputs())
    test = bike.x_test
    n = len(test)
    singles = [test.iloc[[i % n]] for i in range(workload.single_calls)]
    starts = [(i * BATCH_ROWS) % (n - BATCH_ROWS) for i in range(workload.batch_calls)]
    batches = [test.iloc[s : s + BATCH_ROWS] for s in starts]

    def arrays(frames: list[pd.DataFrame]) -> list[np.ndarray]:
        return [np.ascontiguousarray(f.to_numpy(dtype=np.float64)) for f in frames]

    variants: dict[str, tuple[Callable[[Any], Any], list[Any], list[Any]]] = {
        "sklearn": (native.predict, singles, batches),
        "onnx": (onnx.predict, singles, batches),
        "sklearn_raw": (native.model.predict, singles, batches),
        "onnx_raw": (
            lambda x: session.run(None, {input_name: x}),
            arrays(singles),
            arrays(batches),
        ),
    }
    results: dict[str, Any] = {}
    for size, position in (("single", 1), ("batch64", 2)):
        log(f"predict {size}: {len(variants['sklearn'][position])} calls per variant")
        chosen = {name: (v[0], v[position]) for name, v in variants.items()}
        timings = interleaved(chosen, rounds=workload.rounds)
        results[size] = {name: summary(times, keep=False) for name, times in timings.items()}
    results["single_sklearn_default_threads"] = default_threads(native.predict, singles, workload)
    for size in ("single", "batch64"):
        figures = results[size]
        figures["ratio"] = figures["sklearn"]["median_s"] / figures["onnx"]["median_s"]
        figures["ratio_raw"] = figures["sklearn_raw"]["median_s"] / figures["onnx_raw"]["median_s"]
    results["same_predictions"] = compare(native.predict(test), onnx.predict(test))
    results["same_predictions"]["raw"] = compare(
        native.model.predict(test),
        session.run(None, {input_name: arrays([test])[0]})[0].ravel(),
    )
    return results


def interleaved(
    variants: dict[str, tuple[Callable[[Any], Any], list[Any]]], *, rounds: int
) -> dict[str, list[float]]:
    """Each variant's calls split into ``rounds`` chunks, the variants taking turns per chunk.

    Taking turns spreads a burst of load from other jobs over every variant instead of one.
    """
    timings: dict[str, list[float]] = {name: [] for name in variants}
    for call, inputs in variants.values():
        call(inputs[0])  # first call: lazy initialisation is not a serving latency
    for chunk in range(rounds):
        for name, (call, inputs) in variants.items():
            size = -(-len(inputs) // rounds)
            for item in inputs[chunk * size : (chunk + 1) * size]:
                began = time.perf_counter()
                call(item)
                timings[name].append(time.perf_counter() - began)
    return timings


def default_threads(
    call: Callable[[Any], Any], singles: list[pd.DataFrame], workload: Workload
) -> dict[str, Any]:
    """Single-row scikit-learn latency with OpenMP's default thread count (for reference)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=os.cpu_count(), user_api="openmp"):
        count = max(1, len(singles) // 4)
        return summary(interleaved({"x": (call, singles[:count])}, rounds=1)["x"], keep=False)


def compare(expected: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    """Worst absolute and relative difference; whether every value is within tolerance."""
    expected = np.asarray(expected, dtype=np.float64).ravel()
    got = np.asarray(got, dtype=np.float64).ravel()
    difference = np.abs(got - expected)
    relative = difference / np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
    within = (difference <= ABSOLUTE_TOLERANCE) | (relative <= RELATIVE_TOLERANCE)
    return {
        "rows": int(expected.size),
        "max_abs_diff": float(difference.max(initial=0.0)),
        "max_rel_diff": float(np.where(difference == 0, 0.0, relative).max(initial=0.0)),
        "outside_tolerance": int((~within).sum()),
        "within_tolerance": bool(within.all()),
    }


# --- gates ----------------------------------------------------------------------------------


def evaluations(
    ws: Any, gbm: Any, bike: BikeData, workload: Workload
) -> dict[str, Any]:  # Any: a Workspace, an estimator
    """``registry.evaluate`` of the demo's gbm on the test months, as the demo runs it.

    Two versions are registered from a run that recorded the split. The first is evaluated
    with no production version (the first demo), then promoted; the second is evaluated
    against it (a later demo: the regression gate loads and scores production too).
    """
    from _bike import EXPERIMENT, SPLIT_DATE

    with ws.start_run(EXPERIMENT, name="gbm") as run:
        run.log_split(bike.ref, bike.train, bike.test, time_column="dteday", test_from=SPLIT_DATE)
        first = ws.registry.register(MODEL_NAME, gbm, run=run, input_example=bike.example)
        second = ws.registry.register(MODEL_NAME, gbm, run=run, input_example=bike.example)

    def evaluate(version: Any) -> Any:
        return ws.registry.evaluate(
            version.ref, bike.test, train_data=bike.train, target=bike.target
        )

    results: dict[str, Any] = {}
    for label, version in (("no_production", first), ("against_production", second)):
        log(f"evaluate gbm ({label.replace('_', ' ')}) x{workload.evaluate_repeats} + 1")
        first_call, _ = timed(lambda v=version: evaluate(v), 1)  # imports SHAP and the like
        figures, evaluation = timed(lambda v=version: evaluate(v), workload.evaluate_repeats)
        figures["first_call_s"] = first_call["median_s"]
        figures["evaluate_gates_s"] = evaluation.duration_s
        figures["passed"] = evaluation.passed
        figures["gates"] = {r.name: r.passed for r in evaluation.results}
        figures["metrics"] = evaluation.metrics
        figures["rows"] = evaluation.rows
        results[label] = figures
        if label == "no_production":
            ws.registry.promote(MODEL_NAME, first.version, to="production", reason="benchmark")
    results["breakdown"] = gate_breakdown(ws, first, second, bike)
    return results


def gate_breakdown(ws: Any, production: Any, candidate: Any, bike: BikeData) -> dict[str, Any]:
    """``evaluate_gates`` alone, with and without the importance step (no store work)."""
    from mlcycle.registry import GateInputs, evaluate_gates

    loaded = ws.registry.load(candidate.ref)
    inputs: dict[str, Any] = {
        "target": bike.target,
        "settings": ws.registry.settings.gates_for(MODEL_NAME),
        "production": ws.registry.load(production.ref),
        "train": bike.train,
    }
    figures: dict[str, Any] = {}
    for label, importance in (("with_importance", True), ("without_importance", False)):
        gate_inputs = GateInputs(loaded, bike.test, importance=importance, **inputs)
        figures[label], _ = timed(lambda g=gate_inputs: evaluate_gates(g), 1)
    return figures


# --- figures --------------------------------------------------------------------------------


def verdict(*, passed: bool | None) -> str:
    """PASS, MISS or n/a."""
    return "n/a" if passed is None else ("PASS" if passed else "MISS")


def goals(report: dict[str, Any]) -> dict[str, Any]:
    """The goals of issue 4: loads within budget; ONNX single-row 5x faster, same predictions."""
    found: dict[str, Any] = {}
    for key, title, *_ in MODELS:
        value = report["load_warm"].get(key, {}).get("median_s")
        found[f"load_{key}"] = {
            "label": f"load, warm: {title}",
            "value": value,
            "unit": "s",
            "goal": f"≤ {LOAD_GOAL_S * 1000:.0f} ms",
            "verdict": verdict(passed=None if value is None else value <= LOAD_GOAL_S),
        }
    single = report["predict"]["single"]
    same = report["predict"]["same_predictions"]
    found["onnx_speedup"] = {
        "label": "ONNX single-row predict vs scikit-learn (`LoadedModel.predict`, medians)",
        "value": single["ratio"],
        "unit": "x",
        "goal": f"≥ {ONNX_SPEEDUP_GOAL_X:.0f}x",
        "verdict": verdict(passed=single["ratio"] >= ONNX_SPEEDUP_GOAL_X),
    }
    found["same_predictions"] = {
        "label": f"same predictions on the {same['rows']:,} test rows (worst difference)",
        "value": same["max_abs_diff"],
        "unit": "abs",
        "goal": f"within {RELATIVE_TOLERANCE:g} rel. or {ABSOLUTE_TOLERANCE:g} abs.",
        "verdict": verdict(passed=same["within_tolerance"]),
    }
    return found


def versions() -> dict[str, Any]:
    """Versions of everything measured."""
    names = {
        "mlcycle": "mlcycle",
        "scikit-learn": "scikit-learn",
        "skops": "skops",
        "onnx": "onnx",
        "onnxruntime": "onnxruntime",
        "skl2onnx": "skl2onnx",
        "xgboost": "xgboost-cpu",
        "lightgbm": "lightgbm",
        "shap": "shap",
        "numpy": "numpy",
        "pandas": "pandas",
    }
    found: dict[str, Any] = {}
    for label, distribution in names.items():
        try:
            found[label] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            found[label] = None
    return found


# --- the tables -----------------------------------------------------------------------------


def ms(value: float | None) -> str:
    """Seconds as milliseconds (microseconds below 1 ms) for the tables."""
    if value is None:
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:,.0f} µs"
    return f"{value * 1000:,.1f} ms"


def print_tables(report: dict[str, Any]) -> None:
    """The figures as Markdown tables (pasted into docs/benchmarks.md)."""
    table(
        ["model (flavor)", "register", "register, no ONNX copy", "load, warm", "cold start"],
        [model_row(report, key, title, flavor) for key, title, flavor, _ in MODELS],
    )
    predict = report["predict"]
    rows = []
    for size, title in (("single", "1 row"), ("batch64", f"{BATCH_ROWS} rows")):
        figures = predict[size]
        for via, (ours, theirs) in (
            ("`LoadedModel.predict`", ("sklearn", "onnx")),
            ("raw `model.predict` / `session.run`", ("sklearn_raw", "onnx_raw")),
        ):
            ratio = figures["ratio"] if ours == "sklearn" else figures["ratio_raw"]
            rows.append(
                [
                    f"{title}, {via}",
                    f"{ms(figures[ours]['median_s'])} / {ms(figures[ours]['p99_s'])}",
                    f"{ms(figures[theirs]['median_s'])} / {ms(figures[theirs]['p99_s'])}",
                    f"{ratio:,.1f}x",
                ]
            )
    reference = predict["single_sklearn_default_threads"]
    rows.append(
        [
            f"1 row, `LoadedModel.predict`, scikit-learn with {os.cpu_count()} OpenMP threads",
            f"{ms(reference['median_s'])} / {ms(reference['p99_s'])}",
            "",
            "",
        ]
    )
    table(["gbm predict latency", "scikit-learn median / p99", "ONNX median / p99", "ratio"], rows)
    same = predict["same_predictions"]
    print(
        f"Predictions on the {same['rows']:,} test rows: worst difference "
        f"{same['max_abs_diff']:.3g} absolute, {same['max_rel_diff']:.3g} relative; "
        f"{same['outside_tolerance']} outside tolerance.\n"
    )
    evaluate = report["evaluate"]
    rows = []
    for label in ("no_production", "against_production"):
        figures = evaluate[label]
        rows.append(
            [
                f"`evaluate` gbm, {label.replace('_', ' ')}",
                f"{ms(figures['median_s'])} (`evaluate_gates` {ms(figures['evaluate_gates_s'])})",
                "passed" if figures["passed"] else "FAILED",
            ]
        )
    breakdown = evaluate["breakdown"]
    for label in ("with_importance", "without_importance"):
        rows.append(
            [
                f"`evaluate_gates` alone, {label.replace('_', ' ')}",
                ms(breakdown[label]["median_s"]),
                "",
            ]
        )
    table(["gate evaluation", "time (median)", "verdict"], rows)
    goal_rows = []
    for goal in report["goals"].values():
        value = goal["value"]
        if value is None:
            shown = "-"
        elif goal["unit"] == "x":
            shown = f"{value:,.1f}x"
        elif goal["unit"] == "abs":
            shown = f"{value:.3g}"
        else:
            shown = ms(value)
        goal_rows.append([goal["label"], shown, goal["goal"], goal["verdict"]])
    table(["goal", "figure", "goal", ""], goal_rows)


def model_row(report: dict[str, Any], key: str, title: str, flavor: str) -> list[str]:
    """One model's register, load and cold-start cells."""
    register = report["register"]
    registered = register.get(key, {}).get("median_s")
    plain = register.get(f"{key}_no_onnx", {}).get("median_s")
    cold = report["load_cold"].get(key, {})
    cold_cell = (
        f"{ms(cold['first_prediction_s'])} (import {ms(cold['import_mlcycle_s'])}, "
        f"load {ms(cold['load_s'])}, predict {ms(cold['first_predict_s'])})"
        if "first_prediction_s" in cold
        else cold.get("error", "-")
    )
    return [
        f"{title} ({flavor})",
        ms(registered) if key != "gbm_onnx" else "(the gbm's copy)",
        ms(plain),
        ms(report["load_warm"][key]["median_s"]),
        cold_cell,
    ]


def table(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table."""
    for line in [header, ["---"] * len(header), *rows]:
        print("| " + " | ".join(line) + " |")
    print()


if __name__ == "__main__":
    sys.exit(main())
