"""Model formats (flavors): how a kind of model is saved to one file and loaded back safely.

Each flavor writes a model into a single file the artifact store keeps by
digest, and reads it back without running code it does not trust. Flavors
that can only load through pickle say so (``safe = False``); the registry then
loads them only for a trusted caller or publisher. Third parties add flavors
through the ``mlcycle.flavors`` entry point group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mlcycle.registry._signature import Signature
from mlcycle.store import ModelVersion

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["ANY_TYPE", "Flavor", "LoadedModel"]

ANY_TYPE = "*"
"""In ``trusted_types``: the caller trusts the file (``trust=True``), so any type may load."""


class Flavor(Protocol):
    """One model format: recognise, save, load and predict."""

    name: str
    """The flavor's name as stored on versions: ``sklearn``, ``onnx``, ``xgboost``, ..."""
    safe: bool
    """False when loading may run arbitrary code (pickle): needs trust."""
    suffix: str
    """The file suffix of saved models, such as ``.skops``."""

    def handles(self, model: object) -> bool:
        """Whether this flavor can save ``model``."""
        ...

    def save(self, model: object, path: Path) -> None:
        """Write ``model`` to the file ``path``."""
        ...

    def load(self, path: Path, *, trusted_types: Sequence[str] = ()) -> object:
        """Read a model written by ``save``; refuse (``Untrusted``) what the allow-list lacks.

        ``trusted_types`` extends the allow-list; holding ``ANY_TYPE`` it lifts it.
        """
        ...

    def predict(self, model: object, frame: pd.DataFrame) -> np.ndarray:
        """Predictions for the rows of ``frame`` (columns in signature order), one per row."""
        ...


@dataclass(frozen=True)
class LoadedModel:
    """A model loaded from the registry, predicting through its flavor.

    ``model`` is the native object (an estimator, an ONNX Runtime session,
    a booster); ``version`` is the registered version it came from (``None``
    for a model that was never registered, such as a baseline).
    """

    model: object
    flavor: Flavor
    signature: Signature
    version: ModelVersion | None = None

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predictions for ``frame``'s rows, its columns taken in the signature's order."""
        names = self.signature.input_names
        columns = frame if not names or list(frame.columns) == names else frame[names]
        return self.flavor.predict(self.model, columns)
