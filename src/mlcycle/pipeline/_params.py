"""A pipeline's parameters: defaults in code, ``mlcycle.toml``, the call and the command line.

Each effective value is recorded with where it came from. Parameters typed
``DatasetRef`` (or defaulting to one) are resolved to a dataset version when
the run starts, before any step executes, so ``bike@latest`` is recorded as
the ``bike/3`` the run read.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from mlcycle.data import DatasetRef
from mlcycle.errors import ValidationFailed

__all__ = ["RESERVED", "ParamSpec", "ResolvedParams", "coerce", "param_specs", "resolve_params"]

RESERVED = frozenset({"workspace", "executor", "no_cache", "trust", "progress"})
"""Keywords of ``Pipeline.run`` itself, so no parameter may be called so."""
_MISSING = inspect.Parameter.empty


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One parameter of a pipeline function: its name, type and default."""

    name: str
    annotation: Any  # Any: whatever the function annotated (a type, or text)
    default: Any  # Any: the default value, or inspect.Parameter.empty

    @property
    def is_dataset(self) -> bool:
        """Whether the value names a dataset to resolve to a version at the start."""
        if isinstance(self.default, DatasetRef):
            return True
        annotation = self.annotation
        return annotation is DatasetRef or (
            isinstance(annotation, str) and annotation.split(".")[-1] == "DatasetRef"
        )


@dataclass(frozen=True, slots=True)
class ResolvedParams:
    """Every effective parameter value, where it came from, and the dataset versions named."""

    values: dict[str, Any]  # Any: JSON values (dataset refs as pinned text)
    sources: dict[str, str]
    datasets: dict[str, str]

    def call_values(self, specs: Mapping[str, ParamSpec]) -> dict[str, Any]:  # Any: values
        """The values to call the pipeline function with (dataset refs typed again)."""
        return {
            name: DatasetRef(value) if specs[name].is_dataset else value
            for name, value in self.values.items()
        }


def param_specs(fn: Callable[..., Any], pipeline: str) -> dict[str, ParamSpec]:
    """The parameters of a pipeline function, keyword-able and not reserved."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001  (unresolvable annotations stay text)
        hints = {}
    specs: dict[str, ParamSpec] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in {param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY}:
            raise ValidationFailed(
                f"pipeline '{pipeline}': parameter '{param.name}' must be an ordinary named "
                "parameter (no *args, **kwargs or positional-only), so it can be set by name"
            )
        if param.name in RESERVED:
            raise ValidationFailed(
                f"pipeline '{pipeline}': parameter '{param.name}' is a keyword of "
                f"Pipeline.run ({', '.join(sorted(RESERVED))}); rename it"
            )
        annotation = hints.get(param.name, param.annotation)
        specs[param.name] = ParamSpec(param.name, annotation, param.default)
    return specs


def coerce(spec: ParamSpec, text: str, *, pipeline: str) -> Any:  # Any: the typed value
    """A command-line value as the parameter's type (JSON for anything but plain text)."""
    kind = spec.annotation
    if spec.is_dataset:
        return DatasetRef(text)
    if kind in {str, "str"}:
        return text
    if kind in {bool, "bool"}:
        lowered = text.strip().lower()
        if lowered in {"true", "1", "yes", "on"}:
            return True
        if lowered in {"false", "0", "no", "off"}:
            return False
        raise ValidationFailed(
            f"pipeline '{pipeline}' parameter '{spec.name}' is a bool; give true or false, "
            f"not {text!r}"
        )
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        if kind in {int, float, "int", "float"}:
            raise ValidationFailed(
                f"pipeline '{pipeline}' parameter '{spec.name}' is a number; {text!r} is not one"
            ) from None
        return text
    return _check_type(spec, value, pipeline=pipeline, source="the command line")


def _check_type(spec: ParamSpec, value: Any, *, pipeline: str, source: str) -> Any:  # Any: value
    kind = spec.annotation
    if kind in {int, "int"} and not (isinstance(value, int) and not isinstance(value, bool)):
        raise ValidationFailed(
            f"pipeline '{pipeline}' parameter '{spec.name}' is an int; {source} gave {value!r}"
        )
    if kind in {float, "float"}:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationFailed(
                f"pipeline '{pipeline}' parameter '{spec.name}' is a float; {source} gave {value!r}"
            )
        return float(value)
    return value


def resolve_params(
    specs: Mapping[str, ParamSpec],
    *,
    pipeline: str,
    config: Mapping[str, Any],  # Any: TOML values
    overrides: Mapping[str, tuple[Any, str]],  # Any: values with their source
    resolve_dataset: Callable[[DatasetRef], str],
) -> ResolvedParams:
    """Layer code defaults, ``[pipelines.<name>.params]`` and ``overrides``; resolve datasets."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in specs.values():
        if spec.default is not _MISSING:
            values[spec.name], sources[spec.name] = spec.default, "code"
    layers = [({k: (v, "config") for k, v in config.items()}, "mlcycle.toml"), (overrides, None)]
    for layer, where in layers:
        for name, (value, source) in layer.items():
            if name not in specs:
                known = ", ".join(specs) or "none"
                place = f" in [pipelines.{pipeline}.params] of {where}" if where else ""
                raise ValidationFailed(
                    f"pipeline '{pipeline}' has no parameter '{name}'{place}; "
                    f"its parameters are: {known}"
                )
            values[name] = _check_type(specs[name], value, pipeline=pipeline, source=source)
            sources[name] = source
    missing = [name for name in specs if name not in values]
    if missing:
        raise ValidationFailed(
            f"pipeline '{pipeline}' needs parameter '{missing[0]}': pass it to .run(), "
            f"with --param {missing[0]}=..., or set it under [pipelines.{pipeline}.params] "
            "in mlcycle.toml"
        )
    datasets: dict[str, str] = {}
    for name, spec in specs.items():
        if spec.is_dataset:
            pinned = resolve_dataset(DatasetRef(values[name]))
            values[name] = pinned
            datasets[name] = f"data:/{pinned}"
        else:
            _check_json(name, values[name], pipeline=pipeline)
    return ResolvedParams(values=values, sources=sources, datasets=datasets)


def _check_json(name: str, value: object, *, pipeline: str) -> None:
    try:
        orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        raise ValidationFailed(
            f"pipeline '{pipeline}' parameter '{name}' is a {type(value).__qualname__}; "
            "parameters must be JSON-able values (numbers, text, lists, mappings) or "
            "DatasetRef, so every value can be recorded"
        ) from None
