"""Deployments through the SDK: checked, resolved in the registry, stored with events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from tests.serve.conftest import failed_request

import mlcycle as mc
from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.serve import (
    PredictionBatch,
    PredictionLog,
    check_deployment,
    compose,
    parse_deployments,
    spool_dir,
)
from mlcycle.serve._deployments import SEVERAL_VALUES
from mlcycle.serve._predlog import FAILED_SUFFIX
from mlcycle.settings import Settings
from mlcycle.store import Deployment, Variant
from mlcycle.workspace import Workspace


def _applied(workspace: Workspace) -> list[int]:
    return [e.payload["revision"] for e in workspace.events(types=["deployment.applied"])]


def test_deploy_a_canary_then_change_it(bike_models: Workspace) -> None:
    deployments = bike_models.deployments
    first = deployments.deploy(
        "bike-demand",
        model="models:/bike-demand@production",
        canary={"bike-demand/2": 10},
        sticky_key="station",
        key_columns=["station", "hr"],
    )
    assert first.policy == "canary"
    assert [(v.name, v.model, v.weight) for v in first.variants] == [
        ("primary", "bike-demand@production", 90.0),
        ("canary", "bike-demand/2", 10.0),
    ]
    assert (first.revision, first.actor, first.key_columns) == (1, "ana", ("station", "hr"))
    second = deployments.deploy(
        "bike-demand", model="bike-demand@production", shadow=["bike-demand/3"]
    )
    assert (second.policy, second.revision) == ("shadow", 2)
    assert second.variants[1] == Variant("shadow", "bike-demand/3", weight=0.0, shadow=True)
    assert deployments.get("bike-demand") == second
    assert _applied(bike_models) == [1, 2]


def test_an_ab_test_names_its_variants_a_and_b(bike_models: Workspace) -> None:
    stored = bike_models.deployments.deploy(
        "bike-ab", model="bike-demand/1", canary={"bike-demand/2": 50}, policy="ab"
    )
    assert [(v.name, v.weight) for v in stored.variants] == [("a", 50.0), ("b", 50.0)]


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"model": "bike-demand/9"}, r"variant 'primary': cannot resolve model 'bike-demand/9'"),
        ({"model": "nope@production"}, r"cannot resolve model 'nope@production'"),
        ({"model": "bike-demand@staging"}, r"cannot resolve model 'bike-demand@staging'"),
        ({"model": "bike demand"}, r"not a reference"),
        ({"model": "bike-demand/1", "canary": {"bike-demand/9": 10}}, r"variant 'canary'"),
        ({"model": "bike-demand/1", "canary": {"bike-demand/2": 120}}, r"must add up to 100"),
        ({"model": "bike-demand/1", "canary": {"bike-demand/2": -5}}, r"must add up to 100"),
        ({"model": "bike-demand/1", "canary": {"bike-demand/2": 100}}, r"each above 0"),
        ({"model": "bike-demand/1", "policy": "blue-green"}, r"unknown policy 'blue-green'"),
        ({"model": "bike-demand/1", "policy": "canary"}, r"one answering variant"),
        ({"model": "bike-demand/1", "policy": "shadow"}, r"at least one shadow"),
        (
            {"model": "bike-demand/1", "shadow": ["bike-demand/2"], "policy": "single"},
            r"policy 'single'",
        ),
        ({"model": "bike-demand/1", "sticky_key": "station"}, r"sticky key but policy 'single'"),
    ],
)
def test_bad_deployments_are_refused_and_nothing_is_stored(
    bike_models: Workspace, options: dict[str, object], problem: str
) -> None:
    with pytest.raises((ValidationFailed, NotFound), match=problem):
        bike_models.deployments.deploy("bike-demand", **options)  # type: ignore[arg-type]
    assert bike_models.deployments.list() == []
    assert _applied(bike_models) == []


def test_a_shadow_only_deployment_is_refused(bike_models: Workspace) -> None:
    shadow_only = Deployment(
        name="ghost",
        policy="shadow",
        variants=(Variant("shadow", "bike-demand/2", shadow=True),),
    )
    with pytest.raises(ValidationFailed, match="only shadow variants, and a shadow answers nobody"):
        bike_models.deployments.apply(shadow_only)
    assert bike_models.deployments.list() == []


def register_other_outputs(workspace: Workspace, hours: pd.DataFrame) -> None:
    """``bike-busy`` (a classifier: a string a row) and ``bike-both`` (two numbers a row)."""
    features = hours[["station", "hr", "temp"]]
    busy = np.where(hours["cnt"] > hours["cnt"].median(), "busy", "quiet")
    classifier = LogisticRegression(max_iter=200).fit(features, busy)
    workspace.registry.register("bike-busy", classifier, input_example=features.head(5))
    both = Ridge().fit(features, hours[["cnt", "hr"]])
    workspace.registry.register("bike-both", both, input_example=features.head(5))


@pytest.mark.parametrize(
    ("other", "kind"),
    [("bike-busy/1", "one string a row"), ("bike-both/1", "2 numbers a row")],
    ids=["strings", "two numbers"],
)
def test_variants_predicting_different_kinds_of_output_are_refused(
    bike_models: Workspace, hours: pd.DataFrame, other: str, kind: str
) -> None:
    register_other_outputs(bike_models, hours)
    bike_models.deployments.deploy("bike-demand", model="bike-demand/1")
    expected = (
        rf"deployment 'bike-demand': its variants predict different kinds of output "
        rf"\(primary \(bike-demand/1\): one number a row, [a-z-]+ \({other}\): {kind}\)"
    )
    with pytest.raises(ValidationFailed, match=expected):
        bike_models.deployments.deploy("bike-demand", model="bike-demand/1", canary={other: 10})
    with pytest.raises(ValidationFailed, match=expected):
        bike_models.deployments.deploy("bike-demand", model="bike-demand/1", shadow=[other])
    with pytest.raises(ValidationFailed, match="separate deployments"):
        bike_models.deployments.apply_desired(
            [
                compose("first", model="bike-demand/2"),
                compose("bike-demand", model=other, canary={"bike-demand/3": 50}),
            ]
        )
    assert [d.name for d in bike_models.deployments.list()] == ["bike-demand"]
    (served,) = bike_models.deployments.get("bike-demand").variants
    assert served.model == "bike-demand/1"
    assert _applied(bike_models) == [1]
    # One kind of output is served side by side whatever the model: two classifiers, say.
    bike_models.deployments.deploy("busy", model=other, shadow=[other])


def test_a_failed_change_keeps_the_applied_revision(bike_models: Workspace) -> None:
    bike_models.deployments.deploy("bike-demand", model="bike-demand@production")
    with pytest.raises(NotFound, match="bike-demand/7"):
        bike_models.deployments.deploy("bike-demand", model="bike-demand/7")
    assert bike_models.deployments.get("bike-demand").variants[0].model == "bike-demand@production"
    assert _applied(bike_models) == [1]


def test_remove_and_an_unknown_name(bike_models: Workspace) -> None:
    bike_models.deployments.deploy("bike-demand", model="bike-demand@production")
    with pytest.raises(NotFound, match=r"no deployment 'bike' \(known: bike-demand\)"):
        bike_models.deployments.get("bike")
    assert bike_models.deployments.remove("bike-demand").name == "bike-demand"
    assert [e.type for e in bike_models.events(types=["deployment.removed"])] == [
        "deployment.removed"
    ]


TOML = """
[deployments.bike-demand]
policy = "canary"
sticky_key = "station"
key_columns = ["station", "hr"]
variants = [
  { name = "primary", model = "bike-demand@production", weight = 90 },
  { name = "canary", model = "bike-demand/2", weight = 10 },
]

