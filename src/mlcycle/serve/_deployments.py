"""Deployments as users write them: checked, resolved in the registry, then stored.

The store keeps the applied state and records every change as an event
servers follow; ``mlcycle.toml``'s ``[deployments.NAME]`` tables are the
desired state, and ``apply_desired`` moves the store to them, change by change.

>>> import tempfile, pandas as pd
>>> from sklearn.dummy import DummyRegressor
>>> from mlcycle.settings import Settings
>>> from mlcycle.workspace import Workspace
>>> rows = pd.DataFrame({"temp": [0.1, 0.5]})
>>> with tempfile.TemporaryDirectory() as home, Workspace.open(Settings(home=home)) as ws:
...     _ = ws.registry.register("mean", DummyRegressor().fit(rows, [1.0, 3.0]))
...     ws.deployments.deploy("mean", model="models:/mean@latest").variants[0].model
'mean@latest'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, cast

from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.store import TRAFFIC_POLICIES, Deployment, Variant, check_deployment_name

if TYPE_CHECKING:
    from mlcycle.clock import Clock
    from mlcycle.registry import ModelRegistry
    from mlcycle.store import DeploymentCatalog, TrafficPolicy

__all__ = [
    "Change",
    "Deployments",
    "LogSchema",
    "check_deployment",
    "check_logged",
    "check_variants",
    "compose",
    "log_schema",
    "one_a_row",
    "output_kind",
    "parse_deployments",
]

_SPLIT: frozenset[str] = frozenset({"canary", "ab"})
_TOML_KEYS = frozenset({"model", "variants", "policy", "sticky_key", "key_columns"})
_VARIANT_KEYS = frozenset({"name", "model", "weight", "shadow"})
_TOTAL = 100.0
SEVERAL_VALUES = "several values a row"
"""What a prediction log's ``output`` column of lists holds, in ``output_kind``'s words."""
_OUTPUT_WORDS = {"int64": "number", "float64": "number", "bool": "boolean"}
_FEATURE_WORDS = {**_OUTPUT_WORDS, "datetime": "date-time"}
"""A feature's kind by its signature type; any other type is logged as a string."""


@dataclass(frozen=True, slots=True)
class LogSchema:
    """What a deployment's prediction log holds a row, in words: its output and each feature.

    ``output`` is in ``output_kind``'s words (``None``: unknown, or nothing
    logged yet); ``features`` maps each feature to ``number``, ``boolean``,
    ``string``, ``date-time`` or (a log's only) ``list``, leaving out those
    not known. Rows of another kind than the log's cannot be added to its table.
    """

    output: str | None = None
    features: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Change:
    """One step from the applied state to the desired one.

    ``action`` is ``create``, ``change``, ``unchanged``, ``remove`` (with
    ``prune``) or ``extra`` (applied but not in the file, kept).
    ``before``/``after`` are the deployment as applied and as wanted.
    """

    name: str
    action: Literal["create", "change", "unchanged", "remove", "extra"]
    before: Deployment | None = None
    after: Deployment | None = None

    def lines(self) -> list[str]:
        """The change as text, one line per difference, for people."""
        mark = {"create": "+", "change": "~", "unchanged": "=", "remove": "-", "extra": "?"}
        head = f"{mark[self.action]} {self.name}: {self.action}"
        if self.action == "extra":
            return [f"{head} (applied, not in mlcycle.toml; --prune removes it)"]
        return [head, *_differences(self.before, self.after)]


def check_deployment(deployment: Deployment) -> Deployment:
    """``deployment`` if its policy can route its variants, else ``ValidationFailed``.

    Model references lose a ``models:/`` prefix; a shadow's weight becomes 0
    and, when nothing is split, the answering variant's 100. ``canary`` and ``ab`` split
    the traffic between two or more answering variants by weights in percent
    that add up to 100; ``single`` has one variant; ``shadow`` has one that
    answers and at least one shadow. Shadows get copies under every policy but
    ``single``.
    """
    name = check_deployment_name(deployment.name)
    if deployment.policy not in TRAFFIC_POLICIES:
        raise ValidationFailed(
            f"deployment '{name}' has unknown policy {deployment.policy!r}; "
            f"use one of {', '.join(TRAFFIC_POLICIES)}"
        )
    variants = tuple(
        replace(v, model=v.model.removeprefix("models:/")) for v in deployment.variants
    )
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValidationFailed(
            f"deployment '{name}' names a variant twice ({', '.join(names)}); "
            "give every variant its own name"
        )
    answering = [v for v in variants if not v.shadow]
    shadows = [v for v in variants if v.shadow]
    if not answering:
        raise ValidationFailed(
            f"deployment '{name}' has only shadow variants, and a shadow answers nobody; "
            "add a variant that answers (--model)"
        )
    _check_policy(deployment, answering, shadows)
    if deployment.sticky_key is not None and deployment.policy not in _SPLIT:
        raise ValidationFailed(
            f"deployment '{name}' has a sticky key but policy '{deployment.policy}', which "
            "does not split traffic; drop the sticky key or use 'canary' or 'ab'"
        )
    return replace(
        deployment,
        variants=_normalised(deployment.policy, variants),
        key_columns=tuple(deployment.key_columns),
    )


