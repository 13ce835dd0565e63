"""``mlcycle serve``: run the model server for a deployment or one model alias.

The command checks everything it can before binding (the target resolves,
every variant loads, the token file reads, a public address has a token),
so mistakes end with one ``error:`` line and exit code 1. Then uvicorn runs
the app with uvloop and httptools: in this process for one worker, or in
``--workers`` spawned processes sharing the socket, each with its own
workspace connection, batchers and event-log follower, and Prometheus
values in a shared folder so ``/metrics`` adds them up.
"""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from mlcycle.cli._context import console, load, require_project
from mlcycle.errors import NotFound, ValidationFailed

if TYPE_CHECKING:
    from mlcycle.serve import DeploymentSource, ServingApp
    from mlcycle.settings import Settings
    from mlcycle.store import Deployment, DeploymentCatalog, MetadataStore

__all__ = ["serve"]

_LOOPBACK_NAMES = frozenset({"localhost"})


def serve(  # noqa: PLR0917 (Typer maps each parameter to an argument or option)
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            help="A deployment name (see `mlcycle deploy`), or one model as "
            "models:/NAME@ALIAS or models:/NAME/VERSION.",
        ),
    ],
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to bind (serve.host; default 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=0, max=65535, help="Port to bind (serve.port; default 8080)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, max=64, help="Worker processes sharing the port (serve.workers)."
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            dir_okay=False,
            help="File holding the bearer token every endpoint but health requires "
            "(serve.token_file).",
        ),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth",
            help="Serve a non-loopback address without a token (anyone who reaches it can "
            "predict). Without a token, only 127.0.0.1 is served unless this is given.",
        ),
    ] = False,
) -> None:
    """Serve predictions over HTTP: Open Inference Protocol v2, v1 JSON, metrics, hot changes.

    \b
    Endpoints: POST /v2/models/NAME/infer, POST /v1/models/NAME:predict,
    POST /v1/models/NAME:feedback (ground-truth labels by request id),
    GET /v2/health/live, /v2/health/ready, /v2/models/NAME, /metrics, /docs.
    Every prediction is written to the prediction log (mc.serve.predictions).
    Aliases that move and deployments that change are picked up without a restart.
    """
    settings = load(ctx)
    require_project(settings)
    if token_file is not None:
        token_file = token_file.absolute()  # given here: from where the command runs
    overrides = {
        key: value
        for key, value in (
            ("host", host),
            ("port", port),
            ("workers", workers),
            ("token_file", token_file),
        )
        if value is not None
    }
    serve_settings = settings.serve.model_copy(update=overrides)
    settings = settings.model_copy(update={"serve": serve_settings})
    token_path = serve_settings.token_file
    if token_path is not None and not token_path.is_absolute():
        token_path = settings.home / token_path  # from mlcycle.toml: from the project
    token = _token(token_path, no_auth=no_auth)
    _check_exposure(serve_settings.host, token=token, no_auth=no_auth)
    deployment = _preflight(settings, target)
    names = ", ".join(f"{v.name} -> {v.model}" for v in deployment.variants)
    console().print(
        f"serving deployment {deployment.name} ({deployment.policy}: {names}) on "
        f"http://{serve_settings.host}:{serve_settings.port} with {serve_settings.workers} "
        f"worker(s){'' if token else ', no token'}",
        markup=False,
    )
    _run(settings, target, token)


def _token(path: Path | None, *, no_auth: bool) -> str | None:
    if path is None:
        return None
    if no_auth:
        raise ValidationFailed("--no-auth and a token file contradict each other; give one")
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValidationFailed(f"cannot read the token file {path}: {exc.strerror}") from None
    if not token:
        raise ValidationFailed(f"the token file {path} is empty; put the bearer token in it")
    return token


def _check_exposure(host: str, *, token: str | None, no_auth: bool) -> None:
    """Refuse to serve a non-loopback address with no token, unless ``--no-auth`` says so."""
    if token is not None or no_auth or _is_loopback(host):
        return
    raise ValidationFailed(
        f"refusing to serve {host} without a token: anyone who reaches it could predict. "
        "Pass --token-file FILE, or --no-auth to serve it open on purpose, or bind 127.0.0.1"
    )


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _deployment(store: MetadataStore, target: str) -> tuple[Deployment, DeploymentSource | None]:
    """The deployment ``target`` names, and where to read it again when it changes."""
    from mlcycle.serve import implicit_deployment

    if target.startswith("models:/"):
        return implicit_deployment(target), None
    if ":/" in target:
        raise ValidationFailed(
            f"cannot serve {target!r}: give a deployment name (such as bike-demand) or one "
            "model as models:/NAME@ALIAS or models:/NAME/VERSION"
        )
    catalog = cast("DeploymentCatalog", store)  # the SQL store is every catalog
    try:
        return catalog.get_deployment(target), catalog
    except NotFound as exc:
        raise NotFound(f"{exc}; or serve one model as models:/{target}@ALIAS") from None