[deployments.bike-simple]
model = "bike-demand/3"
"""


def _write_toml(project: Path, body: str) -> None:
    path = project / "mlcycle.toml"
    path.write_text(path.read_text() + body)


def test_parse_the_toml_tables() -> None:
    import tomllib

    [canary, simple] = parse_deployments(tomllib.loads(TOML)["deployments"])
    assert canary.policy == "canary"
    assert canary.variants[1] == Variant("canary", "bike-demand/2", 10.0)
    assert (canary.sticky_key, canary.key_columns) == ("station", ("station", "hr"))
    assert simple == Deployment(
        name="bike-simple", variants=(Variant("primary", "bike-demand/3", 100.0),), policy="single"
    )


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"x": 3}, r"\[deployments.x\] in mlcycle.toml must be a table"),
        ({"x": {"model": "m@a", "colour": "red"}}, r"\[deployments.x\].*unknown key colour"),
        ({"x": {}}, r"either model = 'REF' or variants"),
        ({"x": {"model": "m@a", "variants": []}}, r"either model = 'REF' or variants"),
        ({"x": {"variants": "m"}}, r"variants must be a list"),
        ({"x": {"variants": [{"name": "a", "model": "m/1", "size": 3}]}}, r"unknown key size"),
        ({"x": {"variants": [{"name": "a", "model": "m/1", "weight": "ten"}]}}, r"weight must"),
        ({"x": {"variants": [{"name": "a", "model": "m/1", "shadow": 1}]}}, r"shadow must"),
        ({"x": {"variants": [{"name": "a", "weight": 100}]}}, r"model must be a non-empty"),
        ({"x": {"model": "m@a", "key_columns": "station"}}, r"key_columns must be a list"),
        ({"x": {"model": "m@a", "sticky_key": 3}}, r"sticky_key must be a column name"),
        ({"x": {"model": "m@a", "policy": "round-robin"}}, r"unknown policy 'round-robin'"),
    ],
)
def test_bad_toml_tables_are_refused_naming_the_table(
    table: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValidationFailed, match=problem):
        parse_deployments(table)


def test_the_toml_is_the_desired_state(project: Path, bike_models: Workspace) -> None:
    bike_models.deployments.deploy("old-one", model="bike-demand/1")
    bike_models.deployments.deploy("bike-simple", model="bike-demand/1")
    _write_toml(project, TOML)
    with Workspace.open(Settings(home=project, actor="bo")) as reopened:
        desired = parse_deployments(reopened.settings.deployments)
        planned = reopened.deployments.apply_desired(desired, dry_run=True)
        assert [(c.name, c.action) for c in planned] == [
            ("bike-demand", "create"),
            ("bike-simple", "change"),
            ("old-one", "extra"),
        ]
        assert reopened.deployments.get("bike-simple").revision == 1  # a dry run changed nothing
        reopened.deployments.apply_desired(desired, prune=True)
        assert [d.name for d in reopened.deployments.list()] == ["bike-demand", "bike-simple"]
        again = reopened.deployments.apply_desired(desired, prune=True)
        assert {c.action for c in again} == {"unchanged"}
        events = [
            (e.type, e.payload["name"])
            for e in reopened.events(types=["deployment.applied", "deployment.removed"])
        ]
    assert events[-3:] == [
        ("deployment.applied", "bike-demand"),
        ("deployment.applied", "bike-simple"),
        ("deployment.removed", "old-one"),
    ]


def test_an_unresolvable_model_in_the_toml_applies_nothing(bike_models: Workspace) -> None:
    desired = [
        compose("first", model="bike-demand/1"),
        compose("second", model="bike-demand/8"),
    ]
    with pytest.raises(NotFound, match="deployment 'second', variant 'primary'"):
        bike_models.deployments.apply_desired(desired)
    assert bike_models.deployments.list() == []


def test_the_module_sdk_acts_on_the_working_directory(bike_models: Workspace) -> None:
    try:
        stored = mc.serve.deploy("bike-demand", model="bike-demand@production")
        assert mc.serve.get_deployment("bike-demand") == stored
        assert [d.name for d in mc.serve.deployments()] == ["bike-demand"]
        changed = mc.serve.apply(compose("bike-demand", model="bike-demand/2"))
        assert [c.action for c in changed] == ["change"]
        assert mc.serve.undeploy("bike-demand").revision == 2
        assert mc.serve.apply() == []  # mlcycle.toml has no deployments
    finally:
        mc.close()


def test_check_strips_the_models_prefix() -> None:
    found = check_deployment(compose("d", model="models:/bike-demand/1"))
    assert found.variants[0].model == "bike-demand/1"


def log_outputs(log: PredictionLog, deployment: str, outputs: np.ndarray) -> None:
    """Log one answered request of ``outputs`` (a row each) for ``deployment``."""
    count = len(outputs)
    log.append(
        PredictionBatch(
            deployment=deployment,
            model="earlier",
            model_version=1,
            variant="primary",
            shadow=False,
            request_ids=["r1"] * count,
            row_indexes=list(range(count)),
            times=[1.9e9] * count,
            latency_ms=[1.0] * count,
            inputs={"hr": np.arange(count, dtype=np.float64)},
            outputs=outputs,
        )
    )


KINDS = pytest.mark.parametrize(
    "case",
    [
        (np.array([3.0, 4.0]), "bike-busy/1", "one string a row", "one number a row"),
        (np.array([3.0, 4.0]), "bike-both/1", "2 numbers a row", "one number a row"),
        (np.array([[3.0, 1.0], [4.0, 2.0]]), "bike-demand/1", "one number a row", SEVERAL_VALUES),
        (
            np.array(["busy", "quiet"], dtype=object),
            "bike-demand/1",
            "one number a row",
            "one string a row",
        ),
    ],
    ids=["number-then-string", "number-then-two", "two-then-number", "string-then-number"],
)


@pytest.mark.parametrize("where", ["table", "spool"])
@KINDS
def test_a_model_of_another_kind_than_the_log_holds_is_refused(
    bike_models: Workspace, hours: pd.DataFrame, where: str, case: tuple[np.ndarray, str, str, str]
) -> None:
    """What the log's Delta table holds, or its segments in the spool (any process's)."""
    logged, model, kind, held = case
    register_other_outputs(bike_models, hours)
    log = bike_models.prediction_log()
    try:
        log_outputs(log, "bikes", logged)
        if where == "table":
            log.close()  # rolled over into the Delta table
        else:
            log.flush()  # written to a segment in the spool
        expected = (
            rf"deployment 'bikes': variant primary \({model}\) predicts {kind}, but the "
            rf"deployment's prediction log holds {held} .* serve that model as a deployment of "
            rf"another name, or move the alias back to a model predicting {held}"
        )
        with pytest.raises(ValidationFailed, match=expected):
            bike_models.deployments.deploy("bikes", model=model)
        assert bike_models.deployments.list() == []
        bike_models.deployments.deploy("other", model=model)  # a log of its own
    finally:
        log.close()
    assert not list(spool_dir(bike_models.settings).rglob(f"*{FAILED_SUFFIX}"))


@KINDS
def test_the_log_tells_what_it_holds_from_its_queue_on(
    bike_models: Workspace, case: tuple[np.ndarray, str, str, str]
) -> None:
    logged, _, _, held = case
    log = bike_models.prediction_log(flush_interval_s=1.0)
    try:
        assert log.logged_schema("bikes").output is None
        log_outputs(log, "bikes", logged)
        queued = log.logged_schema("bikes").output
        log.flush()
        written = log.logged_schema("bikes").output
    finally:
        log.close()
    assert (queued, written, log.logged_schema("bikes").output) == (held, held, held)
    assert log.logged_schema("other").output is None


def test_a_log_of_failed_requests_only_takes_any_kind(bike_models: Workspace) -> None:
    log = bike_models.prediction_log()
    try:
        log.append(failed_request("bikes", "r1"))
        log.flush()
        assert log.logged_schema("bikes").output is None
    finally:
        log.close()
    bike_models.deployments.deploy("bikes", model="bike-demand/1")
