"""Two real processes promoting different versions at once: both moves kept, in one order."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sklearn.linear_model import Ridge

from mlcycle.settings import Settings, StoreSettings
from mlcycle.workspace import Workspace

PROMOTING = textwrap.dedent(
    """
    import pathlib, sys, time
    from mlcycle.settings import Settings, StoreSettings
    from mlcycle.workspace import Workspace

    home, url, version, go = sys.argv[1:5]
    settings = Settings(home=home, actor=f"p{version}", store=StoreSettings(metadata_url=url))
    with Workspace.open(settings) as workspace:
        registry = workspace.registry
        print("ready", flush=True)
        while not pathlib.Path(go).exists():
            time.sleep(0.005)
        for _ in range(8):
            registry.promote("bike", int(version), reason=f"from p{version}")
    """
)
PASSED = {"passed": True, "results": [{"name": "rmse", "passed": True}]}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/mlcycle.db"
    postgres_url: str = request.getfixturevalue("postgres_url")
    return postgres_url


@pytest.mark.slow
def test_two_processes_promoting_at_once_lose_nothing(
    tmp_path: Path, url: str, ridge: Ridge
) -> None:
    settings = Settings(home=tmp_path, actor="ana", store=StoreSettings(metadata_url=url))
    with Workspace.open(settings) as workspace:
        for _ in range(2):
            version = workspace.registry.register("bike", ridge)
            workspace.registry.catalog.update_model_version(
                "bike", version.version, actor="ci", time=workspace.clock.now(), evaluation=PASSED
            )
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PROMOTING, str(tmp_path), url, str(v), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for v in (1, 2)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        go.touch()
        for process in processes:
            assert process.wait(timeout=120) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
    with Workspace.open(settings) as workspace:
        history = workspace.registry.history("bike", "production")
        final = workspace.registry.get("bike@production").version
        events = workspace.events(types=["model.alias_moved"])
    assert len(history) == 16
    assert sorted(m.to_version for m in history) == [1] * 8 + [2] * 8
    assert history[0].from_version is None
    for before, after in itertools.pairwise(history):
        assert after.from_version == before.to_version
        assert after.position > before.position
    assert final == history[-1].to_version
    assert {m.actor for m in history} == {"p1", "p2"}
    assert [e.position for e in events] == [m.position for m in history]
