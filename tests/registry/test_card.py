"""Model cards in Markdown and HTML: a version, its evaluation, history, data, environment."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import Ridge
from threadpoolctl import threadpool_limits

from mlcycle.data import profile_table
from mlcycle.datasets import BIKE_SHARING_HOURLY
from mlcycle.ids import Digest, RunId
from mlcycle.registry import (
    ColumnSpec,
    Evaluation,
    GateInputs,
    LoadedModel,
    ModelCard,
    Signature,
    SklearnFlavor,
    evaluate_gates,
)
from mlcycle.settings import GateSettings, MetricBound, SliceGate
from mlcycle.store import AliasMove, Environment, ModelVersion

FEATURES = ["season", "yr", "hr", "workingday", "temp", "hum"]
WHEN = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def evaluation() -> Evaluation:
    frame = pd.read_csv(BIKE_SHARING_HOURLY)
    train, test = frame.iloc[:14_000], frame.iloc[14_000:]
    signature = Signature(
        inputs=tuple(
            ColumnSpec(name, "float64" if name in {"temp", "hum"} else "int64") for name in FEATURES
        ),
        outputs=(ColumnSpec("prediction", "float64"),),
    )
    with threadpool_limits(limits=1):
        model = Ridge().fit(train[FEATURES], train["cnt"])
    settings = GateSettings(
        target="cnt",
        thresholds={"rmse": MetricBound(max=100.0)},
        require_disjoint_test=False,
        slices=(SliceGate(column="workingday", metrics={"r2": MetricBound(min=0.0)}),),
    )
    inputs = GateInputs(
        LoadedModel(model, SklearnFlavor(), signature),
        test,
        settings=settings,
        train=train,
        latency_samples=5,
    )
    return evaluate_gates(inputs)


@pytest.fixture
def version(evaluation: Evaluation) -> ModelVersion:
    return ModelVersion(
        name="bike-demand",
        version=2,
        flavor="sklearn",
        digest=Digest("c0ffee" * 10 + "abcd"),
        signature={},
        run_id=RunId("01JRUN"),
        dataset_versions=("data:/bike/1",),
        code_version="1a2b3c4",
        created_at=WHEN,
        actor="ana",
        size=4_096,
        tags={
            "purpose": "Plan bike <rebalancing> per hour",
            "owner": "mobility team",
            "algo": "ridge",
        },
        params={"alpha": "1.0"},
        limitations="Trained on 2011-2012 Washington D.C. data only.",
        evaluation=evaluation.to_dict(),
    )


def moves() -> list[AliasMove]:
    return [
        AliasMove("bike-demand", "production", None, 1, "promote", "ana", WHEN, reason="first"),
        AliasMove(
            "bike-demand",
            "production",
            1,
            2,
            "promote",
            "bo",
            WHEN,
            forced=True,
            reason="hotfix | urgent",
        ),
        AliasMove("bike-demand", "staging", None, 2, "promote", "bo", WHEN),
        AliasMove("other-model", "production", None, 9, "promote", "bo", WHEN),
    ]


def test_markdown_card_holds_every_section(version: ModelVersion, evaluation: Evaluation) -> None:
    profile = profile_table(pa.Table.from_pandas(pd.read_csv(BIKE_SHARING_HOURLY).head(500)))
    environment = Environment(
        digest=Digest("e" * 64),
        python="3.11.9",
        platform="Linux-x86_64",
        packages={"scikit-learn": "1.9.1", "numpy": "2.4.6", "rich": "13.7"},
    )
    card = ModelCard.build(
        version, history=moves(), profiles={"data:/bike/1": profile}, environment=environment
    )
    text = card.to_markdown()
    assert text.startswith("# Model card: bike-demand version 2\n")
    assert "| Purpose | Plan bike <rebalancing> per hour |" in text
    assert "| Owner | mobility team |" in text
    assert "| Current aliases | production, staging |" in text
    assert "| Tag algo | ridge |" in text
    assert "`data:/bike/1`: 500 rows, 17 columns." in text
    assert "| cnt | numeric | 0 |" in text
    rmse, baseline = evaluation.metrics["rmse"], evaluation.compared["baseline"]["rmse"]
    assert f"| rmse | {rmse:.4g} | {baseline:.4g} |" in text
    assert "| workingday=1 |" in text
    assert "| threshold.rmse.max | pass |" in text or "| threshold.rmse.max | FAIL |" in text
    assert "| disjoint_test | skipped | turned off (require_disjoint_test = false) |" in text
    assert "| alpha | 1.0 |" in text
    assert "| scikit-learn | 1.9.1 |" in text
    assert "1 other packages" in text
    assert "Trained on 2011-2012 Washington D.C. data only." in text
    assert "SHAP skipped: Ridge is not a tree model" in text
    assert "| hr |" in text  # among the permutation importances
    assert (
        "| 2025-03-01 09:30 | production | promote (forced) | 1 | 2 | bo | hotfix \\| urgent |"
        in text
    )
    assert "other-model" not in text


def test_html_card_is_self_contained_and_escaped(version: ModelVersion, tmp_path: Path) -> None:
    card = ModelCard.build(version, history=moves())
    page = card.to_html()
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page
    assert "http" not in page
    assert "Plan bike &lt;rebalancing&gt; per hour" in page
    assert "<h2>Validation gates</h2>" in page
    assert "<h2>Alias history</h2>" in page
    markdown, html = card.write(tmp_path / "cards")
    assert markdown.name == "bike-demand-v2.md"
    assert html.name == "bike-demand-v2.html"
    assert markdown.read_text() == card.to_markdown()
    assert html.read_text() == page


def test_a_bare_version_says_what_is_missing(version: ModelVersion) -> None:
    bare = replace(version, evaluation=None, tags={}, params={}, limitations=None, run_id=None)
    text = ModelCard.build(bare).to_markdown()
    assert "Not stated (tag `purpose`)." in text
    assert "This version has not been evaluated" in text
    assert "`data:/bike/1`: no profile available." in text
    assert "The training environment was not recorded." in text
    assert "No alias was ever moved" in text
    assert "Not stated by the owner (field `limitations`)." in text


def test_failed_gates_are_listed_as_limitations(
    version: ModelVersion, evaluation: Evaluation
) -> None:
    failing = replace(
        evaluation,
        results=(
            *evaluation.results,
            replace(evaluation.results[0], passed=False, detail="rmse too high"),
        ),
    )
    card = ModelCard.build(version, evaluation=failing)
    assert f"Failed gate {evaluation.results[0].name}: rmse too high" in card.to_markdown()
    assert "Verdict: FAILED." in card.to_markdown()
    assert "class='fail'" in card.to_html()
