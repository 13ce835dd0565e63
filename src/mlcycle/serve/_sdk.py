"""``mc.serve.deploy(...)`` and friends: the deployments of the working directory's workspace.

The workspace sits above ``serve`` in the layers, so these functions reach
it by name when called (``importlib``), never by an import at module level.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from mlcycle.serve._deployments import parse_deployments
from mlcycle.serve._predlog import read_predictions, spool_dir
from mlcycle.store import Deployment

if TYPE_CHECKING:
    from datetime import datetime

    import pandas as pd
    import pyarrow as pa

    from mlcycle.serve._deployments import Change, Deployments
    from mlcycle.store import TrafficPolicy

__all__ = [
    "apply",
    "current_deployments",
    "deploy",
    "deployments",
    "get_deployment",
    "predictions",
    "predictions_table",
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
