"""scikit-learn tree ensembles as ONNX graphs in double precision, so no threshold flips.

skl2onnx writes tree ensembles with float32 thresholds and leaf values: a
feature value lying between a float64 threshold and its float32 rounding
takes the other branch, and a gradient boosting model drifts by whole leaves.
This module writes the ``ai.onnx.ml`` opset 5 ``TreeEnsemble`` operator,
whose splits, leaf weights and output are doubles, and reproduces how
scikit-learn compares: its decision trees round the input to float32 first,
its histogram gradient boosting compares float64 values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlcycle.errors import ValidationFailed

if TYPE_CHECKING:
    import numpy as np
    import onnx

__all__ = ["TREE_ENSEMBLES", "tree_ensemble_to_onnx"]

TREE_ENSEMBLES = frozenset(
    {
        "DecisionTreeRegressor",
        "DecisionTreeClassifier",
        "RandomForestRegressor",
        "RandomForestClassifier",
        "ExtraTreesRegressor",
        "ExtraTreesClassifier",
        "GradientBoostingRegressor",
        "GradientBoostingClassifier",
        "HistGradientBoostingRegressor",
        "HistGradientBoostingClassifier",
    }
)
"""The scikit-learn estimators converted here rather than through skl2onnx."""

_ONNX_OPSET = 21
_ML_OPSET = 5


@dataclass
class _Forest:
    """The node and leaf arrays of one ``TreeEnsemble`` node, filled tree by tree."""

    roots: list[int] = field(default_factory=list)
    features: list[int] = field(default_factory=list)
    splits: list[float] = field(default_factory=list)
    true_ids: list[int] = field(default_factory=list)
    true_leafs: list[int] = field(default_factory=list)
    false_ids: list[int] = field(default_factory=list)
    false_leafs: list[int] = field(default_factory=list)
    missing_true: list[int] = field(default_factory=list)
    leaf_targets: list[int] = field(default_factory=list)
    leaf_weights: list[float] = field(default_factory=list)

    def add_tree(
        self,
        nodes: _TreeNodes,
        leaf_value: Callable[[int], float],
        *,
        target: int,
    ) -> None:
        """Append one binary tree whose leaves all add to output column ``target``."""
        if nodes.is_leaf(0):  # a lone leaf: a split whose two branches reach it
            leaf = self._leaf(leaf_value(0), target)
            self.roots.append(self._split(0, 0.0, missing_left=True))
            self._link(self.roots[-1], (leaf, True), (leaf, True))
            return
        interior: dict[int, int] = {}
        for node in range(nodes.count):
            if not nodes.is_leaf(node):
                interior[node] = self._split(
                    nodes.feature[node],
                    nodes.threshold[node],
                    missing_left=nodes.missing_left[node],
                )
        self.roots.append(interior[0])
        for node, index in interior.items():
            ends = []
            for child in (nodes.left[node], nodes.right[node]):
                if nodes.is_leaf(child):
                    ends.append((self._leaf(leaf_value(child), target), True))
                else:
                    ends.append((interior[child], False))
            self._link(index, ends[0], ends[1])

    def _split(self, feature: int, threshold: float, *, missing_left: bool) -> int:
        self.features.append(int(feature))
        self.splits.append(float(threshold))
        self.missing_true.append(int(missing_left))
        self.true_ids.append(0)
        self.true_leafs.append(0)
        self.false_ids.append(0)
        self.false_leafs.append(0)
        return len(self.features) - 1

    def _leaf(self, value: float, target: int) -> int:
        self.leaf_targets.append(target)
        self.leaf_weights.append(float(value))
        return len(self.leaf_weights) - 1

    def _link(self, index: int, true: tuple[int, bool], false: tuple[int, bool]) -> None:
        self.true_ids[index], self.true_leafs[index] = true[0], int(true[1])
        self.false_ids[index], self.false_leafs[index] = false[0], int(false[1])

    def node(self, source: str, output: str, *, targets: int) -> onnx.NodeProto:
        """The ``TreeEnsemble`` node summing every tree into ``targets`` double columns."""
        import numpy as np  # noqa: PLC0415  (light: already loaded with pandas)
        from onnx import helper, numpy_helper  # noqa: PLC0415  (the onnx extra)

        return helper.make_node(
            "TreeEnsemble",
            [source],
            [output],
            domain="ai.onnx.ml",
            n_targets=targets,
            aggregate_function=1,  # SUM
            post_transform=0,  # NONE
            tree_roots=self.roots,
            nodes_featureids=self.features,
            nodes_splits=numpy_helper.from_array(np.asarray(self.splits, dtype=np.float64)),
            nodes_modes=numpy_helper.from_array(np.zeros(len(self.splits), dtype=np.uint8)),
            nodes_truenodeids=self.true_ids,
            nodes_trueleafs=self.true_leafs,
            nodes_falsenodeids=self.false_ids,
            nodes_falseleafs=self.false_leafs,
            nodes_missing_value_tracks_true=self.missing_true,
            leaf_targetids=self.leaf_targets,
            leaf_weights=numpy_helper.from_array(np.asarray(self.leaf_weights, dtype=np.float64)),
        )


@dataclass(frozen=True)
class _TreeNodes:
    """One tree as parallel arrays; a node is a leaf when it has no left child."""

    left: Sequence[int]
    right: Sequence[int]
    feature: Sequence[int]
    threshold: Sequence[float]
    missing_left: Sequence[bool]
    leaf: Sequence[bool]

    @property
    def count(self) -> int:
        return len(self.left)

    def is_leaf(self, node: int) -> bool:
        return bool(self.leaf[node])


def _leaf_values(values: Any, *, scale: float = 1.0) -> Callable[[int], float]:  # Any: an array
    """The value of a leaf by node index, times ``scale`` (a learning rate, a forest's share)."""

    def value(node: int) -> float:
        return float(values[node]) * scale

    return value


def _sklearn_tree(tree: Any) -> _TreeNodes:  # Any: sklearn.tree._tree.Tree
    left = tree.children_left.tolist()
    return _TreeNodes(
        left=left,
        right=tree.children_right.tolist(),
        feature=tree.feature.tolist(),
        threshold=tree.threshold.tolist(),
        missing_left=tree.missing_go_to_left.astype(bool).tolist(),
        leaf=[child == -1 for child in left],
    )


def _hist_tree(predictor: Any) -> _TreeNodes:  # Any: a fitted TreePredictor
    nodes = predictor.nodes
    if nodes["is_categorical"].any():
        raise ValidationFailed(
            "histogram gradient boosting with categorical splits has no exact ONNX form"
        )
    return _TreeNodes(
        left=nodes["left"].tolist(),
        right=nodes["right"].tolist(),
        feature=nodes["feature_idx"].tolist(),
        threshold=nodes["num_threshold"].tolist(),
        missing_left=nodes["missing_go_to_left"].astype(bool).tolist(),
        leaf=nodes["is_leaf"].astype(bool).tolist(),
    )


@dataclass(frozen=True)
class _Plan:
    """What to emit: the summed trees, a constant base, and how raw scores become outputs."""

    forest: _Forest
    targets: int
    base: list[float]
    float32_input: bool
    link: str  # "identity" (regression), "sigmoid", "softmax" or "proba" (already probabilities)
    classes: np.ndarray | None = None


def _check_loss(model: Any, expected: set[str]) -> None:  # Any: a fitted estimator
    loss = type(model._loss).__name__  # the loss decides the link; no public API
    if loss not in expected:
        raise ValidationFailed(
            f"{type(model).__name__} with loss {loss} has no exact ONNX form here "
            f"(supported: {', '.join(sorted(expected))})"
        )


def _plan_single_tree(model: Any, *, classifier: bool) -> _Plan:  # Any: a fitted estimator
    return _plan_forest(model, [model], classifier=classifier)


def _plan_forest(model: Any, trees: Sequence[Any], *, classifier: bool) -> _Plan:  # Any: fitted
    if getattr(model, "n_outputs_", 1) != 1:
        raise ValidationFailed(f"{type(model).__name__} with several outputs is not supported")
    forest = _Forest()
    share = 1.0 / len(trees)
    classes = len(model.classes_) if classifier else 1
    for estimator in trees:
        nodes = _sklearn_tree(estimator.tree_)
        values = estimator.tree_.value[:, 0, :]
        if classifier:
            totals = values.sum(axis=1)
            totals[totals == 0.0] = 1.0
            values = values / totals[:, None]
        for target in range(classes):
            column = values[:, target]
            forest.add_tree(nodes, _leaf_values(column, scale=share), target=target)
    return _Plan(
        forest=forest,
        targets=classes,
        base=[0.0] * classes,
        float32_input=True,
        link="proba" if classifier else "identity",
        classes=model.classes_ if classifier else None,
    )


def _plan_gradient_boosting(model: Any, *, classifier: bool) -> _Plan:  # Any: fitted
    init = model.init_
    if not (init == "zero" or type(init).__name__ in {"DummyRegressor", "DummyClassifier"}):
        raise ValidationFailed(
            f"GradientBoosting with init={type(init).__name__} has no exact ONNX form"
        )
    if classifier:
        _check_loss(model, {"HalfBinomialLoss", "HalfMultinomialLoss"})
    import numpy as np  # noqa: PLC0415  (light: already loaded with pandas)

    zeros = np.zeros((1, model.n_features_in_))
    base = [float(v) for v in model._raw_predict_init(zeros)[0]]  # constant init
    stages = model.estimators_
    forest = _Forest()
    rate = float(model.learning_rate)
    for stage in stages:
        for target, estimator in enumerate(stage):
            values = estimator.tree_.value[:, 0, 0]
            nodes = _sklearn_tree(estimator.tree_)
            forest.add_tree(nodes, _leaf_values(values, scale=rate), target=target)
    targets = stages.shape[1]
    return _Plan(
        forest=forest,
        targets=targets,
        base=base,
        float32_input=True,
        link=("sigmoid" if targets == 1 else "softmax") if classifier else "identity",
        classes=model.classes_ if classifier else None,
    )


def _plan_hist_gradient_boosting(model: Any, *, classifier: bool) -> _Plan:  # Any: fitted
    expected = {"HalfBinomialLoss", "HalfMultinomialLoss"} if classifier else set()
    if not classifier:
        link = type(model._loss.link).__name__  # no public API for the link
        if link != "IdentityLink":
            raise ValidationFailed(
                f"HistGradientBoostingRegressor with a {link} has no exact ONNX form here"
            )
    else:
        _check_loss(model, expected)
    forest = _Forest()
    for iteration in model._predictors:  # the fitted trees; no public API
        for target, predictor in enumerate(iteration):
            nodes = _hist_tree(predictor)
            values = predictor.nodes["value"]
            forest.add_tree(nodes, _leaf_values(values), target=target)
    base = [float(v) for v in model._baseline_prediction.ravel()]
    targets = len(base)
    return _Plan(
        forest=forest,
        targets=targets,
        base=base,
        float32_input=False,
        link=("sigmoid" if targets == 1 else "softmax") if classifier else "identity",
        classes=model.classes_ if classifier else None,
    )


_PLANNERS: dict[str, Callable[..., _Plan]] = {
    "DecisionTree": _plan_single_tree,
    "RandomForest": lambda model, *, classifier: _plan_forest(
        model, model.estimators_, classifier=classifier
    ),
    "ExtraTrees": lambda model, *, classifier: _plan_forest(
        model, model.estimators_, classifier=classifier
    ),
    "GradientBoosting": _plan_gradient_boosting,
    "HistGradientBoosting": _plan_hist_gradient_boosting,
}


def tree_ensemble_to_onnx(model: object, *, input_name: str = "X") -> onnx.ModelProto:
    """A fitted scikit-learn tree ensemble as an ONNX model computing in float64.

    The graph takes one float64 input ``X`` (rows by features; ``input_name``). A regressor
    gives ``variable`` (one value per row); a classifier gives ``label`` and
    ``probabilities``.

    Raises:
        ValidationFailed: the model has a part with no exact ONNX form (categorical
            splits, a non-identity link, a custom init estimator, several outputs).
    """
    name = type(model).__name__
    if name not in TREE_ENSEMBLES:
        raise ValidationFailed(f"{name} is not a tree ensemble this converter handles")
    classifier = name.endswith("Classifier")
    family = name.removesuffix("Classifier").removesuffix("Regressor")
    plan = _PLANNERS[family](model, classifier=classifier)
    return _graph(plan, features=int(model.n_features_in_), input_name=input_name)  # type: ignore[attr-defined]


def _graph(plan: _Plan, *, features: int, input_name: str) -> onnx.ModelProto:
    import numpy as np  # noqa: PLC0415  (light: already loaded with pandas)
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415  (the onnx extra)

    nodes = []
    source = input_name
    if plan.float32_input:  # scikit-learn's trees compare float32(x) with float64 thresholds
        nodes.append(helper.make_node("Cast", [input_name], ["mlcycle_x32"], to=TensorProto.FLOAT))
        nodes.append(
            helper.make_node("Cast", ["mlcycle_x32"], ["mlcycle_x64"], to=TensorProto.DOUBLE)
        )
        source = "mlcycle_x64"
    nodes.append(plan.forest.node(source, "mlcycle_trees", targets=plan.targets))
    base = numpy_helper.from_array(np.asarray([plan.base], dtype=np.float64), name="mlcycle_base")
    nodes.append(helper.make_node("Add", ["mlcycle_trees", "mlcycle_base"], ["mlcycle_raw"]))
    initializers = [base]
    inputs = [helper.make_tensor_value_info(input_name, TensorProto.DOUBLE, [None, features])]
    if plan.classes is None:
        nodes.append(helper.make_node("Identity", ["mlcycle_raw"], ["variable"]))
        outputs = [helper.make_tensor_value_info("variable", TensorProto.DOUBLE, [None, 1])]
    else:
        more_nodes, more_initializers, outputs = _classifier_outputs(plan)
        nodes += more_nodes
        initializers += more_initializers
    graph = helper.make_graph(nodes, "mlcycle_trees", inputs, outputs, initializer=initializers)
    opsets = [helper.make_opsetid("", _ONNX_OPSET), helper.make_opsetid("ai.onnx.ml", _ML_OPSET)]
    return helper.make_model(graph, opset_imports=opsets, producer_name="mlcycle")


def _classifier_outputs(
    plan: _Plan,
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], list[onnx.ValueInfoProto]]:
    import numpy as np  # noqa: PLC0415  (light: already loaded with pandas)
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415  (the onnx extra)

    assert plan.classes is not None
    nodes = []
    initializers = []
    if plan.link == "sigmoid":
        one = numpy_helper.from_array(np.ones((1, 1), dtype=np.float64), name="mlcycle_one")
        initializers.append(one)
        nodes += [
            helper.make_node("Sigmoid", ["mlcycle_raw"], ["mlcycle_positive"]),
            helper.make_node("Sub", ["mlcycle_one", "mlcycle_positive"], ["mlcycle_negative"]),
            helper.make_node(
                "Concat", ["mlcycle_negative", "mlcycle_positive"], ["probabilities"], axis=1
            ),
        ]
    elif plan.link == "softmax":
        nodes.append(helper.make_node("Softmax", ["mlcycle_raw"], ["probabilities"], axis=1))
    else:
        nodes.append(helper.make_node("Identity", ["mlcycle_raw"], ["probabilities"]))
    classes = np.asarray(plan.classes)
    string_labels = classes.dtype.kind in "OUS"
    label_type = TensorProto.STRING if string_labels else TensorProto.INT64
    table = classes.astype(object if string_labels else np.int64)
    if not string_labels and not np.array_equal(table, classes):
        raise ValidationFailed("class labels must be integers or strings to convert to ONNX")
    initializers.append(numpy_helper.from_array(table, name="mlcycle_classes"))
    nodes += [
        helper.make_node("ArgMax", ["probabilities"], ["mlcycle_index"], axis=1, keepdims=0),
        helper.make_node("Gather", ["mlcycle_classes", "mlcycle_index"], ["label"], axis=0),
    ]
    outputs = [
        helper.make_tensor_value_info("label", label_type, [None]),
        helper.make_tensor_value_info(
            "probabilities", TensorProto.DOUBLE, [None, len(plan.classes)]
        ),
    ]
    return nodes, initializers, outputs
