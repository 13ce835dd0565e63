"""scikit-learn estimators and pipelines, stored with skops: no pickle, an explicit allow-list.

skops reads an object tree back by type name and refuses any type it was not
told to trust. Beyond skops' own defaults, this module trusts the estimator
classes of the common scikit-learn families (pipelines, column transformers,
scalers, encoders, imputers, linear models, trees, ensembles, dummies, SVMs,
neighbours, ...), the few internals fitted models need (tree node storage,
loss objects, neighbour trees), and ``registry.trusted_types`` may add more;
anything else is refused with its type name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mlcycle.errors import Untrusted, ValidationFailed
from mlcycle.registry._flavor import ANY_TYPE

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["ALLOWED_TYPES", "ESTIMATOR_FAMILIES", "SklearnFlavor"]

ALLOWED_TYPES: frozenset[str] = frozenset(
    {
        # Node storage of every tree model; the stored file's digest is verified before skops
        # reads it, so its indices are the ones the registered estimator had.
        "sklearn.tree._tree.Tree",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.link.LogLink",
        "sklearn._loss.link.Interval",
        "sklearn._loss.loss.HalfSquaredError",
        "sklearn._loss.loss.AbsoluteError",
        "sklearn._loss.loss.PinballLoss",
        "sklearn._loss.loss.HuberLoss",
        "sklearn._loss.loss.HalfPoissonLoss",
        "sklearn._loss.loss.HalfGammaLoss",
        "sklearn._loss.loss.HalfTweedieLoss",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.ExponentialLoss",
        "sklearn._loss._loss.CyHalfSquaredError",
        "sklearn._loss._loss.CyAbsoluteError",
        "sklearn._loss._loss.CyPinballLoss",
        "sklearn._loss._loss.CyHuberLoss",
        "sklearn._loss._loss.CyHalfPoissonLoss",
        "sklearn._loss._loss.CyHalfGammaLoss",
        "sklearn._loss._loss.CyHalfTweedieLoss",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn._loss._loss.CyHalfMultinomialLoss",
        "sklearn._loss._loss.CyExponentialLoss",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        # Neighbour searches (KNN models, KNNImputer) and their metrics.
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        *(
            f"sklearn.metrics._dist_metrics.{metric}Distance{bits}"
            for metric in ("Euclidean", "SEuclidean", "Manhattan", "Chebyshev", "Minkowski")
            for bits in ("64", "32")
        ),
        # Score functions of feature selectors, and the plain containers pipelines keep.
        "sklearn.feature_selection._univariate_selection.f_classif",
        "sklearn.feature_selection._univariate_selection.f_regression",
        "sklearn.feature_selection._univariate_selection.r_regression",
        "sklearn.feature_selection._univariate_selection.chi2",
        "sklearn.feature_selection._mutual_info.mutual_info_classif",
        "sklearn.feature_selection._mutual_info.mutual_info_regression",
        "sklearn.utils._bunch.Bunch",
        # Element-wise functions for FunctionTransformer and TransformedTargetRegressor.
        *(f"numpy.{name}" for name in ("log", "log1p", "exp", "expm1", "sqrt", "square", "abs")),
        "numpy.dtype",
        "builtins.slice",
    }
)

ESTIMATOR_FAMILIES: tuple[str, ...] = (
    "sklearn.calibration",
    "sklearn.cluster",
    "sklearn.compose",
    "sklearn.covariance",
    "sklearn.cross_decomposition",
    "sklearn.decomposition",
    "sklearn.discriminant_analysis",
    "sklearn.dummy",
    "sklearn.ensemble",
    "sklearn.feature_extraction",
    "sklearn.feature_selection",
    "sklearn.gaussian_process",
    "sklearn.impute",
    "sklearn.isotonic",
    "sklearn.kernel_approximation",
    "sklearn.kernel_ridge",
    "sklearn.linear_model",
    "sklearn.mixture",
    "sklearn.multiclass",
    "sklearn.multioutput",
    "sklearn.naive_bayes",
    "sklearn.neighbors",
    "sklearn.neural_network",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.svm",
    "sklearn.tree",
)
"""scikit-learn packages whose estimator classes are trusted: a stored estimator is
data (its parameters and fitted arrays), and these classes run no code of the file's."""


