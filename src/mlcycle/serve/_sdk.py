"""``mc.serve.deploy(...)`` and friends: the deployments of the working directory's workspace.

The workspace sits above ``serve`` in the layers, so these functions reach
it by name when called (``importlib``), never by an import at module level.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mlcycle.errors import ValidationFailed
from mlcycle.serve._batch import Scores, batch_score
from mlcycle.serve._deployments import parse_deployments
from mlcycle.serve._predictions import read_predictions
from mlcycle.serve._predlog import spool_dir
from mlcycle.store import Deployment

if TYPE_CHECKING:
    from datetime import datetime

    import pandas as pd
    import pyarrow as pa

    from mlcycle.serve._deployments import Change, Deployments
    from mlcycle.serve._feedback import FeedbackLog, Label, Receipt
    from mlcycle.store import TrafficPolicy

__all__ = [
    "apply",
    "current_deployments",
    "deploy",
    "deployments",
    "feedback",
    "get_deployment",
    "join_labels",
    "labelled",
    "predictions",
    "predictions_table",
    "record_feedback",
    "score",
    "undeploy",
]


def _workspace() -> object:
    return importlib.import_module("mlcycle").current_workspace()


def current_deployments() -> Deployments:
    """The deployments of the workspace ``mc`` acts on."""
    found: Deployments = _workspace().deployments  # type: ignore[attr-defined]  # a Workspace
    return found


def deploy(
    name: str,
    *,
    model: str,
    canary: Mapping[str, float] | None = None,
    shadow: Sequence[str] = (),
    policy: TrafficPolicy | None = None,
    sticky_key: str | None = None,
    key_columns: Sequence[str] = (),
) -> Deployment:
    """Serve ``model`` as ``name`` (see ``Deployments.deploy``).

    ``mc.serve.deploy("bike-demand", model="bike-demand@production",
    canary={"bike-demand/4": 10})`` sends 10 % of the traffic to version 4.
    """
    return current_deployments().deploy(
        name,
        model=model,
        canary=canary,
        shadow=shadow,
        policy=policy,
        sticky_key=sticky_key,
        key_columns=key_columns,
    )


def apply(
    desired: Deployment | Sequence[Deployment] | None = None,
    *,
    prune: bool = False,
    dry_run: bool = False,
) -> list[Change]:
    """Apply one deployment, several, or (by default) the ``[deployments.*]`` of mlcycle.toml."""
    if desired is None:
        settings = _workspace().settings  # type: ignore[attr-defined]  # a Workspace
        desired = parse_deployments(settings.deployments)
        return current_deployments().apply_desired(desired, prune=prune, dry_run=dry_run)
    wanted = [desired] if isinstance(desired, Deployment) else list(desired)
    return current_deployments().apply_desired(wanted, prune=prune, dry_run=dry_run)


def get_deployment(name: str) -> Deployment:
    """The deployment ``name`` as applied."""
    return current_deployments().get(name)


def deployments() -> list[Deployment]:
    """Every deployment, by name."""
    return current_deployments().list()


def undeploy(name: str) -> Deployment:
    """Remove deployment ``name``; servers following it stop serving it."""
    return current_deployments().remove(name)


def predictions_table(
    deployment: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    variant: str | None = None,
) -> pa.Table:
    """The prediction log of ``deployment`` in ``[since, until)`` as a pyarrow Table.

    Rows still in this machine's spool segments are included.
    """
    workspace = _workspace()
    return read_predictions(
        spool_dir=spool_dir(workspace.settings),  # type: ignore[attr-defined]  # a Workspace
        tables=workspace.artifacts,  # type: ignore[attr-defined]
        deployment=deployment,
        since=since,
        until=until,
        variant=variant,
    )


def predictions(
    deployment: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    variant: str | None = None,
) -> pd.DataFrame:
    """The prediction log as a DataFrame, one ``inputs.<feature>`` column per feature.

    ``mc.serve.predictions("bike-demand", since=datetime(2030, 1, 1, tzinfo=UTC))``
    """
    table = predictions_table(deployment, since=since, until=until, variant=variant)
    frame: pd.DataFrame = table.flatten().to_pandas()
    return frame


def _feedback_log() -> FeedbackLog:
    found: FeedbackLog = _workspace().feedback  # type: ignore[attr-defined]  # a Workspace
    return found


def record_feedback(deployment: str, labels: Sequence[Label]) -> Receipt:
    """Store ground-truth labels for served predictions, by the request ids they answered with.

    ``mc.serve.record_feedback("bike-demand", [("3f9c-17", 41.0), ("3f9c-18", 0, 12.0)])``
    gives ``Receipt(recorded=2, unknown=(...))``: request ids not in the log are kept and listed.
    """
    return _feedback_log().record(deployment, labels)


def join_labels(
    deployment: str,
    dataset: str,
    *,
    label_column: str | None = None,
    since: datetime | None = None,
) -> Receipt:
    """Label logged predictions from a dataset version, matched on the deployment's key columns.

    ``mc.serve.join_labels("bike-demand", "bike/5", label_column="cnt")``; without
    ``label_column``, the deployment's ``[monitors.NAME] label_column`` is the
    column read.
    """
    workspace = _workspace()
    if label_column is None:
        monitors = workspace.settings.monitors  # type: ignore[attr-defined]  # a Workspace
        configured = monitors.get(deployment)
        label_column = None if configured is None else configured.label_column
        if label_column is None:
            raise ValidationFailed(
                f"no label column to join labels of deployment '{deployment}' from {dataset}; "
                f"pass label_column='COL' or set label_column in [monitors.{deployment}] of "
                "mlcycle.toml"
            )
    found = workspace.data.get(dataset)  # type: ignore[attr-defined]  # a Workspace
    table = workspace.data.load_table(found.ref)  # type: ignore[attr-defined]
    return _feedback_log().join(
        get_deployment(deployment),
        table,
        label_column=label_column,
        source=found.ref,
        since=since,
    )


def feedback(
    deployment: str, *, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """The latest label of each labelled prediction row, labelled in ``[since, until)``."""
    frame: pd.DataFrame = _feedback_log().read(deployment, since=since, until=until).to_pandas()
    return frame


def labelled(
    deployment: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    variant: str | None = None,
) -> pd.DataFrame:
    """Each logged prediction with its latest ``label``, ``labelled_at`` and ``label_delay_s``.

    ``mc.serve.labelled("bike-demand", since=datetime(2030, 1, 1, tzinfo=UTC))``
    """
    table = _feedback_log().labelled(deployment, since=since, until=until, variant=variant)
    frame: pd.DataFrame = table.flatten().to_pandas()
    return frame


def score(
    model: str,
    data: str | Path,
    out: str | Path,
    *,
    keep: Sequence[str] = (),
    batch_rows: int = 65_536,
) -> Scores:
    """Score a dataset version (``"bike/5"``) or a .csv/.parquet file into a Parquet file.

    ``mc.serve.score("models:/bike-demand@production", "bike/5", "scores.parquet")``
    writes ``row``, the ``keep`` columns and ``prediction``, and records lineage
    from ``scores:<digest>`` to the model version and the data.
    """
    workspace = _workspace()
    return batch_score(
        model,
        data,
        Path(out),
        registry=workspace.registry,  # type: ignore[attr-defined]  # a Workspace
        datasets=workspace.data,  # type: ignore[attr-defined]
        artifacts=workspace.artifacts,  # type: ignore[attr-defined]
        lineage=workspace.metadata,  # type: ignore[attr-defined]
        clock=workspace.clock,  # type: ignore[attr-defined]
        actor=workspace.actor,  # type: ignore[attr-defined]
        keep=keep,
        batch_rows=batch_rows,
    )
