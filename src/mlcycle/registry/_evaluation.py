"""Gather what the gates judge from the stores, run them, and keep the verdict on the version.

``evaluate_version`` is what ``ModelRegistry.evaluate`` does: load the
candidate and the current production version, read the training run's split
(and, when no training rows are given, take them from the split's dataset
version), collect the denied columns from the data policy findings of the
datasets the model was trained on, run ``evaluate_gates``, and store the
result on the version with the test (and training) rows as Parquet in the
artifact store. Promotion to a guarded alias runs the gates again on those
stored rows against whatever is in production by then (``reevaluate``), so a
verdict cannot go stale while production moves.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.ids import Digest
from mlcycle.registry._evaluate import GateInputs, evaluate_gates
from mlcycle.registry._gates import Evaluation
from mlcycle.track import Split

if TYPE_CHECKING:
    import pandas as pd

    from mlcycle.registry._flavor import LoadedModel
    from mlcycle.registry._registry import ModelRegistry
    from mlcycle.store import ModelVersion

__all__ = ["evaluate_version", "recorded_test_rows", "reevaluate"]

PRODUCTION = "production"
TEST_ROLE = "test_data"
TRAIN_ROLE = "train_data"


def evaluate_version(
    registry: ModelRegistry,
    version: ModelVersion,
    test: pd.DataFrame | None,
    *,
    train: pd.DataFrame | None = None,
    target: str | None = None,
    trust: bool = False,
    against: int | None = None,
) -> Evaluation:
    """Run ``version``'s gates on ``test`` and store the result on it (see the module doc).

    ``against`` is the production version to compare with (default: the one
    the ``production`` alias names now; the candidate itself is never its own
    comparison). Without ``test`` rows, the recorded split's test rows are used.
    """
    split = _split(registry, version)
    if test is None:
        test = recorded_test_rows(registry, version, split)
    if len(test) == 0:
        raise ValidationFailed(
            f"no test rows to evaluate {version.ref} on; pass the held-out rows it never saw"
        )
    settings = registry.settings.gates_for(version.name)
    candidate = registry.load(version, trust=trust)
    if train is None and split is not None:
        train = _train_rows(registry, split)
    evaluation = evaluate_gates(
        GateInputs(
            candidate,
            test,
            target=target,
            settings=settings,
            production=_production(registry, version, against, trust=trust),
            split=split,
            train=train,
            denied_columns=_denied_columns(registry, version),
            size_bytes=version.size,
        )
    )
    stored = evaluation.to_dict()
    stored[TEST_ROLE] = _put_frame(registry, test)
    if train is not None:
        stored[TRAIN_ROLE] = _put_frame(registry, train)
    stored["production_version"] = _production_version(registry, version, against)
    registry.catalog.update_model_version(
        version.name,
        version.version,
        actor=registry.actor,
        time=registry.clock.now(),
        evaluation=stored,
    )
    return evaluation


def reevaluate(
    registry: ModelRegistry, version: ModelVersion, *, trust: bool = False
) -> dict[str, Any] | None:  # Any: JSON
    """Run the gates again on the rows the last evaluation stored, against today's production.

    ``None`` when the version was never evaluated through the registry (there
    are no stored rows to run on): promotion then judges by what is stored.
    """
    stored = version.evaluation
    if not stored or TEST_ROLE not in stored:
        return None
    if stored.get("production_version") == _production_version(registry, version, None):
        return stored  # production has not moved since: the stored verdict still holds
    test = _get_frame(registry, Digest(stored[TEST_ROLE]))
    train = None
    if TRAIN_ROLE in stored:
        train = _get_frame(registry, Digest(stored[TRAIN_ROLE]))
    target = stored.get("target")
    evaluate_version(registry, version, test, train=train, target=target, trust=trust)
    return registry.catalog.get_model_version(version.name, version.version).evaluation


def recorded_test_rows(
    registry: ModelRegistry, version: ModelVersion, split: Split | None
) -> pd.DataFrame:
    """The test rows of the split the version's training run recorded, from its dataset version."""
    if split is None or registry.data is None:
        why = "its training run recorded no split" if split is None else "no datasets to read"
        raise ValidationFailed(
            f"no test rows given for {version.ref} and none to find ({why}); pass the "
            "held-out rows, or record the split in training with run.log_split(...)"
        )
    frame = registry.data.load(split.dataset)
    return frame[split.test_mask(frame)].reset_index(drop=True)


def _production_version(
    registry: ModelRegistry, version: ModelVersion, against: int | None
) -> int | None:
    if against is not None:
        return against
    current = registry.catalog.get_model(version.name).aliases.get(PRODUCTION)
    return None if current == version.version else current


def _production(
    registry: ModelRegistry, version: ModelVersion, against: int | None, *, trust: bool
) -> LoadedModel | None:
    number = _production_version(registry, version, against)
    if number is None:
        return None
    return registry.load(registry.catalog.get_model_version(version.name, number), trust=trust)


def _split(registry: ModelRegistry, version: ModelVersion) -> Split | None:
    if version.run_id is None:
        return None
    run = registry.runs.get_run(version.run_id)
    try:
        return Split.from_run(run, artifacts=registry.artifacts)
    except NotFound:
        return None


def _train_rows(registry: ModelRegistry, split: Split) -> pd.DataFrame | None:
    """The training rows of the split's dataset version, when the registry can read datasets."""
    if registry.data is None:
        return None
    try:
        frame = registry.data.load(split.dataset)
    except NotFound:
        return None
    return frame[split.train_mask(frame)].reset_index(drop=True)


def _denied_columns(registry: ModelRegistry, version: ModelVersion) -> frozenset[str]:
    """Columns the data policy flagged in the datasets the version was trained on."""
    if registry.data is None:
        return frozenset()
    found: set[str] = set()
    for ref in version.dataset_versions:
        try:
            findings = registry.data.policy(ref.removeprefix("data:/"))
        except NotFound:
            continue
        found.update(finding.column for finding in findings)
    return frozenset(found)


def _put_frame(registry: ModelRegistry, frame: pd.DataFrame) -> str:
    with tempfile.TemporaryDirectory(prefix="mlcycle-gates-") as folder:
        path = Path(folder) / "rows.parquet"
        frame.rename(columns=str).to_parquet(path, index=False)
        return str(registry.artifacts.put_file(str(path)))


def _get_frame(registry: ModelRegistry, digest: Digest) -> pd.DataFrame:
    import pandas as pd  # noqa: PLC0415  (with the data)

    with registry.artifacts.open(digest) as stream:  # verified while read
        return pd.read_parquet(io.BytesIO(stream.read()))
