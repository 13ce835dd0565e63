"""scikit-learn estimators and pipelines, stored with skops: no pickle, an explicit allow-list.

skops reads an object tree back by type name and refuses any type it was not
told to trust. Beyond skops' own defaults, this module trusts the few
scikit-learn internals fitted models need (the tree node storage, loss
objects), and ``registry.trusted_types`` may add more; anything else is
refused with its type name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mlcycle.errors import Untrusted, ValidationFailed

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["ALLOWED_TYPES", "SklearnFlavor"]

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
        "numpy.dtype",
        "builtins.slice",
    }
)


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
        """Write ``model`` with skops (compressed)."""
        import zipfile  # noqa: PLC0415  (only when saving)

        import skops.io  # noqa: PLC0415  (skops imports scikit-learn: load it when used)

        skops.io.dump(model, path, compression=zipfile.ZIP_DEFLATED)

    def load(self, path: Path, *, trusted_types: Sequence[str] = ()) -> object:
        """Read a skops file, refusing any type outside the allow-list and ``trusted_types``."""
        import skops.io  # noqa: PLC0415  (skops imports scikit-learn: load it when used)

        try:
            found = skops.io.get_untrusted_types(file=path)
        except Exception as exc:
            raise ValidationFailed(f"{path} is not a readable skops file: {exc}") from exc
        allowed = ALLOWED_TYPES | set(trusted_types)
        refused = sorted(set(found) - allowed)
        if refused:
            raise Untrusted(
                f"the skops file {path.name} holds types outside the allow-list: "
                f"{', '.join(refused)}; if you reviewed them and trust the publisher, add them "
                "to registry.trusted_types in mlcycle.toml"
            )
        return skops.io.load(path, trusted=sorted(set(found)))

    def predict(self, model: object, frame: pd.DataFrame) -> np.ndarray:
        """``model.predict(frame)``."""
        import numpy as np  # noqa: PLC0415  (light: already loaded with pandas)

        return np.asarray(model.predict(frame))  # type: ignore[attr-defined]  # an estimator
