"""``mlcycle predict``: score a dataset version or a file with a model, into Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlcycle.cli._context import console, open_workspace

__all__ = ["predict"]


def predict(  # noqa: PLR0917 (Typer maps each parameter to an argument or option)
    ctx: typer.Context,
    model: Annotated[
        str,
        typer.Argument(
            help="The model: models:/NAME@ALIAS, models:/NAME/VERSION, NAME@ALIAS or NAME/VERSION."
        ),
    ],
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="What to score: a dataset version (bike/5, or bike for the latest) or a "
            ".csv/.parquet file. It needs every input column of the model's signature.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            dir_okay=False,
            help="The Parquet file to write: row (position in the input), the --keep columns "
            "and prediction. Written only when every row is scored.",
        ),
    ],
    keep: Annotated[
        str | None,
        typer.Option(
            "--keep",
            help="Input columns to copy into the scores, comma-separated (such as dteday,hr).",
        ),
    ] = None,
    batch_rows: Annotated[
        int,
        typer.Option("--batch-rows", min=1, help="Rows per predict call."),
    ] = 65_536,
) -> None:
    """Score every row of a dataset version or file in batches, and record its lineage.

    \b
    mlcycle predict models:/bike-demand@production --data bike/5 --out scores.parquet
    mlcycle predict bike-demand/3 --data new-hours.csv --out scores.parquet --keep dteday,hr

    Models with an ONNX copy are scored by ONNX Runtime. The scores file is
    also stored as an artifact; mc.lineage("scores:<digest>") shows the model
    version and data it came from. On any error nothing is written.
    """
    from mlcycle.serve import batch_score

    kept = [name.strip() for name in keep.split(",") if name.strip()] if keep else []
    with open_workspace(ctx) as workspace:
        scores = batch_score(
            model,
            data,
            out,
            registry=workspace.registry,
            datasets=workspace.data,
            artifacts=workspace.artifacts,
            lineage=workspace.metadata,
            clock=workspace.clock,
            actor=workspace.actor,
            keep=kept,
            batch_rows=batch_rows,
        )
    console().print(
        f"scored {scores.rows:,} rows of {scores.data} with {scores.model} ({scores.runtime}) "
        f"in {scores.seconds:.2f} s ({scores.rows_per_second:,.0f} rows/s) -> {scores.out}\n"
        f"lineage: {scores.ref}",
        markup=False,
    )