def _normalised(policy: str, variants: tuple[Variant, ...]) -> tuple[Variant, ...]:
    """Weights that mean nothing set alike, so equal deployments compare equal."""
    fixed = None if policy in _SPLIT else _TOTAL
    return tuple(
        replace(v, weight=0.0) if v.shadow else replace(v, weight=fixed or float(v.weight))
        for v in variants
    )


def _check_policy(deployment: Deployment, answering: list[Variant], shadows: list[Variant]) -> None:
    name, policy = deployment.name, deployment.policy
    if policy == "single" and (len(answering) != 1 or shadows):
        raise ValidationFailed(
            f"deployment '{name}' has policy 'single', which serves exactly one variant "
            f"(found {len(answering)} answering and {len(shadows)} shadow); use 'canary' or "
            "'ab' to split traffic, 'shadow' to mirror it"
        )
    if policy == "shadow" and (len(answering) != 1 or not shadows):
        raise ValidationFailed(
            f"deployment '{name}' has policy 'shadow', which needs one variant that answers "
            f"and at least one shadow (found {len(answering)} and {len(shadows)})"
        )
    if policy in _SPLIT:
        if len(answering) < 2:
            raise ValidationFailed(
                f"deployment '{name}' has policy '{policy}' but one answering variant; "
                "add another (--canary REF=PERCENT) or use policy 'single'"
            )
        weights = [v.weight for v in answering]
        if any(w <= 0 for w in weights) or not math.isclose(sum(weights), _TOTAL, abs_tol=1e-6):
            shares = ", ".join(f"{v.name}={v.weight:g}" for v in answering)
            raise ValidationFailed(
                f"deployment '{name}' splits traffic {shares}: the weights of the answering "
                "variants are percentages, each above 0, that must add up to 100"
            )


def compose(
    name: str,
    *,
    model: str,
    canary: Mapping[str, float] | None = None,
    shadow: Sequence[str] = (),
    policy: TrafficPolicy | None = None,
    sticky_key: str | None = None,
    key_columns: Sequence[str] = (),
) -> Deployment:
    """The deployment that serves ``model``, ``canary`` percentages split off it, ``shadow`` copies.

    The policy is ``canary`` with ``canary`` refs, else ``shadow`` with
    ``shadow`` refs, else ``single``; give ``policy="ab"`` for an A/B test.
    Variants are named ``primary``, ``canary``, ``canary-2``..., or ``a``,
    ``b``... under ``ab``, and ``shadow``, ``shadow-2``...

    >>> [(v.name, v.weight) for v in compose("bike", model="bike@production",
    ...                                      canary={"bike/4": 10}).variants]
    [('primary', 90.0), ('canary', 10.0)]
    """
    split = dict(canary or {})
    chosen: TrafficPolicy = policy or ("canary" if split else "shadow" if shadow else "single")
    primary = Variant(name="a" if chosen == "ab" else "primary", model=model, weight=100.0)
    variants = [replace(primary, weight=100.0 - sum(split.values()))] if split else [primary]
    for index, (ref, weight) in enumerate(split.items()):
        label = chr(ord("b") + index) if chosen == "ab" else _numbered("canary", index)
        variants.append(Variant(name=label, model=ref, weight=float(weight)))
    variants.extend(
        Variant(name=_numbered("shadow", index), model=ref, shadow=True)
        for index, ref in enumerate(shadow)
    )
    return Deployment(
        name=name,
        variants=tuple(variants),
        policy=chosen,
        sticky_key=sticky_key,
        key_columns=tuple(key_columns),
    )


