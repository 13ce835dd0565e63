"""log_artifact: files, bytes, dicts, DataFrames and figures, stored by content, indexed by name."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from mlcycle.errors import AlreadyExists, UnsafePath, ValidationFailed
from mlcycle.workspace import Workspace


def _read(workspace: Workspace, digest: str) -> bytes:
    with workspace.artifacts.open(digest) as stream:  # type: ignore[arg-type]
        return stream.read()


def test_every_kind_of_object_is_stored_and_indexed(workspace: Workspace, tmp_path: Path) -> None:
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    report = tmp_path / "report.html"
    report.write_text("<h1>rmse 41.2</h1>")
    frame = pd.DataFrame({"hour": [1, 2, 3], "cnt": [10.0, 12.5, 9.0]})
    figure, axes = plt.subplots()
    axes.plot([1, 2, 3])
    with workspace.start_run("exp") as run:
        from_path = run.log_artifact(str(report))
        from_bytes = run.log_artifact(b"\x00\x01raw", name="raw/blob.bin")
        from_dict = run.log_artifact({"rmse": 41.2, "model": "gbm"}, name="metrics.json")
        from_frame = run.log_artifact(frame, name="predictions.parquet")
        from_figure = run.log_artifact(figure, name="plots/loss.png")
        same_again = run.log_artifact(report, name="copy.html")
    plt.close(figure)
    assert (from_path.name, from_path.media_type) == ("report.html", "text/html")
    assert _read(workspace, from_path.digest) == report.read_bytes()
    assert from_path.size == report.stat().st_size
    assert same_again.digest == from_path.digest
    assert _read(workspace, from_bytes.digest) == b"\x00\x01raw"
    assert json.loads(_read(workspace, from_dict.digest)) == {"rmse": 41.2, "model": "gbm"}
    assert from_dict.media_type == "application/json"
    assert from_frame.media_type == "application/vnd.apache.parquet"
    pd.testing.assert_frame_equal(
        pd.read_parquet(io.BytesIO(_read(workspace, from_frame.digest))), frame
    )
    assert from_figure.media_type == "image/png"
    assert _read(workspace, from_figure.digest).startswith(b"\x89PNG")
    names = [record.name for record in workspace.get_run(run.id).artifacts()]
    assert sorted(names) == sorted(
        [
            "report.html",
            "raw/blob.bin",
            "metrics.json",
            "predictions.parquet",
            "plots/loss.png",
            "copy.html",
        ]
    )


def test_bad_artifacts_are_refused_clearly(workspace: Workspace, tmp_path: Path) -> None:
    with workspace.start_run("exp") as run:
        with pytest.raises(UnsafePath):
            run.log_artifact(b"x", name="../../etc/passwd")
        with pytest.raises(UnsafePath):
            run.log_artifact(b"x", name="/etc/passwd")
        with pytest.raises(ValidationFailed, match="needs a name"):
            run.log_artifact(b"x")
        with pytest.raises(ValidationFailed, match="is a folder"):
            run.log_artifact(tmp_path)
        with pytest.raises(ValidationFailed, match="does not exist"):
            run.log_artifact(tmp_path / "missing.csv")
        with pytest.raises(TypeError, match="cannot log a set"):
            run.log_artifact({1, 2}, name="s")
        with pytest.raises(ValidationFailed, match="cannot be stored as JSON"):
            run.log_artifact({"f": object()}, name="bad.json")
        run.log_artifact(b"one", name="x.bin")
        with pytest.raises(AlreadyExists):
            run.log_artifact(b"two", name="x.bin")
    assert [record.name for record in workspace.get_run(run.id).artifacts()] == ["x.bin"]


def test_logging_a_dict_does_not_import_matplotlib_or_pandas(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        import mlcycle as mc
        with mc.start_run("exp") as run:
            run.log_artifact({"a": 1}, name="a.json")
        print(sorted(m for m in ("matplotlib", "pandas") if m in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == "[]"
