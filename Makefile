# The two commands of the README: `make demo` and `make test`.
# Both build .venv from uv.lock first; only python3, make and git are needed.

PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
UV := $(VENV)/bin/uv
export UV_COMPILE_BYTECODE := 1
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: demo test check env clean bench bench-data bench-registry bench-pipelines bench-serving bench-serving-shadow bench-monitoring

# The demo's project is demo/, made afresh each time: the demo replays its days once per project.
demo: $(VENV)/.synced
	rm -rf demo
	$(VENV)/bin/mlcycle --home demo demo

test: $(VENV)/.synced
	$(VENV)/bin/pytest

# The tracking benchmark against MLflow (installed in benchmarks/.work/, never in uv.lock);
# BENCH_ARGS=--quick for a smaller run. Figures: docs/benchmarks.md.
bench: $(VENV)/.synced
	$(VENV)/bin/python benchmarks/tracking.py $(BENCH_ARGS)

# The data benchmark against pandas and pandera (pandera in benchmarks/.work/, never in
# uv.lock); BENCH_ARGS=--quick for 200,000 rows. Figures: docs/benchmarks.md.
bench-data: $(VENV)/.synced
	$(VENV)/bin/python benchmarks/data.py $(BENCH_ARGS)

# The registry benchmark: register, load (warm and cold), scikit-learn vs ONNX predict
# latency and a gate evaluation on Bike Sharing; BENCH_ARGS=--quick for a smoke-sized run.
# Figures: docs/benchmarks.md.
bench-registry: $(VENV)/.synced
	$(VENV)/bin/python benchmarks/registry.py $(BENCH_ARGS)

# The pipeline benchmark: per-step overhead, cached re-runs, the Dask executor against raw
# Dask, and Prefect 3 (installed in benchmarks/.work/, never in uv.lock); BENCH_ARGS=--quick
# for a smoke-sized run. Figures: docs/benchmarks.md.
bench-pipelines: $(VENV)/.synced
	$(VENV)/bin/python benchmarks/pipelines.py $(BENCH_ARGS)

# The serving benchmark: `mlcycle serve` under wrk against `mlflow models serve` (MLflow in
# benchmarks/.work/, never in uv.lock), the plumbing limit, micro-batching and shadows;
# BENCH_ARGS=--quick for a smoke-sized run; BENCH_ARGS=--wire also times the shadow phase's
# requests on the wire (tcpdump). Figures: docs/benchmarks.md.
bench-serving: $(VENV)/.synced
	$(VENV)/bin/python benchmarks/serving.py $(BENCH_ARGS)

# Only its shadow phase (about 25 minutes): for a change to shadows.
bench-serving-shadow: $(VENV)/.synced
	$(VENV)/bin/python benchmarks/serving_shadow.py $(BENCH_ARGS)

# The monitoring benchmark: a drift report of 1M x 25 against Evidently (installed in
# benchmarks/.work/, never in uv.lock) and plain SciPy; BENCH_ARGS=--quick for a smoke-sized
# run. Figures: docs/benchmarks.md.
bench-monitoring: $(VENV)/.synced
	$(VENV)/bin/python benchmarks/monitoring.py $(BENCH_ARGS)

check: $(VENV)/.synced
	scripts/check

env: $(VENV)/.synced

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --all-extras --compile-bytecode
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
