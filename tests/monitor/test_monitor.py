"""References of stored dataset versions are built once and found again, on every store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.data.conftest import STORES, Stores, open_stores

import mlcycle as mc
from mlcycle.errors import NotFound
from mlcycle.monitor import CACHE_KIND, ReferenceStats
from mlcycle.workspace import Workspace


@pytest.fixture(params=STORES)
def stores(request: pytest.FixtureRequest) -> Stores:
    return open_stores(request, request.param)


@pytest.fixture
def ws(tmp_path: Path, stores: Stores) -> Iterator[Workspace]:
    with Workspace.open(stores.settings(tmp_path)) as workspace:
        yield workspace


def bike(seed: int, *, shift: float = 0.0, rows: int = 5_000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "temp": rng.normal(15 + shift, 5, rows),
            "season": rng.choice(["spring", "summer", "fall", "winter"], rows),
        }
    )


def cache_edges(ws: Workspace, digest: str) -> list[str]:
    return [e.target for e in ws.metadata.edges_from(f"data-content:{digest}")]


def test_a_reference_is_built_once_and_read_back_by_a_new_process(
    tmp_path: Path, stores: Stores
) -> None:
    with Workspace.open(stores.settings(tmp_path)) as ws:
        version = ws.data.register("bike", bike(1), mode="overwrite")
        first = ws.monitor.reference("bike")
        assert first.source == "data:/bike/1"
        [target] = cache_edges(ws, version.digest)
        assert target == f"monitor-reference:{first.digest}"
        assert ws.monitor.reference("bike/1") is not first  # same statistics, fresh source label
    with Workspace.open(stores.settings(tmp_path)) as again:
        read = again.monitor.reference("bike/1")
        assert read.digest == first.digest
        assert cache_edges(again, version.digest) == [target]  # read, not built again
        np.testing.assert_array_equal(
            read.column("temp").values, np.sort(bike(1)["temp"].to_numpy())
        )
        report = again.monitor.drift("bike/1", bike(2, shift=3.0, rows=1_000))
    assert report.reference == "data:/bike/1"
    assert report.drifted_columns == ["temp"]


def test_a_version_with_the_same_rows_reuses_the_reference(ws: Workspace) -> None:
    ws.data.register("bike", bike(1), mode="overwrite")
    first = ws.monitor.reference("bike/1")
    ws.data.register("bike", bike(2), mode="overwrite")
    restored = ws.data.rollback("bike", 1)
    assert restored.version == 3
    again = ws.monitor.reference("bike/3")
    assert (again.digest, again.source) == (first.digest, "data:/bike/3")


def test_a_reference_whose_blob_is_gone_is_built_again(ws: Workspace) -> None:
    version = ws.data.register("bike", bike(1), mode="overwrite")
    first = ws.monitor.reference("bike")
    assert first.digest is not None
    ws.artifacts.delete(first.digest)
    ws.monitor._memory.clear()  # as a new process would start
    again = ws.monitor.reference("bike")
    assert again.digest == first.digest
    assert ws.artifacts.exists(first.digest)
    assert len(cache_edges(ws, version.digest)) == 1


def test_a_profile_reference_reads_no_rows_and_writes_nothing(ws: Workspace) -> None:
    version = ws.data.register("bike", bike(1), mode="overwrite")
    stats = ws.monitor.reference("bike", exact=False)
    assert stats.source == "data:/bike/1 (profile sample)"
    assert stats.column("season").kind == "categorical"
    assert cache_edges(ws, version.digest) == []


def test_unknown_datasets_are_named() -> None:
    with pytest.raises(NotFound, match="dataset 'nothing'"):
        mc.monitor.reference("nothing")


def test_the_sdk_acts_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    mc.close()
    try:
        mc.data.register("bike", bike(1))
        stats = mc.monitor.reference("bike")
        assert isinstance(stats, ReferenceStats)
        report = mc.monitor.drift("bike", bike(3, rows=2_000))
        assert report.reference == "data:/bike/1"
        assert report.drifted_columns == []
        edges = mc.current_workspace().metadata.edges_from(
            f"data-content:{mc.data.get('bike').digest}"
        )
        assert [edge.kind for edge in edges] == [CACHE_KIND]
    finally:
        mc.close()


def test_only_the_latest_references_stay_in_memory_and_other_edges_are_ignored(
    ws: Workspace,
) -> None:
    versions = [ws.data.register(f"d{i}", bike(i)) for i in range(3)]
    ws.metadata.add_edge(
        f"data-content:{versions[0].digest}",
        "monitor-reference:sha256:" + "0" * 64,
        kind="something-else",
        actor="tester",
        time=ws.clock.now(),
    )
    first = [ws.monitor.reference(f"d{i}") for i in range(3)]
    assert len(ws.monitor._memory) == 2
    again = ws.monitor.reference("d0")  # evicted from memory: read back from the store
    assert again.digest == first[0].digest
    assert len(cache_edges(ws, versions[0].digest)) == 2  # ours and the foreign edge


def with_outlier(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` plus one row holding an extreme temperature and a season of its own."""
    extra = pd.DataFrame({"temp": [9_999.0], "season": ["monsoon"]})
    return pd.concat([frame, extra], ignore_index=True)