def parse_deployments(tables: Mapping[str, Any]) -> list[Deployment]:  # Any: TOML values
    """The ``[deployments.NAME]`` tables of ``mlcycle.toml`` as deployments, each checked.

    A table gives ``model = "REF"`` (one variant, policy ``single``), or
    ``variants = [{name, model, weight, shadow}, ...]`` with a ``policy``;
    ``sticky_key`` and ``key_columns`` are optional.
    """
    found = []
    for name, table in sorted(tables.items()):
        where = f"[deployments.{name}] in mlcycle.toml"
        if not isinstance(table, Mapping):
            raise ValidationFailed(f"{where} must be a table, such as model = 'bike@production'")
        try:
            found.append(check_deployment(_from_table(name, table)))
        except ValidationFailed as exc:
            raise ValidationFailed(f"{where}: {exc}") from exc
    return found


def _from_table(name: str, table: Mapping[str, Any]) -> Deployment:  # Any: TOML values
    unknown = sorted(set(table) - _TOML_KEYS)
    if unknown:
        raise ValidationFailed(
            f"unknown key {', '.join(unknown)}; use {', '.join(sorted(_TOML_KEYS))}"
        )
    if ("model" in table) == ("variants" in table):
        raise ValidationFailed("give either model = 'REF' or variants = [...], not both or none")
    if "model" in table:
        variants: tuple[Variant, ...] = (Variant(name="primary", model=_text(table, "model")),)
    else:
        listed = table["variants"]
        if not isinstance(listed, list) or not listed:
            raise ValidationFailed("variants must be a list of tables {name, model, weight}")
        variants = tuple(_variant(item) for item in listed)
    key_columns = table.get("key_columns", [])
    if not isinstance(key_columns, list) or not all(isinstance(c, str) for c in key_columns):
        raise ValidationFailed("key_columns must be a list of column names")
    sticky = table.get("sticky_key")
    if sticky is not None and not isinstance(sticky, str):
        raise ValidationFailed("sticky_key must be a column name")
    policy = table.get("policy", "single")
    return Deployment(
        name=name,
        variants=variants,
        policy=cast("TrafficPolicy", policy),  # checked by check_deployment
        sticky_key=sticky,
        key_columns=tuple(key_columns),
    )


def _text(table: Mapping[str, Any], key: str) -> str:  # Any: TOML values
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(f"{key} must be a non-empty string (found {value!r})")
    return value


def _variant(item: object) -> Variant:
    if not isinstance(item, Mapping):
        raise ValidationFailed(f"variant {item!r} must be a table {{name, model, weight}}")
    unknown = sorted(set(item) - _VARIANT_KEYS)
    if unknown:
        raise ValidationFailed(
            f"variant {item.get('name')!r} has unknown key {', '.join(unknown)}; "
            f"use {', '.join(sorted(_VARIANT_KEYS))}"
        )
    weight = item.get("weight", 100.0)
    shadow = item.get("shadow", False)
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise ValidationFailed(f"variant {item.get('name')!r}: weight must be a number")
    if not isinstance(shadow, bool):
        raise ValidationFailed(f"variant {item.get('name')!r}: shadow must be true or false")
    return Variant(
        name=_text(item, "name"), model=_text(item, "model"), weight=float(weight), shadow=shadow
    )