def _is_estimator_class(name: str) -> bool:
    """Whether ``name`` is a scikit-learn estimator class of one of the trusted families."""
    module, _, attribute = name.rpartition(".")
    if not any(
        module == family or module.startswith(family + ".") for family in ESTIMATOR_FAMILIES
    ):
        return False
    import importlib  # noqa: PLC0415  (only for files holding such types)

    from sklearn.base import BaseEstimator  # noqa: PLC0415  (loaded already: skops imports it)

    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        return False
    return isinstance(found, type) and issubclass(found, BaseEstimator)


_CHECKED_ESTIMATORS: set[str] = set()
"""Estimator classes of the trusted families this process has imported and checked."""


class SklearnFlavor:
    """scikit-learn estimators and pipelines in the skops format."""

    name = "sklearn"
    safe = True
    suffix = ".skops"

    def handles(self, model: object) -> bool:
        """Whether ``model`` is a scikit-learn estimator (a pipeline is one)."""
        module = type(model).__module__
        return module.split(".", 1)[0] == "sklearn" and hasattr(model, "get_params")

    def save(self, model: object, path: Path) -> None:
        """Write ``model`` with skops, uncompressed: arrays of floats barely compress, and
        a stored zip member is read without inflating it (loads are faster)."""
        import skops.io  # noqa: PLC0415  (skops imports scikit-learn: load it when used)

        skops.io.dump(model, path)

    def load(self, path: Path, *, trusted_types: Sequence[str] = ()) -> object:
        """Read a skops file, refusing any type outside the allow-list and ``trusted_types``.

        One pass when every type in the file is known to be allowed (the
        allow-list, ``trusted_types`` and the estimator classes this process
        has already checked); otherwise the file's types are listed first and
        checked, and only then is it read (skops reads the file for each).
        """
        import skops.io  # noqa: PLC0415  (skops imports scikit-learn: load it when used)
        from skops.io.exceptions import UntrustedTypesFoundException  # noqa: PLC0415

        allowed = ALLOWED_TYPES | set(trusted_types)
        if ANY_TYPE not in trusted_types:
            try:
                return skops.io.load(path, trusted=sorted(allowed | _CHECKED_ESTIMATORS))
            except UntrustedTypesFoundException:
                pass  # types not checked yet in this process: list and check them below
            except Exception as exc:
                raise ValidationFailed(f"{path} is not a readable skops file: {exc}") from exc
        try:
            found = set(skops.io.get_untrusted_types(file=path))
        except Exception as exc:
            raise ValidationFailed(f"{path} is not a readable skops file: {exc}") from exc
        estimators = {name for name in found - allowed if _is_estimator_class(name)}
        refused = sorted(found - allowed - estimators)
        if refused and ANY_TYPE not in trusted_types:
            raise Untrusted(
                f"the skops file {path.name} holds types outside the allow-list: "
                f"{', '.join(refused)}; if you reviewed them and trust the publisher, add them "
                "to registry.trusted_types in mlcycle.toml, or load with trust=True"
            )
        _CHECKED_ESTIMATORS.update(estimators)
        return skops.io.load(path, trusted=sorted(found))

    def predict(self, model: object, frame: pd.DataFrame) -> np.ndarray:
        """``model.predict(frame)``; a model fitted on an array gets the frame's values."""
        import numpy as np  # noqa: PLC0415  (light: already loaded with pandas)

        on_array = hasattr(model, "n_features_in_") and not hasattr(model, "feature_names_in_")
        rows = np.asarray(frame) if on_array else frame
        return np.asarray(model.predict(rows))  # type: ignore[attr-defined]  # an estimator
