"""The model registry: register, load, resolve, promote and roll back, on the stores.

Model files go to the artifact store (content-addressed, verified on every
read); what each version is, and which version each alias names, goes to the
``ModelCatalog``. References follow the dataset grammar with the ``models:/``
prefix: ``models:/bike@production``, ``models:/bike/3``, ``bike/3``,
``bike@staging``; ``latest`` (or no suffix) is the highest version.

>>> import tempfile
>>> from sklearn.linear_model import LinearRegression
>>> import pandas as pd
>>> from mlcycle.settings import Settings
>>> from mlcycle.workspace import Workspace
>>> X = pd.DataFrame({"temp": [0.1, 0.5, 0.9]})
>>> with tempfile.TemporaryDirectory() as home, Workspace.open(Settings(home=home)) as ws:
...     mv = ws.registry.register("bike", LinearRegression().fit(X, [1.0, 5.0, 9.0]),
...                               input_example=X)
...     _ = ws.registry.promote("bike", mv.version, to="staging")
...     ws.registry.load("models:/bike@staging").predict(X).round(1).tolist()
[1.0, 5.0, 9.0]
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mlcycle.clock import Clock
from mlcycle.data import parse_ref
from mlcycle.errors import (
    AliasConflict,
    GateFailed,
    IntegrityError,
    NotFound,
    Untrusted,
    ValidationFailed,
)
from mlcycle.ids import Digest, RunId
from mlcycle.registry._aliases import evaluation_passed, failed_gates, rollback_target
from mlcycle.registry._flavor import ANY_TYPE, Flavor, LoadedModel
from mlcycle.registry._flavors import flavor_for, get_flavor
from mlcycle.registry._gates import Evaluation
from mlcycle.registry._signature import Signature, example_frame, infer_signature
from mlcycle.registry._trust import is_trusted, require_trust
from mlcycle.settings import RegistrySettings
from mlcycle.store import (
    AliasMove,
    ArtifactStore,
    EnvironmentCatalog,
    LineageGraph,
    ModelCatalog,
    ModelVersion,
    RegisteredModel,
    Run,
    RunLog,
    check_alias,
    check_model_name,
)
from mlcycle.track import ActiveRun, Tracker, current_run

if TYPE_CHECKING:
    import pandas as pd

    from mlcycle.data import DatasetProfile, DatasetRegistry
    from mlcycle.registry._card import ModelCard

__all__ = ["ModelRegistry"]

_PROMOTE_ATTEMPTS = 20
_EXAMPLE_ROLE = "input_example"
_ONNX_ROLE = "onnx"
ONNX_TAG = "mlcycle.onnx"
"""The tag that says whether a version has an ONNX copy, and why not."""


@dataclass
class ModelRegistry:
    """Registered models of one workspace: versions, loads, aliases and their history."""

    catalog: ModelCatalog
    lineage: LineageGraph
    runs: RunLog
    artifacts: ArtifactStore
    clock: Clock
    actor: str
    settings: RegistrySettings
    tracker: Tracker | None = None
    data: DatasetRegistry | None = None
    """Datasets, for the gates (policy findings, training rows of a split) and cards (profiles)."""
    environments: EnvironmentCatalog | None = None
    """Runs' software environments, for model cards."""

    def register(
        self,
        name: str,
        model: object,
        *,
        run: ActiveRun | Run | str | None = None,
        input_example: object = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,  # Any: stored as text
        description: str | None = None,
        flavor: str | Flavor | None = None,
    ) -> ModelVersion:
        """Store ``model`` as the next version of ``name``, with its signature and lineage.

        ``run`` (default: this thread's active run) gives the version its run,
        the dataset versions that run loaded, its code commit, and (unless
        given) its metrics and params. ``ValidationFailed`` lists the flavors
        when none can store the model.
        """
        check_model_name(name)
        chosen = self._flavor(model, flavor)
        digest, size = self._store_model(chosen, model)
        files: dict[str, Digest] = {}
        signature = Signature(inputs=(), outputs=())
        notes: dict[str, str] = {}
        if input_example is not None:
            signature = infer_signature(input_example, _predict(chosen, model, input_example))
            files[_EXAMPLE_ROLE] = self._store_example(input_example)
            if self.settings.convert_onnx and chosen.name == "sklearn":
                onnx_digest, notes[ONNX_TAG] = self._store_onnx(model, input_example)
                if onnx_digest is not None:
                    files[_ONNX_ROLE] = onnx_digest
        origin = self._run(run)
        data = self._datasets(origin.id) if origin else ()
        record = ModelVersion(
            name=name,
            version=0,
            flavor=chosen.name,
            digest=digest,
            signature=signature.to_dict(),
            run_id=origin.id if origin else None,
            dataset_versions=data,
            code_version=_code_version(origin),
            created_at=self.clock.now(),
            actor=self.actor,
            size=size,
            safe=chosen.safe,
            files=files,
            metrics=_floats(metrics if metrics is not None else (origin.metrics if origin else {})),
            tags={**notes, **{str(k): str(v) for k, v in (tags or {}).items()}},
            params=_texts(params if params is not None else (origin.params if origin else {})),
            description=description,
        )
        self.catalog.ensure_model(name, actor=self.actor, time=record.created_at)
        return self.catalog.add_model_version(record, inputs=_inputs(record))

    def get(self, ref: str | ModelVersion) -> ModelVersion:
        """The version ``ref`` names: ``models:/bike@production``, ``bike/3``, ``bike`` (latest)."""
        if isinstance(ref, ModelVersion):
            return ref
        parsed = parse_ref(ref, kind="models")
        if parsed.kind != "models":
            raise ValidationFailed(f"{ref!r} names a dataset; a model is 'models:/NAME@ALIAS'")
        if parsed.version is not None:
            return self.catalog.get_model_version(parsed.name, parsed.version)
        if parsed.is_latest:
            versions = self.catalog.list_model_versions(parsed.name)
            if not versions:
                raise NotFound(f"model '{parsed.name}' has no versions yet")
            return versions[-1]
        assert parsed.alias is not None, "a reference that is not latest has an alias"
        return self.catalog.get_model_version(parsed.name, self._alias(parsed.name, parsed.alias))

    def load(
        self,
        ref: str | ModelVersion,
        *,
        trust: bool = False,
        runtime: Literal["native", "onnx"] = "native",
    ) -> LoadedModel:
        """Load the version ``ref`` names, after checking its file against its digest.

        A flavor that loads through pickle needs ``trust=True`` or a trusted
        publisher (``Untrusted`` otherwise); a skops file holding a type outside
        the allow-list and ``registry.trusted_types`` is refused the same way,
        unless trusted. A file whose bytes changed is refused with
        ``IntegrityError`` naming the digest. ``runtime="onnx"`` loads the ONNX
        copy made at registration (scikit-learn models with an input example),
        served by ONNX Runtime with the same predictions.
        """
        version = self.get(ref)
        trusted = is_trusted(trust=trust, publisher=version.publisher, settings=self.settings)
        if runtime == "onnx":
            flavor, digest = get_flavor("onnx"), self._onnx_digest(version)
        else:
            flavor, digest = get_flavor(version.flavor), version.digest
        if not (version.safe and flavor.safe):
            require_trust(
                f"model {version.ref} ({version.flavor} flavor)",
                trust=trust,
                publisher=version.publisher,
                settings=self.settings,
            )
        types = (*self.settings.trusted_types, *((ANY_TYPE,) if trusted else ()))
        with tempfile.TemporaryDirectory(prefix="mlcycle-load-") as folder:
            path = Path(folder) / f"model{flavor.suffix}"
            self._fetch(version, digest, path)
            try:
                model = flavor.load(path, trusted_types=types)
            except Untrusted as exc:
                raise Untrusted(f"refusing to load {version.ref}: {exc}") from exc
        return LoadedModel(
            model=model,
            flavor=flavor,
            signature=Signature.from_dict(version.signature),
            version=version,
        )

    def input_example(self, ref: str | ModelVersion) -> pd.DataFrame:
        """The input example stored with a version, as a DataFrame."""
        import pandas as pd  # noqa: PLC0415  (heavy; loaded with the example)

        version = self.get(ref)
        digest = version.files.get(_EXAMPLE_ROLE)
        if digest is None:
            raise NotFound(
                f"model {version.ref} was registered without an input example; "
                "pass input_example= when registering"
            )
        with tempfile.TemporaryDirectory(prefix="mlcycle-example-") as folder:
            path = Path(folder) / "example.parquet"
            self._fetch(version, digest, path)
            return pd.read_parquet(path)

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of model ``name``, oldest first."""
        return self.catalog.list_model_versions(name)

    def models(self) -> list[RegisteredModel]:
        """Every registered model, by name, with its aliases."""
        return self.catalog.list_models()

    def history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of ``name``'s aliases (or of one alias), oldest first."""
        return self.catalog.alias_history(name, alias)

    def gate_results(self, ref: str | ModelVersion) -> dict[str, Any] | None:  # Any: JSON
        """The gate evaluation stored on a version (``None`` before it was evaluated).

        ``Evaluation.from_dict`` turns it back into an ``Evaluation``.
        """
        return self.get(ref).evaluation

    def evaluate(
        self,
        ref: str | ModelVersion,
        test_data: pd.DataFrame | None = None,
        *,
        train_data: pd.DataFrame | None = None,
        target: str | None = None,
        trust: bool = False,
    ) -> Evaluation:
        """Run the version's gates on held-out ``test_data`` and store the verdict on it.

        The gates are the model's ``[registry.gates.NAME]`` settings: metric
        thresholds, a test set disjoint from the training run's recorded split,
        no regression against the current production version on the same rows,
        a margin over a dummy or linear baseline fitted on ``train_data`` (by
        default the split's training rows, read from its dataset version),
        per-slice bounds, finite predictions, latency and size budgets,
        signature compatibility and no denied column. ``target`` is the label
        column (default: the gate settings' ``target``). Without ``test_data``,
        the test rows of the training run's recorded split are read from its
        dataset version. The rows are stored with the verdict, so promotion can
        run the gates again against a newer production.
        """
        from mlcycle.registry._evaluation import evaluate_version  # noqa: PLC0415  (numpy, sklearn)

        return evaluate_version(
            self, self.get(ref), test_data, train=train_data, target=target, trust=trust
        )

    def card(self, ref: str | ModelVersion) -> ModelCard:
        """The model card of a version: what it is for, its data, metrics, gates and history.

        Built from the version, its stored evaluation (gates, per-slice
        metrics, importance), the profiles of the dataset versions it was
        trained on, its run's environment and the model's alias history;
        ``card.write(folder)`` writes it as Markdown and HTML.
        """
        from mlcycle.registry._card import ModelCard  # noqa: PLC0415  (only for cards)

        version = self.get(ref)
        environment = None
        if version.run_id is not None and self.environments is not None:
            digest = self.runs.get_run(version.run_id).environment_digest
            environment = None if digest is None else self.environments.get_environment(digest)
        return ModelCard.build(
            version,
            history=self.catalog.alias_history(version.name),
            profiles=self._profiles(version),
            environment=environment,
        )

    def export_mlflow(self, ref: str | ModelVersion, directory: str | Path) -> Path:
        """Write a scikit-learn version as an MLflow model directory, stored with skops.

        ``mlflow.pyfunc.load_model(directory)`` loads it with MLflow's own
        code; the file is checked against its digest on the way out.
        """
        from mlcycle.registry._mlflow import write_mlflow_model  # noqa: PLC0415  (yaml, when used)

        version = self.get(ref)
        if version.flavor != "sklearn":
            raise ValidationFailed(
                f"model {version.ref} is a {version.flavor} model; only scikit-learn models "
                "export to MLflow's format"
            )
        example = self.input_example(version) if _EXAMPLE_ROLE in version.files else None
        with tempfile.TemporaryDirectory(prefix="mlcycle-export-") as folder:
            path = Path(folder) / "model.skops"
            self._fetch(version, version.digest, path)
            return write_mlflow_model(
                path,
                Path(directory),
                signature=Signature.from_dict(version.signature),
                input_example=example,
            )

    def import_mlflow(
        self,
        name: str,
        directory: str | Path,
        *,
        trust: bool = False,
        run: ActiveRun | Run | str | None = None,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> ModelVersion:
        """Register the scikit-learn model of an MLflow model directory as a skops version.

        A pickled MLflow model runs code when read, so it is read only with
        ``trust=True`` (``Untrusted`` otherwise); it is stored as skops, so
        later loads need no trust. Its ``input_example`` is kept when present.
        """
        from mlcycle.registry._mlflow import (  # noqa: PLC0415  (yaml, when used)
            mlflow_input_example,
            read_mlflow_model,
        )

        path = Path(directory)
        types = (*self.settings.trusted_types, *((ANY_TYPE,) if trust else ()))
        model = read_mlflow_model(path, trust=trust, trusted_types=types)
        return self.register(
            name,
            model,
            run=run,
            input_example=mlflow_input_example(path),
            tags={"mlcycle.imported_from": f"mlflow:{path.name}", **(tags or {})},
            description=description,
            flavor="sklearn",
        )

    def update(
        self,
        ref: str | ModelVersion,
        *,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
        limitations: str | None = None,
    ) -> ModelVersion:
        """Merge ``tags`` into a version and set its description or limitations."""
        version = self.get(ref)
        return self.catalog.update_model_version(
            version.name,
            version.version,
            actor=self.actor,
            time=self.clock.now(),
            tags=None if tags is None else {str(k): str(v) for k, v in tags.items()},
            description=description,
            limitations=limitations,
        )

    def promote(
        self,
        name: str,
        version: int,
        to: str = "production",
        *,
        reason: str | None = None,
        force: bool = False,
        trust: bool = False,
    ) -> AliasMove:
        """Point alias ``to`` at ``version``, recorded with who, when, why and the gate results.

        An alias in ``registry.guarded_aliases`` takes only a version whose
        gates passed (``GateFailed`` with the results otherwise), unless
        ``force=True`` with a ``reason``, which the history keeps. When
        production moved since the version was evaluated, its gates run again
        on the stored rows (the fresh verdict is kept on the version), which
        loads the model: an unsafe one needs ``trust`` as for ``load``.
        """
        check_alias(to)
        if force and not (reason and reason.strip()):
            raise ValidationFailed(
                f"forcing model '{name}' version {version} to '{to}' needs a reason, which "
                "the alias history keeps: pass reason='...'"
            )
        candidate = self.catalog.get_model_version(name, version)
        gates = self._gates(candidate, to, trust=trust)
        overridden = self._check_gates(candidate, to, gates, force=force)
        for attempt in range(_PROMOTE_ATTEMPTS):
            current = self.catalog.get_model(name).aliases.get(to)
            try:
                return self.catalog.move_alias(
                    name,
                    to,
                    version,
                    kind="promote",
                    actor=self.actor,
                    time=self.clock.now(),
                    reason=reason,
                    forced=overridden,
                    gates=gates,
                    expect_from=current,
                )
            except AliasConflict:
                if attempt == _PROMOTE_ATTEMPTS - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable: the loop returns or raises")

    def rollback_target(self, name: str, alias: str = "production") -> ModelVersion | None:
        """The version ``rollback`` would return ``alias`` to (``None``: nothing before it)."""
        check_alias(alias)
        current = self.catalog.get_model(name).aliases.get(alias)
        target = rollback_target(self.catalog.alias_history(name, alias), current)
        return None if target is None else self.catalog.get_model_version(name, target)

    def rollback(
        self, name: str, alias: str = "production", *, reason: str | None = None
    ) -> AliasMove:
        """Return ``alias`` to the version it held before the current one, in one move.

        Again, it walks further back, skipping versions that were themselves
        rolled back from. ``AliasConflict`` when the alias moved meanwhile.
        """
        check_alias(alias)
        current = self.catalog.get_model(name).aliases.get(alias)
        target = rollback_target(self.catalog.alias_history(name, alias), current)
        if target is None:
            raise NotFound(
                f"alias '{alias}' of model '{name}' has no earlier version to roll back to "
                f"(it names {'nothing' if current is None else f'version {current}'}); "
                f"see `mlcycle models history {name}`"
            )
        gates = self.catalog.get_model_version(name, target).evaluation
        return self.catalog.move_alias(
            name,
            alias,
            target,
            kind="rollback",
            actor=self.actor,
            time=self.clock.now(),
            reason=reason,
            gates=gates,
            expect_from=current,
        )

    def _alias(self, name: str, alias: str) -> int:
        model = self.catalog.get_model(name)
        if alias in model.aliases:
            return model.aliases[alias]
        named = ", ".join(f"{a} -> {v}" for a, v in model.aliases.items()) or "none"
        raise NotFound(f"model '{name}' has no alias '{alias}' (its aliases: {named})")

    def _gates(
        self, version: ModelVersion, to: str, *, trust: bool
    ) -> dict[str, Any] | None:  # Any: JSON values
        """The gate results a move to ``to`` is judged by: fresh ones for a guarded alias."""
        if to not in self.settings.guarded_aliases:
            return version.evaluation
        from mlcycle.registry._evaluation import reevaluate  # noqa: PLC0415  (numpy, sklearn)

        fresh = reevaluate(self, version, trust=trust)
        return version.evaluation if fresh is None else fresh

    def _check_gates(
        self,
        version: ModelVersion,
        to: str,
        gates: dict[str, Any] | None,  # Any: JSON values
        *,
        force: bool,
    ) -> bool:
        """Whether promoting overrides failed or missing gates; ``GateFailed`` unless forced."""
        if to not in self.settings.guarded_aliases or evaluation_passed(gates):
            return False
        if force:
            return True
        if gates is None:
            why = "it has no gate evaluation; run mc.registry.evaluate on it first"
        else:
            why = f"its gates failed: {', '.join(failed_gates(gates)) or 'passed is false'}"
        raise GateFailed(
            f"model {version.ref} cannot become '{to}' (a guarded alias): {why}; "
            "or force it with a reason the history keeps (force=True, reason=...; "
            "mlcycle models promote --force --reason ...)",
            results=gates or {},
        )

    def _store_onnx(self, model: object, example: object) -> tuple[Digest | None, str]:
        """An ONNX copy of a scikit-learn model, or why there is none (recorded as a tag)."""
        from mlcycle.registry._onnx import convert_to_onnx  # noqa: PLC0415  (onnx: when used)

        frame = example_frame(example)
        if frame is not example and not hasattr(model, "feature_names_in_"):
            return None, "not converted: give the input example as a DataFrame to convert"
        try:
            converted = convert_to_onnx(model, frame)
        except ValidationFailed as exc:
            return None, f"not converted: {exc}"
        with tempfile.TemporaryDirectory(prefix="mlcycle-onnx-") as folder:
            path = Path(folder) / "model.onnx"
            path.write_bytes(converted.SerializeToString())
            digest = self.artifacts.put_file(str(path))
        worst = {entry.key: entry.value for entry in converted.metadata_props}
        return digest, f"converted (max abs diff {worst.get('mlcycle.max_abs_diff', '?')})"

    def _onnx_digest(self, version: ModelVersion) -> Digest:
        digest = version.files.get(_ONNX_ROLE)
        if digest is None:
            why = version.tags.get(ONNX_TAG, "it was registered without an input example")
            raise NotFound(
                f"model {version.ref} has no ONNX copy ({why}); load it with runtime='native'"
            )
        return digest

    def _profiles(self, version: ModelVersion) -> dict[str, DatasetProfile]:
        """The stored profiles of the dataset versions ``version`` was trained on, by reference."""
        from mlcycle.data import DatasetProfile  # noqa: PLC0415  (only for cards)

        found: dict[str, DatasetProfile] = {}
        if self.data is None:
            return found
        for ref in version.dataset_versions:
            try:
                dataset = self.data.get(ref.removeprefix("data:/"))
            except NotFound:
                continue
            if dataset.profile_digest is not None:
                with self.artifacts.open(dataset.profile_digest) as stream:
                    found[ref] = DatasetProfile.from_json(stream.read())
        return found

    def _flavor(self, model: object, flavor: str | Flavor | None) -> Flavor:
        if flavor is None:
            return flavor_for(model)
        return get_flavor(flavor) if isinstance(flavor, str) else flavor

    def _store_model(self, flavor: Flavor, model: object) -> tuple[Digest, int]:
        with tempfile.TemporaryDirectory(prefix="mlcycle-save-") as folder:
            path = Path(folder) / f"model{flavor.suffix}"
            flavor.save(model, path)
            return self.artifacts.put_file(str(path)), path.stat().st_size

    def _store_example(self, example: object) -> Digest:
        frame = example_frame(example)
        with tempfile.TemporaryDirectory(prefix="mlcycle-example-") as folder:
            path = Path(folder) / "example.parquet"
            frame.rename(columns=str).to_parquet(path, index=False)
            return self.artifacts.put_file(str(path))

    def _fetch(self, version: ModelVersion, digest: Digest, path: Path) -> None:
        try:
            with self.artifacts.open(digest) as source, path.open("wb") as target:
                shutil.copyfileobj(source, target)
        except IntegrityError as exc:
            raise IntegrityError(
                f"refusing to load {version.ref}: its stored file no longer matches its digest "
                f"{digest} ({exc})"
            ) from exc
        except NotFound as exc:
            raise NotFound(f"the file {digest} of {version.ref} is missing: {exc}") from exc

    def _run(self, run: ActiveRun | Run | str | None) -> Run | None:
        if run is None:
            active = current_run()
            if active is None or (self.tracker is not None and not active.tracker_is(self.tracker)):
                return None
            run = active
        if self.tracker is not None:
            self.tracker.flush()  # the run and what it logged reach the store first
        run_id = run if isinstance(run, str) else run.id
        return self.runs.get_run(run_id)

    def _datasets(self, run_id: RunId) -> tuple[str, ...]:
        edges = self.lineage.edges_into(f"run:{run_id}")
        return tuple(sorted({e.source for e in edges if e.source.startswith("data:/")}))


def _predict(flavor: Flavor, model: object, example: object) -> object:
    """The model's output on its example; an array example is given to the model as it is."""
    frame = example_frame(example)
    return flavor.predict(model, frame if frame is example else example)  # type: ignore[arg-type]  # an array goes through as trained


def _code_version(run: Run | None) -> str | None:
    if run is None or run.git_commit is None:
        return None
    return f"{run.git_commit}-dirty" if run.git_dirty else run.git_commit


def _inputs(record: ModelVersion) -> list[tuple[str, str]]:
    inputs = [] if record.run_id is None else [(f"run:{record.run_id}", "produced")]
    inputs += [(ref, "training_data") for ref in record.dataset_versions]
    if record.code_version is not None:
        inputs.append((f"git:{record.code_version}", "code"))
    return inputs


def _floats(values: Mapping[str, float]) -> dict[str, float]:
    return {str(key): float(value) for key, value in values.items()}


def _texts(values: Mapping[str, Any]) -> dict[str, str]:  # Any: stored as text
    return {str(key): str(value) for key, value in values.items()}