def _differences(before: Deployment | None, after: Deployment | None) -> list[str]:
    def fields(found: Deployment | None) -> dict[str, str]:
        if found is None:
            return {}
        shown = {
            "policy": found.policy,
            "sticky_key": str(found.sticky_key),
            "key_columns": ",".join(found.key_columns),
        }
        for v in found.variants:
            role = "shadow" if v.shadow else f"{v.weight:g}%"
            shown[f"variant {v.name}"] = f"{v.model} ({role})"
        return shown

    old, new = fields(before), fields(after)
    return [
        f"    {key}: {old.get(key, '-')} -> {new.get(key, '-')}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


class Deployments:
    """Create, change, list and remove deployments; each change is checked, then an event."""

    def __init__(
        self,
        *,
        catalog: DeploymentCatalog,
        registry: ModelRegistry,
        clock: Clock,
        actor: str,
        logged: Callable[[str], LogSchema] | None = None,
    ) -> None:
        self.catalog = catalog
        self.registry = registry
        self.clock = clock
        self.actor = actor
        self.logged = logged
        """What a deployment's prediction log holds a row (``read_log_schema``), if known."""

    def apply(self, deployment: Deployment) -> Deployment:
        """Check ``deployment``, resolve its models, and store it (a new revision if changed).

        Raises ``ValidationFailed`` for a policy its variants do not fit or
        variants whose models predict different kinds of output or take a
        feature as different kinds (their rows could not share the prediction
        log's table), or another kind than its prediction log already holds,
        and ``NotFound`` naming
        the variant whose model the registry cannot resolve; nothing is stored
        then.
        """
        checked = replace(check_deployment(deployment), actor=self.actor)
        self._resolve_all(checked)
        return self.catalog.put_deployment(checked, time=self.clock.now())

    def deploy(
        self,
        name: str,
        *,
        model: str,
        canary: Mapping[str, float] | None = None,
        shadow: Sequence[str] = (),
        policy: TrafficPolicy | None = None,
        sticky_key: str | None = None,
        key_columns: Sequence[str] = (),
    ) -> Deployment:
        """Serve ``model`` as ``name``, split ``canary`` percentages off it, mirror to ``shadow``.

        See ``compose`` for the policy and variant names it chooses.
        """
        return self.apply(
            compose(
                name,
                model=model,
                canary=canary,
                shadow=shadow,
                policy=policy,
                sticky_key=sticky_key,
                key_columns=key_columns,
            )
        )

    def plan(self, desired: Sequence[Deployment], *, prune: bool = False) -> list[Change]:
        """What applying ``desired`` would do to the applied state, by deployment name."""
        applied = {d.name: d for d in self.catalog.list_deployments()}
        changes = []
        for want in desired:
            checked = check_deployment(want)
            have = applied.pop(checked.name, None)
            if have is None:
                changes.append(Change(checked.name, "create", after=checked))
            elif _same(have, checked):
                changes.append(Change(checked.name, "unchanged", have, checked))
            else:
                changes.append(Change(checked.name, "change", have, checked))
        for name, have in sorted(applied.items()):
            changes.append(Change(name, "remove" if prune else "extra", before=have))
        return changes

    def apply_desired(
        self, desired: Sequence[Deployment], *, prune: bool = False, dry_run: bool = False
    ) -> list[Change]:
        """Move the store to ``desired``: every model is resolved before anything is stored.

        Each create or change is one ``deployment.applied`` event; with
        ``prune``, deployments not in ``desired`` are removed. Returns the plan.
        """
        changes = self.plan(desired, prune=prune)
        for change in changes:
            if change.after is not None and change.action != "unchanged":
                self._resolve_all(change.after)
        if dry_run:
            return changes
        for change in changes:
            if change.action in {"create", "change"}:
                assert change.after is not None, "a create or change has a desired state"
                self.apply(change.after)
            elif change.action == "remove":
                self.remove(change.name)
        return changes

    def get(self, name: str) -> Deployment:
        """The deployment as applied; ``NotFound`` names the known ones."""
        return self.catalog.get_deployment(name)

    def list(self) -> list[Deployment]:
        """Every deployment, by name."""
        return self.catalog.list_deployments()

    def remove(self, name: str) -> Deployment:
        """Remove a deployment (a ``deployment.removed`` event); returns what it was."""
        return self.catalog.remove_deployment(name, actor=self.actor, time=self.clock.now())

    def _resolve_all(self, deployment: Deployment) -> None:
        """Resolve every variant's model; their rows must fit one log (see ``apply``)."""
        schemas: dict[str, LogSchema] = {}
        for variant in deployment.variants:
            try:
                version = self.registry.get(variant.model)
            except (NotFound, ValidationFailed) as exc:
                raise type(exc)(
                    f"deployment '{deployment.name}', variant '{variant.name}': cannot resolve "
                    f"model '{variant.model}' ({exc}); nothing was applied"
                ) from exc
            ref = version.ref.removeprefix("models:/")
            schemas[f"{variant.name} ({ref})"] = log_schema(version.signature)
        check_variants(deployment.name, schemas)
        if self.logged is not None:
            check_logged(deployment.name, schemas, self.logged(deployment.name))


def check_variants(deployment: str, schemas: Mapping[str, LogSchema]) -> None:
    """Refuse variants (``schemas``: each one's ``log_schema``) whose rows would not fit one log.

    That is variants predicting different kinds of output, or taking one
    feature as different kinds; a feature some of them do not take is fine.
    """
    known = {variant: s.output for variant, s in schemas.items() if s.output is not None}
    if len(set(known.values())) > 1:
        shown = ", ".join(f"{variant}: {kind}" for variant, kind in known.items())
        raise ValidationFailed(
            f"deployment '{deployment}': its variants predict different kinds of output "
            f"({shown}), whose rows cannot share one prediction log; serve them as separate "
            "deployments"
        )
    for name in dict.fromkeys(name for schema in schemas.values() for name in schema.features):
        kinds = {v: s.features[name] for v, s in schemas.items() if name in s.features}
        if len(set(kinds.values())) > 1:
            shown = ", ".join(f"{variant}: a {kind}" for variant, kind in kinds.items())
            raise ValidationFailed(
                f"deployment '{deployment}': its variants take feature '{name}' as different "
                f"kinds ({shown}), whose rows cannot share one prediction log; serve them as "
                "separate deployments"
            )


def check_logged(deployment: str, schemas: Mapping[str, LogSchema], logged: LogSchema) -> None:
    """Refuse variants (``schemas``: each one's ``log_schema``) the deployment's log cannot take.

    ``logged`` is what its prediction log holds (``PredictionSink.logged_schema``):
    its ``output`` column one value a row, in ``output_kind``'s words, or
    ``SEVERAL_VALUES``, and each feature's kind. A feature it does not hold
    yet is fine: the log's table adds it.
    """
    for variant, schema in schemas.items():
        _check_logged_output(deployment, variant, schema.output, logged.output)
        for name, kind in schema.features.items():
            held = logged.features.get(name)
            if held is not None and kind != held:
                raise ValidationFailed(
                    f"deployment '{deployment}': variant {variant} takes feature '{name}' as "
                    f"a {kind}, but the deployment's prediction log holds it as a {held} (from "
                    "the models it served before), so its rows could not be logged; serve that "
                    "model as a deployment of another name, or move the alias back to a model "
                    f"taking '{name}' as a {held}"
                )


def _check_logged_output(
    deployment: str, variant: str, kind: str | None, logged: str | None
) -> None:
    if kind is None or logged is None:
        return
    several = not kind.startswith("one ")
    if several != (logged == SEVERAL_VALUES) or (not several and kind != logged):
        raise ValidationFailed(
            f"deployment '{deployment}': variant {variant} predicts {kind}, but the "
            f"deployment's prediction log holds {logged} (from the models it served "
            "before), so its rows could not be logged; serve that model as a deployment "
            "of another name, or move the alias back to a model predicting "
            f"{logged}"
        )


def log_schema(signature: Mapping[str, Any]) -> LogSchema:  # Any: JSON values
    """What a model with ``signature`` (as stored) writes to the prediction log a row, in words."""
    features = {
        str(spec["name"]): _FEATURE_WORDS.get(str(spec.get("type")), "string")
        for spec in signature.get("inputs") or []
    }
    return LogSchema(output=output_kind(signature), features=features)


def output_kind(signature: Mapping[str, Any]) -> str | None:  # Any: JSON values
    """What a model with ``signature`` (as stored) predicts per row, in words; ``None``: unknown.

    Two models whose kinds differ would write ``output`` columns of different
    types to one prediction log (a number, a list, a string).
    """
    outputs = signature.get("outputs") or []
    if not outputs:
        return None
    if len(outputs) > 1:
        return f"{len(outputs)} outputs a row"
    spec = outputs[0]
    word = _OUTPUT_WORDS.get(str(spec.get("type")), "string")
    shape = spec.get("shape")
    if not shape:
        return one_a_row(word)
    return f"{'x'.join(str(n) for n in shape)} {word}s a row"


def one_a_row(word: str) -> str:
    """``output_kind``'s words for a single value a row: ``word`` is number, boolean or string."""
    return f"one {word} a row"


def _numbered(base: str, index: int) -> str:
    return base if index == 0 else f"{base}-{index + 1}"


def _same(old: Deployment, new: Deployment) -> bool:
    return (old.policy, old.sticky_key, old.key_columns, old.variants) == (
        new.policy,
        new.sticky_key,
        tuple(new.key_columns),
        tuple(new.variants),
    )
