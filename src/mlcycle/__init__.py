"""mlcycle: the whole MLOps loop in one package.

The functions here act on the workspace found from the working directory
(walking up to ``mlcycle.toml``; one is initialised in the working directory
when none is found), opened on first use and kept for the process. Hold an
explicit ``Workspace`` instead in tests, servers and agents.

Importing ``mlcycle`` stays light: pandas, SQLAlchemy and the stores are
imported on first use.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from mlcycle import data, monitor, pipeline, registry, serve, validate
    from mlcycle.pipeline import step
    from mlcycle.store import Event, Experiment, LineageTree
    from mlcycle.track import ActiveRun, RunView
    from mlcycle.workspace import Workspace

__version__ = "0.1.0"
__all__ = [
    "ActiveRun",
    "RunView",
    "Workspace",
    "__version__",
    "active_run",
    "close",
    "current_workspace",
    "data",
    "events",
    "get_run",
    "lineage",
    "list_experiments",
    "monitor",
    "pipeline",
    "registry",
    "search_runs",
    "seed_everything",
    "serve",
    "start_run",
    "step",
    "validate",
]

_default: list[Workspace] = []
_default_lock = threading.Lock()


def current_workspace() -> Workspace:
    """The workspace of the working directory, opened (and if need be initialised) on first use.

    Inside a pipeline step it is the workspace the pipeline runs on.
    """
    running = sys.modules.get("mlcycle.pipeline")
    host = running.active_host() if running is not None else None
    if host is not None:
        return host  # type: ignore[no-any-return]  # a PipelineHost is a Workspace
    with _default_lock:
        if not _default:
            from mlcycle.workspace import Workspace  # noqa: PLC0415  (keeps import mlcycle light)

            _default.append(Workspace.find())
        return _default[0]


def close() -> None:
    """End open runs and close the default workspace; the next call opens it again."""
    with _default_lock:
        found = _default.pop() if _default else None
    if found is not None:
        found.close()


def start_run(
    experiment: str = "default",
    *,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,  # Any: stored as text
    tags: Mapping[str, Any] | None = None,  # Any: stored as text
    parent: str | None = None,
) -> ActiveRun:
    """Start a run; inside an active run of this thread it becomes a child.

    ``with mc.start_run("bike", params={"model": "gbm"}) as run: run.log_metric("rmse", 41.2)``
    """
    return current_workspace().start_run(
        experiment, name=name, params=params, tags=tags, parent=parent
    )


def search_runs(
    experiment_or_list: str | Sequence[str] | None = None,
    *,
    where: str | None = None,
    order_by: str | Sequence[str] | None = None,
    limit: int = 100,
) -> pd.DataFrame:
    """Runs matching ``where``, as a pandas DataFrame (see ``Workspace.search_runs``)."""
    return current_workspace().search_runs(
        experiment_or_list, where=where, order_by=order_by, limit=limit
    )


def get_run(run_id: str) -> RunView:
    """The run ``run_id``; ``.metric_history(key)`` gives every value it logged."""
    return current_workspace().get_run(run_id)


def list_experiments() -> list[Experiment]:
    """Every experiment, oldest first."""
    return current_workspace().list_experiments()


def events(since: int = 0, *, types: Iterable[str] | None = None, limit: int = 1000) -> list[Event]:
    """Events after cursor position ``since``, oldest first."""
    return current_workspace().events(since, types=types, limit=limit)


def lineage(ref: str, *, max_depth: int | None = None) -> LineageTree:
    """The ancestry of ``ref`` as a tree (``.lines()`` to print, ``.to_dict()`` for JSON).

    ``mc.lineage("models:/bike@production")`` follows the alias to its version,
    then model version <- run <- dataset versions <- sources.
    """
    return current_workspace().lineage(ref, max_depth=max_depth)


def seed_everything(seed: int) -> int:
    """Seed ``random`` and NumPy and record the seed on the active (or next) run."""
    from mlcycle.track import seed_everything as seed_all  # noqa: PLC0415  (light import)

    return seed_all(seed)


def active_run() -> ActiveRun | None:
    """The innermost run this thread started and has not ended."""
    from mlcycle.track import current_run  # noqa: PLC0415  (light import)

    return current_run()


def __getattr__(name: str) -> Any:  # Any: the lazily imported class
    """Import ``Workspace``, ``ActiveRun``, ``RunView`` and the SDK modules on first use."""
    if name == "Workspace":
        from mlcycle.workspace import Workspace  # noqa: PLC0415  (light import)

        return Workspace
    if name == "step":
        from mlcycle.pipeline import step  # noqa: PLC0415  (light import)

        return step
    if name in {"data", "monitor", "pipeline", "registry", "serve", "validate"}:
        import importlib  # noqa: PLC0415  (light import)

        return importlib.import_module(f"mlcycle.{name}")
    if name in {"ActiveRun", "RunView"}:
        from mlcycle import track  # noqa: PLC0415  (light import)

        return getattr(track, name)
    raise AttributeError(f"module 'mlcycle' has no attribute {name!r}")