def test_an_erasure_deletes_the_cached_reference_of_the_erased_rows(ws: Workspace) -> None:
    old = ws.data.register("bike", with_outlier(bike(1)), mode="overwrite")
    cached = ws.monitor.reference("bike")
    assert cached.column("temp").values.max() == 9_999.0
    assert cached.digest is not None
    assert ws.artifacts.exists(cached.digest)

    ws.data.erase("bike", where="temp > 1000", reason="GDPR request 17")

    assert not ws.artifacts.exists(cached.digest)  # the blob with the erased values is gone
    assert cache_edges(ws, old.digest) == []  # and the edge that found it
    [removed] = ws.events(types=["lineage.edge_removed"])
    assert removed.payload["source"] == f"data-content:{old.digest}"
    report = ws.monitor.drift("bike", bike(2))
    assert report.reference_rows == 5_000
    rebuilt = ws.monitor.reference("bike")
    assert rebuilt.column("temp").values.max() < 1_000
    season = rebuilt.column("season")
    assert season.labels is not None
    assert "monsoon" not in list(season.labels)
    assert cache_edges(ws, ws.data.get("bike").digest) == [f"monitor-reference:{rebuilt.digest}"]


def test_a_reference_another_dataset_still_uses_survives_an_erasure(ws: Workspace) -> None:
    rows = with_outlier(bike(1))
    ws.data.register("bike", rows, mode="overwrite")
    copy = ws.data.register("bike_copy", rows, mode="overwrite")  # the same content digest
    shared = ws.monitor.reference("bike_copy")
    ws.data.erase("bike", where="temp > 1000", reason="GDPR request 17")
    assert shared.digest is not None
    assert ws.artifacts.exists(shared.digest)  # bike_copy still holds those rows
    assert cache_edges(ws, copy.digest) == [f"monitor-reference:{shared.digest}"]
    assert ws.monitor.reference("bike_copy").column("temp").values.max() == 9_999.0


def test_forgetting_keeps_a_blob_another_edge_points_at(ws: Workspace) -> None:
    version = ws.data.register("bike", bike(1), mode="overwrite")
    built = ws.monitor.reference("bike")
    target = f"monitor-reference:{built.digest}"
    now = ws.clock.now()
    ws.metadata.add_edge("data-content:other", target, kind=CACHE_KIND, actor="t", time=now)
    unrelated = f"data-content:{version.digest}"
    ws.metadata.add_edge(unrelated, "run:R1", kind="input", actor="t", time=now)
    assert ws.monitor.forget([version.digest]) == []
    assert cache_edges(ws, version.digest) == ["run:R1"]  # only references are forgotten
    assert built.digest is not None
    assert ws.artifacts.exists(built.digest)
    assert ws.monitor.forget(["other"]) == [built.digest]
    assert not ws.artifacts.exists(built.digest)
    assert ws.monitor.forget(["other", "never-cached"]) == []
