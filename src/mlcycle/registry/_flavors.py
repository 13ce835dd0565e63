"""The flavors mlcycle knows, and the ones installed packages add through entry points."""

from __future__ import annotations

import functools
from importlib.metadata import entry_points

from mlcycle.errors import ValidationFailed
from mlcycle.registry._flavor import Flavor
from mlcycle.registry._lightgbm import LightGBMFlavor
from mlcycle.registry._onnx import OnnxFlavor
from mlcycle.registry._pyfunc import PyfuncFlavor
from mlcycle.registry._sklearn import SklearnFlavor
from mlcycle.registry._xgboost import XGBoostFlavor

__all__ = ["ENTRY_POINT_GROUP", "flavor_for", "get_flavor", "known_flavors"]

ENTRY_POINT_GROUP = "mlcycle.flavors"


@functools.cache
def known_flavors() -> tuple[Flavor, ...]:
    """The flavors in the order they are tried: the specific ones first, ``pyfunc`` last.

    XGBoost and LightGBM come before scikit-learn (their wrappers look like
    estimators), then ONNX, then the ``mlcycle.flavors`` entry points, and
    ``pyfunc`` at the end because it takes anything with ``predict``. Each
    flavor imports its library only when it saves or loads a model.
    """
    builtin: list[Flavor] = [XGBoostFlavor(), LightGBMFlavor(), SklearnFlavor(), OnnxFlavor()]
    added = [point.load()() for point in entry_points(group=ENTRY_POINT_GROUP)]
    return (*builtin, *added, PyfuncFlavor())


def get_flavor(name: str) -> Flavor:
    """The flavor called ``name``; ``ValidationFailed`` lists the known ones."""
    for flavor in known_flavors():
        if flavor.name == name:
            return flavor
    names = ", ".join(flavor.name for flavor in known_flavors())
    raise ValidationFailed(f"no model flavor '{name}'; the flavors are: {names}")


def flavor_for(model: object) -> Flavor:
    """The first safe flavor that can save ``model``; ``ValidationFailed`` lists the flavors.

    An unsafe flavor (``pyfunc``: pickle) is never chosen by itself: the
    caller asks for it by name, so a model never becomes code-on-load by
    accident. The error says so when it would take the model.
    """
    for flavor in known_flavors():
        if flavor.safe and flavor.handles(model):
            return flavor
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    names = ", ".join(flavor.name for flavor in known_flavors() if flavor.safe)
    unsafe = [
        flavor.name for flavor in known_flavors() if not flavor.safe and flavor.handles(model)
    ]
    if unsafe:
        raise ValidationFailed(
            f"no safe flavor can store a {kind} (the safe flavors are: {names}); "
            f"flavor='{unsafe[0]}' stores it with pickle, which runs code on load, so loading "
            "it will need trust=True or a trusted publisher"
        )
    raise ValidationFailed(f"no flavor can store a {kind}; the supported flavors are: {names}")
