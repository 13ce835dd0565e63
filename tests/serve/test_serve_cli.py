"""``mlcycle serve`` in-process: every refusal before binding, and one worker's app."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

import httpx
import psutil
import pytest
from tests.serve.conftest import Invoke, rows, run_live

from mlcycle.cli._serve import worker_app
from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.settings import Settings
from mlcycle.workspace import Workspace


@pytest.fixture
def token(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("s3cret\n")
    return path


@pytest.mark.usefixtures("echo")
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["bikes"], "no deployment 'bikes' (known: none yet"),
        (["bikes"], "or serve one model as models:/bikes@ALIAS"),
        (["models:/nope@production"], "nope"),
        (["data:/bike/1"], "give a deployment name (such as bike-demand) or one model"),
        (["models:/echo@production", "--host", "0.0.0.0"], "refusing to serve 0.0.0.0"),
        (["models:/echo@production", "--host", "serving.example"], "--token-file FILE"),
        (["models:/echo@production", "--token-file", "missing"], "cannot read the token file"),
        (["models:/echo@production", "--token-file", "{empty}"], "is empty"),
        (
            ["models:/echo@production", "--token-file", "{token}", "--no-auth"],
            "contradict each other",
        ),
    ],
)
def test_refusals_exit_1_before_binding(
    invoke: Invoke, tmp_path: Path, token: Path, args: list[str], words: str
) -> None:
    (tmp_path / "empty").write_text("  \n")
    given = [a.format(empty=tmp_path / "empty", token=token) for a in args]
    result = invoke("serve", *given)
    assert result.exit_code == 1
    assert words in " ".join(result.output.split())


@pytest.mark.usefixtures("echo")
def test_a_token_file_named_in_mlcycle_toml_is_read_from_the_project(
    invoke: Invoke, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "token.txt").write_text("  \n")  # empty: refused before binding, naming the file
    toml = project / "mlcycle.toml"
    toml.write_text(toml.read_text() + '\n[serve]\ntoken_file = "token.txt"\n')
    below = project / "reports" / "weekly"
    below.mkdir(parents=True)
    monkeypatch.chdir(below)
    result = invoke("serve", "models:/echo@production")
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "is empty" in output, output  # found and read, though the command ran below


def test_outside_a_project_serve_refuses(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("--home", str(tmp_path / "elsewhere"), "serve", "models:/echo@production")
    assert result.exit_code == 1
    assert "no mlcycle project" in " ".join(result.output.split())


def test_a_deployment_whose_model_cannot_load_is_refused(
    invoke: Invoke, workspace: Workspace
) -> None:
    """A deployment is checked when applied; loading (here: an untrusted pickle) when served."""
    import pandas as pd
    from tests.serve.models import Slow

    example = pd.DataFrame({"id": [1.0]})
    workspace.registry.register("slow", Slow(0.0), input_example=example, flavor="pyfunc")
    workspace.deployments.deploy("slow", model="slow/1")
    result = invoke("serve", "slow")
    assert result.exit_code == 1
    assert "not trusted" in " ".join(result.output.split())


@pytest.mark.anyio
async def test_a_worker_serves_the_stored_deployment_with_its_token(
    workspace: Workspace, echo: str, project: Path
) -> None:
    del echo
    workspace.deployments.deploy("bikes", model="echo@production", shadow=["echo/2"])
    app = worker_app(Settings(home=project), "bikes", "s3cret", None)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            refused = await client.post("/v1/models/bikes:predict", json={"instances": rows(2)})
            answer = await client.post(
                "/v1/models/bikes:predict",
                json={"instances": rows(2)},
                headers={"Authorization": "Bearer s3cret"},
            )
            health = await client.get("/v2/health/ready")
    assert refused.status_code == 401
    assert answer.status_code == 200
    assert (answer.json()["version"], answer.json()["variant"]) == (1, "primary")
    assert health.status_code == 200


def _database_opens(project: Path) -> int:
    """How often this process has the project's SQLite database open: once per connection.

    SQLite keeps a closed connection's file open while another connection of
    the process holds a lock on it, so count with no other connection open.
    """
    database = str((Settings(home=project).workspace_dir / "mlcycle.db").resolve())
    return sum(file.path == database for file in psutil.Process().open_files())


def _log_threads() -> set[threading.Thread]:
    """The writer threads of the prediction logs open in this process."""
    return {t for t in threading.enumerate() if t.name.startswith("mlcycle-predlog")}


def test_a_worker_closes_its_workspace_on_shutdown(
    workspace: Workspace, echo: str, project: Path
) -> None:
    workspace.close()
    app = worker_app(Settings(home=project), echo, None, None)
    with contextlib.closing(run_live(app, app.server)) as running:  # uvicorn's lifespan
        url = next(running).url
        answer = httpx.post(f"{url}/v1/models/echo:predict", json={"instances": rows(2)})
        assert _database_opens(project) > 0  # the worker's own connections
    assert answer.status_code == 200
    assert _database_opens(project) == 0


@pytest.mark.anyio
async def test_a_worker_that_fails_part_way_closes_its_workspace(
    workspace: Workspace, echo: str, project: Path
) -> None:
    workspace.deployments.deploy("bikes", model=echo)
    workspace.close()
    with contextlib.closing(sqlite3.connect(project / ".mlcycle" / "mlcycle.db")) as db, db:
        db.execute("UPDATE deployments SET policy = 'bandit'")  # as a newer mlcycle might
    threads = _log_threads()
    settings = Settings(home=project)
    with pytest.raises(NotFound, match="no deployment 'ghost'"):
        worker_app(settings, "ghost", None, None)
    with pytest.raises(ValidationFailed, match="unknown policy 'bandit'"):
        worker_app(settings, "bikes", None, None)  # its prediction log was open by then
    app = worker_app(settings, "models:/nope@production", None, None)
    with pytest.raises(NotFound, match="nope"):
        async with app.lifespan():
            pytest.fail("a model that does not load fails the startup")
    assert _database_opens(project) == 0
    assert _log_threads() == threads
