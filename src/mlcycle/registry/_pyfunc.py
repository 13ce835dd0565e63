"""Custom Python models (any object with ``predict``), stored with pickle and marked unsafe.

Pickle runs code on load, so this flavor is ``safe = False``: it only saves
and loads, and the registry decides whether a load may happen (``trust=True``
on the call, or the version's publisher in ``registry.trusted_publishers``)
before it ever calls ``load``. The class itself is not stored, only a
reference to it, so it must be importable where the model is loaded; classes
defined in ``__main__`` or inside a function are refused when saving.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mlcycle.errors import ValidationFailed

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["PyfuncFlavor"]


class PyfuncFlavor:
    """Any object with a ``predict(frame)`` method, pickled; loads need trust (see the module)."""

    name = "pyfunc"
    safe = False
    suffix = ".pkl"

    def handles(self, model: object) -> bool:
        """Whether ``model`` is an instance with a callable ``predict``."""
        return not isinstance(model, type) and callable(getattr(model, "predict", None))

    def save(self, model: object, path: Path) -> None:
        """Pickle ``model``; refuse classes that could not be imported back."""
        kind = type(model)
        where = f"{kind.__module__}.{kind.__qualname__}"
        if kind.__module__ == "__main__":
            raise ValidationFailed(
                f"the model's class {kind.__qualname__} is defined in __main__ and could not be "
                "imported when the model is loaded; move it into a module and import it from there"
            )
        if "<locals>" in kind.__qualname__:
            raise ValidationFailed(
                f"the model's class {where} is defined inside a function and could not be "
                "imported when the model is loaded; define it at a module's top level"
            )
        try:
            content = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise ValidationFailed(f"the {where} model cannot be pickled: {exc}") from exc
        path.write_bytes(content)

    def load(self, path: Path, *, trusted_types: Sequence[str] = ()) -> object:
        """Unpickle the model: only for a caller the registry trusted (``safe`` is False)."""
        del trusted_types
        with path.open("rb") as stream:
            try:
                return pickle.load(stream)  # noqa: S301  (unsafe flavor: the registry checks trust first)
            except (pickle.UnpicklingError, ImportError, AttributeError, EOFError) as exc:
                raise ValidationFailed(f"{path.name} cannot be unpickled: {exc}") from exc

    def predict(self, model: object, frame: pd.DataFrame) -> np.ndarray:
        """``model.predict(frame)`` as an array."""
        import numpy as np  # noqa: PLC0415  (light: already loaded with pandas)

        return np.asarray(model.predict(frame))  # type: ignore[attr-defined]  # checked by handles