def _preflight(settings: Settings, target: str) -> Deployment:
    """Resolve the deployment and load each variant once, so errors show before binding."""
    from mlcycle.serve import check_deployment, load_model
    from mlcycle.workspace import Workspace

    with Workspace.open(settings) as workspace:
        deployment, _ = _deployment(workspace.metadata, target)
        check_deployment(deployment)
        for variant in deployment.variants:
            load_model(workspace.registry, variant.model, max_rows=settings.serve.max_rows)
    return deployment


def worker_app(
    settings: Settings, target: str, token: str | None, metrics_dir: str | None
) -> ServingApp:
    """The app of one worker process: its own workspace, server, event-log follower and log.

    Every prediction goes to this worker's ``PredictionLog``, which the app's
    shutdown closes (everything queued is written and rolled into Delta), and
    then the workspace. When building the app fails, both are closed before
    the error propagates.
    """
    import contextlib
    import gc

    from mlcycle.serve import Metrics, ModelServer, create_app
    from mlcycle.workspace import Workspace, open_prediction_log, open_registry

    # A single-row request allocates some sixty containers (its parsed JSON, its job, its
    # coroutines), nearly all freed by reference counting, so the default young-generation
    # threshold of 700 ran a collection every dozen requests. Every 10,000 allocations, it
    # is 3 % fewer instructions per request; cyclic garbage waits a little longer.
    gc.set_threshold(10_000, 10, 10)

    workspace = Workspace.open(settings)
    with contextlib.ExitStack() as undo:
        undo.callback(workspace.close)
        deployment, source = _deployment(workspace.metadata, target)
        sink = workspace.prediction_log()
        undo.callback(sink.close)  # before the workspace: the log's last rollover uses its stores
        server = ModelServer(
            registry=workspace.registry,
            deployment=deployment,
            settings=settings.serve,
            sink=sink,
            events=workspace.metadata,
            deployments=source,
            metrics=Metrics(multiprocess_dir=None if metrics_dir is None else Path(metrics_dir)),
            clock=workspace.clock,
            registry_opener=functools.partial(open_registry, settings),
            sink_opener=functools.partial(open_prediction_log, settings),
        )
        app = create_app(
            server, token=token, feedback=workspace.feedback, after_stop=workspace.close
        )
        undo.pop_all()  # from here the app's shutdown closes both
    return app


def _run(settings: Settings, target: str, token: str | None) -> None:
    """Run uvicorn: in this process for one worker, else a supervisor over spawned workers."""
    import os
    import shutil
    import tempfile

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from mlcycle.serve import HttpProtocol

    config = settings.serve
    metrics_dir = None
    if config.workers > 1:
        # The Prometheus client reads this when the workers import it: each writes its values
        # there, and /metrics sums them. Set here, at the edge, before any worker starts.
        metrics_dir = tempfile.mkdtemp(prefix="mlcycle-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    log_config = {**uvicorn.config.LOGGING_CONFIG}
    log_config["loggers"] = {
        **log_config["loggers"],
        "mlcycle": {"handlers": ["default"], "level": "INFO", "propagate": False},
    }
    uvicorn_config = uvicorn.Config(
        functools.partial(worker_app, settings, target, token, metrics_dir),
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.workers,
        loop="uvloop",
        http=HttpProtocol,  # httptools, each response in one write
        lifespan="on",
        access_log=False,
        # Nothing reads the client's address or scheme, so X-Forwarded-* need no rewriting:
        # that middleware was a tenth of a single-row request's time.
        proxy_headers=False,
        log_config=log_config,
        timeout_graceful_shutdown=10,
    )
    try:
        if config.workers == 1:
            uvicorn.Server(uvicorn_config).run()
            return
        socket = uvicorn_config.bind_socket()
        Multiprocess(uvicorn_config, sockets=[socket]).run()
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
