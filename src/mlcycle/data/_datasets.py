"""Versioned datasets: Delta tables in the table area, version records in the metadata store.

A registration reads the source into Arrow, runs the caller's check, takes
the dataset's write lease in the metadata store, writes one Delta commit and
records the version (with its event and lineage edge) while giving the lease
back, in one transaction. The lease makes concurrent writers take turns, so
version numbers follow Delta's commit order; Delta's own optimistic
concurrency (``CommitFailedError``) is retried from a fresh snapshot for
writers that bypass the lease. Content that is already the latest version
makes no new version.
"""

from __future__ import annotations

import hashlib
import io
import re
import time as monotonic_time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.clock import Clock
from mlcycle.data._content import canonical, content_digest
from mlcycle.data._delta_files import (
    PARQUET_CODEC,
    SourceFingerprint,
    commit_files,
    file_fingerprint,
    file_state,
    fits_as_files,
    single_file,
    write_data_files,
    writer_properties,
)
from mlcycle.data._diff import DatasetDiff, diff_tables
from mlcycle.data._erase import Erasure, Predicate, parse_predicate
from mlcycle.data._policy import PolicyFinding
from mlcycle.data._refs import LATEST, parse_ref
from mlcycle.data._sources import read_source
from mlcycle.errors import MlcycleError, NotFound, ValidationFailed
from mlcycle.ids import Digest, new_id
from mlcycle.store import (
    ArtifactStore,
    Dataset,
    DatasetCatalog,
    DatasetVersion,
    LineageGraph,
    TableArea,
    check_dataset_actor,
    check_dataset_name,
)
from mlcycle.track import Tracker, current_run

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PARQUET_CODEC", "DatasetConflict", "DatasetRegistry", "Erasure"]

Mode = Literal["append", "overwrite"]
TABLE_PROPERTIES: dict[str, str | None] = {"delta.enableExpiredLogCleanup": "false"}
"""Set on every new dataset table: a checkpoint never deletes old commit files (delta-rs
does after 30 days by default), so every version stays readable until an erasure."""
Validation = Literal["passed", "skipped"] | None
"""What a registration's schema validation did: ran and passed, was skipped, or was not asked."""
Check = Callable[[pa.Table], None]
SchemaCheck = Callable[[str, pa.Table], None]
"""Checks rows against the schema of the named dataset; raises ``ValidationFailed`` if bad."""
PolicyScan = Callable[[pa.Table], Sequence[PolicyFinding]]
ErasureHook = Callable[[set[Digest]], None]
"""Told the content digests an erasure replaced that no version holds any more, so that
derived data keyed by them (the monitor's cached references) is deleted."""
_COMMIT_RETRIES = 5
_MAX_SOURCE_REF = 1000
"""The longest lineage reference every backend keeps."""
_TABLES_PREFIX = "datasets"
_REWRITTEN = "_rewritten"
"""Tables rewritten by an erasure: ``datasets/_rewritten/<name>/g<generation>``."""
ROW_COLUMN = "_mlcycle_row"
"""Each stored row's position: Delta does not keep the order of files, the digest needs it."""


class DatasetConflict(MlcycleError):
    """Another writer held a dataset for longer than this one would wait, or won every commit."""


@dataclass
class DatasetRegistry:
    """Register, load, compare and roll back versioned datasets of one workspace."""

    catalog: DatasetCatalog
    lineage: LineageGraph
    tables: TableArea
    artifacts: ArtifactStore | None
    clock: Clock
    actor: str
    tracker: Tracker | None = None
    policy_scan: PolicyScan | None = None
    schema_check: SchemaCheck | None = None
    schemas_dir: Path | None = None
    validate_on_register: Sequence[str] = ()
    """Datasets whose registrations run ``schema_check`` unless told not to; ``"*"``: all."""
    lock_ttl_s: float = 600.0
    lock_wait_s: float = 120.0
    on_erase: ErasureHook | None = None
    """Called before an erasure's swap and again after it (see ``erase``)."""

    # -- writing -------------------------------------------------------------------------------

    def register(
        self,
        name: str,
        source: object,
        *,
        mode: Mode = "append",
        time_column: str | None = None,
        key: Sequence[str] | None = None,
        schema: Literal["merge"] | None = None,
        description: str | None = None,
        check: Check | None = None,
        validate: bool | None = None,
    ) -> DatasetVersion:
        """Add ``source`` to dataset ``name`` as a new version (the first register creates it).

        ``mode="append"`` adds the rows, ``"overwrite"`` replaces them; content
        identical to the latest version makes no new version and returns it.
        ``schema="merge"`` lets an append add (or leave out) columns. ``check``
        runs on the new rows before anything is written; if it raises, nothing is.
        ``validate=True`` checks the new rows against the dataset's schema
        (``schemas/<name>.yaml`` in a workspace) the same way: data that breaks
        it raises ``ValidationFailed`` listing the anomalies, and nothing is
        written. ``None`` (the default) follows ``validate_on_register``;
        ``False`` skips the check.
        """
        check_dataset_name(name)
        check_dataset_actor(self.actor)
        if mode not in {"append", "overwrite"}:
            raise ValidationFailed(f"mode {mode!r} must be 'append' or 'overwrite'")
        if schema not in {None, "merge"}:
            raise ValidationFailed(f"schema {schema!r} must be None or 'merge'")
        path = single_file(source)
        if path is not None and mode == "overwrite" and check is None and not validate:
            same = self._same_file(name, path, time_column=time_column, key=key)
            if same is not None:
                return same
        raw, described, fingerprint = _read_fingerprinted(source, path)
        table = canonical(raw)
        if table.num_rows == 0:
            raise ValidationFailed(
                f"the data for dataset '{name}' ({described}) has no rows; nothing was registered"
            )
        if ROW_COLUMN in table.column_names:
            raise ValidationFailed(f"column name '{ROW_COLUMN}' is reserved; rename the column")
        keys = tuple(key or ())
        _require_columns(table, [*keys, *([time_column] if time_column else [])], name)
        validation = self._validate(name, table, validate=validate)
        if check is not None:
            check(table)
        dataset = self._dataset(name, time_column=time_column, key=keys, description=description)
        source_ref = _source_ref(described)
        return self._write(
            dataset,
            table,
            mode=mode,
            schema=schema,
            source=(described, source_ref),
            op=None,
            validation=validation,
            fingerprint=fingerprint,
        )

    def _validate(self, name: str, table: pa.Table, *, validate: bool | None) -> Validation:
        """Check ``table`` against the schema of ``name`` if asked; say what was done."""
        listed = name in self.validate_on_register
        configured = listed or "*" in self.validate_on_register
        if validate is None:
            validate = listed or (configured and self._has_schema(name))
        if not validate:
            return "skipped" if configured else None
        if self.schema_check is None:
            raise ValidationFailed(
                f"cannot validate dataset '{name}': this registry has no schema check; "
                "use a Workspace (ws.data or mc.data), or pass check=..."
            )
        self.schema_check(name, table)
        return "passed"

    def _has_schema(self, name: str) -> bool:
        return self.schemas_dir is not None and (self.schemas_dir / f"{name}.yaml").is_file()

    def rollback(self, name: str, version: int) -> DatasetVersion:
        """Make a new version with the content of ``version``; history is never deleted."""
        check_dataset_actor(self.actor)
        old = self.catalog.get_dataset_version(name, version)
        table = self._read(old)
        dataset = self.catalog.get_dataset(name)
        return self._write(
            dataset,
            table,
            mode="overwrite",
            schema=None,
            source=(old.ref, old.ref),
            op="rollback",
            validation=None,
        )

    def _dataset(
        self, name: str, *, time_column: str | None, key: tuple[str, ...], description: str | None
    ) -> Dataset:
        dataset = self.catalog.ensure_dataset(
            name,
            actor=self.actor,
            time=self.clock.now(),
            time_column=time_column,
            key=key,
            description=description,
        )
        for what, given, stored in (
            ("time_column", time_column, dataset.time_column),
            ("key", key or None, dataset.key or None),
        ):
            if given is not None and given != stored:
                raise ValidationFailed(
                    f"dataset '{name}' was registered with {what}={stored!r}, not {given!r}; "
                    "leave it out, or register a new dataset"
                )
        return dataset

    def _write(
        self,
        dataset: Dataset,
        table: pa.Table,
        *,
        mode: Mode,
        schema: Literal["merge"] | None,
        source: tuple[str, str],
        op: str | None,
        validation: Validation,
        fingerprint: SourceFingerprint | None = None,
    ) -> DatasetVersion:
        owner = new_id()
        self._lock(dataset.name, owner)
        try:
            return self._write_locked(
                dataset,
                table,
                mode=mode,
                schema=schema,
                source=source,
                op=op,
                owner=owner,
                validation=validation,
                fingerprint=fingerprint,
            )
        finally:
            self.catalog.unlock_dataset(dataset.name, owner=owner)

    def _write_locked(
        self,
        dataset: Dataset,
        table: pa.Table,
        *,
        mode: Mode,
        schema: Literal["merge"] | None,
        source: tuple[str, str],
        op: str | None,
        owner: str,
        validation: Validation,
        fingerprint: SourceFingerprint | None = None,
    ) -> DatasetVersion:
        name = dataset.name
        latest = self.catalog.latest_dataset_version(name)
        uri = self.tables.table_uri(self._table_name(name))  # read under the lease: erase moves it
        current = self._delta(uri)
        if current is None or latest is None:
            mode = "overwrite"
        if mode == "overwrite" and latest is not None:
            digest = content_digest(table)
            if latest.digest == digest:
                return latest
        elif mode == "append":
            _check_append(name, latest, _table_schema(current), table, merge=schema == "merge")
        offset = self._row_count(uri) if mode == "append" else 0
        numbered = table.append_column(ROW_COLUMN, _row_numbers(offset, table.num_rows))
        with ThreadPoolExecutor(max_workers=3) as pool:  # numpy/Arrow kernels release the GIL
            if mode == "overwrite":  # the stored rows are these: describe them while writing
                stored = table
                profiled, scanned = (
                    pool.submit(self._profile, table),
                    pool.submit(self._policy_findings, table),
                )
                digested = pool.submit(content_digest, table) if latest is None else None
            delta_version = self._commit(
                uri,
                numbered,
                mode=mode,
                merge=schema == "merge",
                fingerprint=fingerprint if mode == "overwrite" else None,
            )
            if mode == "overwrite" and digested is not None:
                digest = digested.result()
            if mode == "append":
                stored = self._read_delta(uri, delta_version)
                profiled, scanned = (
                    pool.submit(self._profile, stored),
                    pool.submit(self._policy_findings, stored),
                )
                digest = content_digest(stored)
            profile_body, findings = profiled.result(), scanned.result()
        profile_digest = self._store_profile(profile_body)
        operation = op or ("create" if latest is None else mode)
        described, source_ref = source
        inputs = [(source_ref, "source")]
        if latest is not None and operation == "append":
            inputs.append((latest.ref, "previous"))
        record = DatasetVersion(
            name=name,
            version=0,
            rows=stored.num_rows,
            columns=stored.column_names,
            types=[str(f.type) for f in stored.schema],
            digest=digest,
            created_at=self.clock.now(),
            source=described,
            actor=self.actor,
            delta_version=delta_version,
            operation=operation,
            profile_digest=profile_digest,
            policy=findings,
        )
        return self.catalog.add_dataset_version(
            record, inputs=inputs, release_lock=owner, validation=validation
        )

    def _policy_findings(self, table: pa.Table) -> list[dict[str, Any]]:  # Any: JSON findings
        if self.policy_scan is None:
            return []
        return [finding.to_dict() for finding in self.policy_scan(table)]

    def _same_file(
        self, name: str, path: Path, *, time_column: str | None, key: Sequence[str] | None
    ) -> DatasetVersion | None:
        """The latest version of ``name`` if its Delta commit was made from these very bytes.

        Hashing the file is far cheaper than decoding it; anything unusual
        (no fingerprint, another commit since, other key or time column, a
        size or a byte that differs) returns ``None`` and the file is read.
        """
        try:
            dataset = self.catalog.get_dataset(name)
        except NotFound:
            return None
        self._dataset(name, time_column=time_column, key=tuple(key or ()), description=None)
        latest = self.catalog.latest_dataset_version(name)
        needed = [*(key or ()), *([time_column] if time_column else [])]
        if latest is None or any(c not in latest.columns for c in needed):
            return None
        uri = self.tables.table_uri(dataset.table_path or f"{_TABLES_PREFIX}/{name}")
        current = self._delta(uri)
        if current is None or current.version() != latest.delta_version:
            return None  # a commit no version records (a writer died): read the file
        found = file_fingerprint(path)
        if found is None:
            return None
        return latest if current.transaction_version(found.app_id) == latest.delta_version else None

    def _remember(
        self,
        current: Any,  # Any: a deltalake DeltaTable, or None
        fingerprint: SourceFingerprint | None,
    ) -> Any:  # Any: deltalake CommitProperties
        """Commit properties naming the file the commit's rows are exactly (see ``_delta_files``).

        The ``txn`` version is the commit this write expects to make on top of
        ``current`` (``None``: a new table); should another commit land first,
        the id names a commit that is not this file's newest version, so it
        never matches (the file is read again).
        """
        if fingerprint is None:
            return None
        from deltalake import CommitProperties, Transaction  # noqa: PLC0415  (heavy; on first use)

        expected = 0 if current is None else int(current.version()) + 1
        return CommitProperties(app_transactions=[Transaction(fingerprint.app_id, expected)])

    def _lock(self, name: str, owner: str) -> None:
        deadline = monotonic_time.monotonic() + self.lock_wait_s
        pause = 0.02
        while True:
            holder = self.catalog.lock_dataset(
                name, owner=owner, now=self.clock.now(), ttl_s=self.lock_ttl_s
            )
            if holder is None:
                return
            if monotonic_time.monotonic() > deadline:
                raise DatasetConflict(
                    f"dataset '{name}' is being written by another process (lease {holder}) "
                    f"for more than {self.lock_wait_s:.0f} s; try again when it is done (a "
                    f"lease of a process that died expires after {self.lock_ttl_s:.0f} s)"
                )
            monotonic_time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _commit(
        self,
        uri: str,
        table: pa.Table,
        *,
        mode: Mode,
        merge: bool,
        fingerprint: SourceFingerprint | None = None,
    ) -> int:
        """Commit ``table`` to the Delta table at ``uri`` (made if new); the commit's version.

        The Parquet files are written once (``_delta_files``); a commit that
        loses to another writer's is retried on a fresh snapshot with them.
        """
        from deltalake import DeltaTable  # noqa: PLC0415  (heavy; on first use)
        from deltalake.exceptions import (  # noqa: PLC0415
            CommitFailedError,
            DeltaError,
            SchemaMismatchError,
        )

        options = self.tables.storage_options() or None
        files: list[Any] | None = None  # Any: deltalake AddActions
        for attempt in range(_COMMIT_RETRIES):
            current = self._delta(uri)
            try:
                if fits_as_files(uri, current, table.schema):
                    if files is None:
                        files = write_data_files(uri, table, plain=(ROW_COLUMN,))
                    commit_files(
                        uri,
                        current,
                        files,
                        mode=mode,
                        schema=table.schema,
                        storage_options=options,
                        configuration=TABLE_PROPERTIES,
                        commit_properties=self._remember(current, fingerprint),
                    )
                else:
                    self._write_deltalake(
                        uri, table, current, mode=mode, merge=merge, fp=fingerprint
                    )
                break
            except SchemaMismatchError as exc:
                raise ValidationFailed(
                    f"the new rows do not fit the table at {uri}: {exc}; register with "
                    "mode='overwrite' or under a new dataset name; the table is unchanged"
                ) from exc
            except (CommitFailedError, DeltaError) as exc:
                lost = isinstance(exc, CommitFailedError) or (
                    current is None and self._delta(uri) is not None  # created meanwhile
                )
                if not lost:
                    raise
                if attempt == _COMMIT_RETRIES - 1:
                    raise DatasetConflict(
                        f"another writer committed to {uri} {_COMMIT_RETRIES} times in a row "
                        f"({exc}); try again"
                    ) from exc
        found = DeltaTable(uri, storage_options=options)
        return int(found.version())

    def _write_deltalake(
        self,
        uri: str,
        table: pa.Table,
        current: Any,  # Any: a deltalake DeltaTable, or None
        *,
        mode: Mode,
        merge: bool,
        fp: SourceFingerprint | None,
    ) -> None:
        """delta-rs' own write, for what ``write_data_files`` leaves to it (schema changes)."""
        from deltalake import write_deltalake  # noqa: PLC0415  (heavy; on first use)

        schema_mode: Literal["merge", "overwrite"] | None = None
        if mode == "overwrite" and current is not None:
            schema_mode = "overwrite"
        elif merge:
            schema_mode = "merge"
        write_deltalake(
            uri,
            table,
            mode=mode,
            schema_mode=schema_mode,
            storage_options=self.tables.storage_options() or None,
            writer_properties=writer_properties(table.schema, plain=(ROW_COLUMN,)),
            commit_properties=self._remember(current, fp),
            configuration=None if current is not None else TABLE_PROPERTIES,
        )

    def _profile(self, table: pa.Table) -> bytes | None:
        """The profile's JSON; stored (``_store_profile``) only once the commit has landed."""
        if self.artifacts is None:
            return None
        try:
            from mlcycle.data._profile import profile_table  # noqa: PLC0415  (optional stage)
        except ImportError:  # pragma: no cover  (profiles ship with the data stage)
            return None
        profile = profile_table(table)
        return orjson.dumps(profile.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY)

    def _store_profile(self, body: bytes | None) -> Digest | None:
        if body is None or self.artifacts is None:
            return None
        return self.artifacts.put(io.BytesIO(body))

    # -- reading -------------------------------------------------------------------------------

    def get(
        self, ref: str, *, version: int | None = None, as_of: datetime | None = None
    ) -> DatasetVersion:
        """The version ``ref`` names (``bike``, ``bike/3``, ``bike@latest``, ``data:/bike/3``)."""
        parsed = parse_ref(ref)
        if parsed.kind != "data":
            raise ValidationFailed(f"{ref!r} names a model; give a dataset such as 'bike/3'")
        if parsed.alias not in {None, LATEST}:
            raise NotFound(
                f"datasets have no alias '@{parsed.alias}' (only '@latest'); "
                f"give a version such as '{parsed.name}/3'"
            )
        if version is not None and parsed.version is not None and version != parsed.version:
            raise ValidationFailed(f"{ref!r} names version {parsed.version}, not {version}")
        wanted = version if version is not None else parsed.version
        if wanted is not None:
            return self.catalog.get_dataset_version(parsed.name, wanted)
        if as_of is not None:
            return self._as_of(parsed.name, as_of)
        latest = self.catalog.latest_dataset_version(parsed.name)
        if latest is None:
            raise NotFound(f"dataset '{parsed.name}' has no versions yet; register data first")
        return latest

    def _as_of(self, name: str, as_of: datetime) -> DatasetVersion:
        if as_of.tzinfo is None:
            as_of = as_of.astimezone()
        found = [v for v in self.catalog.list_dataset_versions(name) if v.created_at <= as_of]
        if not found:
            raise NotFound(f"dataset '{name}' had no version at {as_of.isoformat()}")
        return found[-1]

    def load_table(
        self,
        ref: str,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
        columns: Sequence[str] | None = None,
        start: object = None,
        end: object = None,
    ) -> pa.Table:
        """The rows of a version as Arrow; ``start <= time column < end`` when given.

        ``as_of`` is commit time (the version that was latest then); ``start``
        and ``end`` filter on the dataset's own time column. Inside an active
        run the version is recorded as the run's input.
        """
        found = self.get(ref, version=version, as_of=as_of)
        table = self._read(found)
        if start is not None or end is not None:
            table = self._time_filter(found.name, table, start, end)
        if columns is not None:
            missing = [c for c in columns if c not in table.column_names]
            if missing:
                raise ValidationFailed(
                    f"{found.ref} has no column(s) {missing}; it has {table.column_names}"
                )
            table = table.select(list(columns))
        self._record_input(found)
        return table

    def scan(
        self,
        ref: str,
        *,
        version: int | None = None,
        columns: Sequence[str] | None = None,
        batch_rows: int = 65_536,
    ) -> tuple[DatasetVersion, pa.Schema, Iterator[pa.RecordBatch]]:
        """The rows of a version as a stream of batches, in row order, typed as ``load_table``.

        The version and the schema come first (an unknown version or column is
        refused before a row is read); the batches are read as they are taken.
        A local table's Parquet files, each a contiguous run of row numbers
        written in order, are read one after another, so memory holds about one
        batch; a table on an object store streams DataFusion's ordered scan.
        Inside an active run the version is recorded as the run's input.
        """
        if batch_rows < 1:
            raise ValidationFailed(f"batch_rows={batch_rows} must be at least 1")
        found = self.get(ref, version=version)
        uri = self.tables.table_uri(self._table_name(found.name))
        from deltalake import DeltaTable  # noqa: PLC0415  (heavy; on first use)

        delta = DeltaTable(
            uri, version=found.delta_version, storage_options=self.tables.storage_options() or None
        )
        stored = pa.schema(delta.schema().to_arrow())
        full = canonical(stored.empty_table().drop_columns([ROW_COLUMN])).schema
        names = list(full.names) if columns is None else list(columns)
        missing = [c for c in names if c not in full.names]
        if missing:
            raise ValidationFailed(f"{found.ref} has no column(s) {missing}; it has {full.names}")
        schema = pa.schema([full.field(c) for c in names])
        files = _files_in_row_order(delta) if "://" not in uri else None
        if files is None:
            batches = self._ordered_query(delta, names)
        else:
            batches = _read_files(Path(uri), files, names, batch_rows=batch_rows)
        self._record_input(found)
        return found, schema, _typed(batches, schema, batch_rows=batch_rows)

    def _ordered_query(
        self, delta: Any, names: list[str]
    ) -> Iterator[pa.RecordBatch]:  # Any: a DeltaTable
        from deltalake import QueryBuilder  # noqa: PLC0415  (heavy; on first use)

        selected = ", ".join(f'"{name}"' for name in names)
        query = f'SELECT {selected} FROM "t" ORDER BY "{ROW_COLUMN}"'  # noqa: S608  (names checked)
        yield from pa.RecordBatchReader.from_stream(
            QueryBuilder().register("t", delta).execute(query)
        )

    def load(
        self,
        ref: str,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
        columns: Sequence[str] | None = None,
        start: object = None,
        end: object = None,
    ) -> pd.DataFrame:
        """The rows of a version as a pandas DataFrame (see ``load_table``)."""
        table = self.load_table(
            ref, version=version, as_of=as_of, columns=columns, start=start, end=end
        )
        frame: pd.DataFrame = table.to_pandas()
        return frame

    def _time_filter(self, name: str, table: pa.Table, start: object, end: object) -> pa.Table:
        column_name = self.catalog.get_dataset(name).time_column
        if column_name is None:
            raise ValidationFailed(
                f"dataset '{name}' has no time column; register it with time_column=... "
                "to filter by start and end"
            )
        column = table.column(column_name)
        mask = None
        for bound, compare in ((start, pc.greater_equal), (end, pc.less)):
            if bound is None:
                continue
            scalar = pa.scalar(bound)
            try:
                scalar = scalar.cast(column.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ValidationFailed(
                    f"cannot compare {bound!r} with time column '{column_name}' "
                    f"({column.type}): {exc}"
                ) from exc
            part = compare(column, scalar)
            mask = part if mask is None else pc.and_(mask, part)
        return table.filter(mask)

    def _record_input(self, found: DatasetVersion) -> None:
        run = current_run()
        if run is None or (self.tracker is not None and not run.tracker_is(self.tracker)):
            return
        self.lineage.add_edge(
            found.ref, f"run:{run.id}", kind="input", actor=self.actor, time=self.clock.now()
        )

    def _read(self, found: DatasetVersion) -> pa.Table:
        uri = self.tables.table_uri(self._table_name(found.name))
        return self._read_delta(uri, found.delta_version)

    def _table_name(self, name: str) -> str:
        """Where the dataset's Delta table is: ``datasets/<name>`` until an erasure moves it."""
        return self.catalog.get_dataset(name).table_path or f"{_TABLES_PREFIX}/{name}"

    def _delta(self, uri: str) -> Any:  # Any: a deltalake DeltaTable
        from deltalake import DeltaTable  # noqa: PLC0415  (heavy; on first use)
        from deltalake.exceptions import TableNotFoundError  # noqa: PLC0415

        try:
            return DeltaTable(uri, storage_options=self.tables.storage_options() or None)
        except TableNotFoundError:
            return None

    def _row_count(self, uri: str) -> int:
        from deltalake import DeltaTable, QueryBuilder  # noqa: PLC0415  (heavy; on first use)

        table = DeltaTable(uri, storage_options=self.tables.storage_options() or None)
        query = f'SELECT max("{ROW_COLUMN}") AS n FROM "t"'  # noqa: S608  (constants only)
        found = pa.table(QueryBuilder().register("t", table).execute(query)).column("n")[0]
        return 0 if found.as_py() is None else int(found.as_py()) + 1

    def _read_delta(self, uri: str, delta_version: int) -> pa.Table:
        # DataFusion's scan rather than to_pyarrow_table(): the pyarrow dataset scan can
        # abort the interpreter at exit ("terminate called without an active exception").
        from deltalake import DeltaTable, QueryBuilder  # noqa: PLC0415  (heavy; on first use)

        table = DeltaTable(
            uri, version=delta_version, storage_options=self.tables.storage_options() or None
        )
        query = f'SELECT * FROM "t" ORDER BY "{ROW_COLUMN}"'  # noqa: S608  (constants only)
        found = pa.table(QueryBuilder().register("t", table).execute(query))
        return canonical(found.drop_columns([ROW_COLUMN]))

    # -- erasure -------------------------------------------------------------------------------

    def erase(self, name: str, *, where: str, reason: str) -> Erasure:
        """Remove the rows matching ``where`` from every version of ``name``; the one deletion.

        ``where`` is a restricted predicate (``"email = 'ana@example.com'"``; see
        ``mlcycle.data._erase`` for the grammar), parsed and run with Arrow
        compute, never ``eval``. Every version is rewritten, in order and under
        the dataset's write lease, into a fresh Delta table without the rows;
        the version records (rows, digest, Delta commit, profile, policy) and the
        table location are swapped in one transaction with a ``dataset.erased``
        event (predicate, ``reason``, rows removed per version; never the erased
        rows); then the old table's files are deleted. Version numbers stay.
        ``on_erase`` hears the replaced content digests before the swap and again
        after it, so data derived from the old rows is deleted.
        """
        predicate = parse_predicate(where)
        if not isinstance(reason, str) or not reason.strip():
            raise ValidationFailed(
                "erase needs a reason=... saying why (such as 'GDPR erasure request #123'); "
                "it is recorded with the erasure"
            )
        check_dataset_actor(self.actor)
        self.catalog.get_dataset(name)
        owner = new_id()
        self._lock(name, owner)
        try:
            return self._erase_locked(name, predicate, reason.strip(), owner)
        finally:
            self.catalog.unlock_dataset(name, owner=owner)

    def _erase_locked(self, name: str, predicate: Predicate, reason: str, owner: str) -> Erasure:
        current = self._table_name(name)
        generation = _generation(current)
        target = f"{_TABLES_PREFIX}/{_REWRITTEN}/{name}/g{generation + 1}"
        # Left behind by an erasure that died: a half-written target, or a table it had
        # already swapped out but not yet deleted. Neither is read by any version.
        for leftover in {target, *_table_names(name, generation)} - {current}:
            self.tables.delete_table(leftover)
        versions = self.catalog.list_dataset_versions(name)
        old_uri = self.tables.table_uri(current)
        contents = [self._read_delta(old_uri, v.delta_version) for v in versions]
        if versions and not any(predicate.columns <= set(t.column_names) for t in contents):
            raise ValidationFailed(
                f"no version of dataset '{name}' has the column(s) "
                f"{sorted(predicate.columns)} that where= names; nothing was erased"
            )
        masks = [
            predicate.mask(t) if predicate.columns <= set(t.column_names) else None
            for t in contents
        ]
        removed = {
            v.version: 0 if m is None else int(pc.sum(m).as_py() or 0)
            for v, m in zip(versions, masks, strict=True)
        }
        payload: dict[str, Any] = {  # Any: JSON values
            "name": name,
            "predicate": predicate.text,
            "reason": reason,
            "rows_removed": {str(k): n for k, n in removed.items()},
            "total_removed": sum(removed.values()),
            "table": current,
        }
        if not payload["total_removed"]:
            stored = self.catalog.rewrite_dataset(
                name,
                versions=[],
                table_path=current,
                owner=owner,
                actor=self.actor,
                time=self.clock.now(),
                payload=payload,
            )
            return Erasure(name, predicate.text, reason, removed, stored)
        new_uri = self.tables.table_uri(target)
        updated: list[DatasetVersion] = []
        for version, table, mask in zip(versions, contents, masks, strict=True):
            kept = table if mask is None else table.filter(pc.invert(mask))
            numbered = kept.append_column(ROW_COLUMN, _row_numbers(0, kept.num_rows))
            commit = self._commit(new_uri, numbered, mode="overwrite", merge=False)
            if removed[version.version]:
                version = replace(  # noqa: PLW2901  (the rewritten record)
                    version,
                    rows=kept.num_rows,
                    digest=content_digest(kept),
                    profile_digest=self._store_profile(self._profile(kept)),
                    policy=self._policy_findings(kept),
                )
            updated.append(replace(version, delta_version=commit))
        payload["table"] = target
        payload["previous_table"] = current
        replaced = self._replaced_digests(name, versions, updated)
        self._forget_derived(replaced)  # a crash after the swap leaves no derived copy behind
        stored = self.catalog.rewrite_dataset(
            name,
            versions=updated,
            table_path=target,
            owner=owner,
            actor=self.actor,
            time=self.clock.now(),
            payload=payload,
        )
        self.tables.delete_table(current)
        self._delete_unused_profiles(
            {v.profile_digest for v in versions if removed[v.version] and v.profile_digest}
        )
        self._forget_derived(replaced)  # and none a reader built from the old rows meanwhile
        return Erasure(name, predicate.text, reason, removed, stored)

    def _replaced_digests(
        self, name: str, before: list[DatasetVersion], after: list[DatasetVersion]
    ) -> set[Digest]:
        """The content digests of ``name`` that the rewrite drops and no other version holds."""
        kept = {v.digest for v in after} | {
            version.digest
            for dataset in self.catalog.list_datasets()
            if dataset.name != name
            for version in self.catalog.list_dataset_versions(dataset.name)
        }
        return {v.digest for v in before} - kept

    def _forget_derived(self, digests: set[Digest]) -> None:
        if self.on_erase is not None and digests:
            self.on_erase(digests)

    def _delete_unused_profiles(self, digests: set[Digest]) -> None:
        """Delete replaced profiles: their top values and samples may hold erased values.

        A profile blob is content-addressed, so another version (of any dataset)
        may share it; only those no version refers to any more are deleted.
        """
        if self.artifacts is None:
            return
        in_use = {
            version.profile_digest
            for dataset in self.catalog.list_datasets()
            for version in self.catalog.list_dataset_versions(dataset.name)
        }
        for digest in digests - in_use:
            self.artifacts.delete(digest)

    # -- history -------------------------------------------------------------------------------

    def history(self, name: str) -> list[DatasetVersion]:
        """Every version of ``name``, oldest first."""
        return self.catalog.list_dataset_versions(name)

    def policy(self, ref: str | DatasetVersion) -> list[PolicyFinding]:
        """The policy findings recorded on a version (``bike/3`` or its record).

        Columns that look like personal data (e-mail, phone, IP address, card
        number, a listed name) or are on the deny-list, as found at registration;
        the registry's gates use them to refuse models trained on denied columns.
        """
        found = self.get(ref) if isinstance(ref, str) else ref
        return [PolicyFinding.from_dict(item) for item in found.policy]

    def list(self) -> list[Dataset]:
        """Every dataset, by name."""
        return self.catalog.list_datasets()

    def diff(self, name: str, old: int, new: int) -> DatasetDiff:
        """Rows added, removed and changed (by key), schema and distribution changes."""
        first = self.catalog.get_dataset_version(name, old)
        second = self.catalog.get_dataset_version(name, new)
        key = self.catalog.get_dataset(name).key
        return diff_tables(
            self._read(first), self._read(second), name=name, versions=(old, new), key=key
        )


def _read_fingerprinted(
    source: object, path: Path | None
) -> tuple[pa.Table, str, SourceFingerprint | None]:
    """``read_source``, and for a single file its fingerprint, hashed while it is decoded."""
    if path is None:
        return (*read_source(source), None)
    state = file_state(path)
    with ThreadPoolExecutor(max_workers=1) as pool:  # hashlib releases the GIL
        hashed = pool.submit(file_fingerprint, path)
        raw, described = read_source(source)
        fingerprint = hashed.result()
    if state is None or file_state(path) != state:  # written while read: remember nothing
        fingerprint = None
    return raw, described, fingerprint


def _row_numbers(start: int, count: int) -> pa.Array:
    """``start .. start + count - 1`` as int64, built by numpy (``range`` boxed every int)."""
    return pa.array(np.arange(start, start + count, dtype=np.int64))


def _require_columns(table: pa.Table, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValidationFailed(
            f"the data for dataset '{name}' has no column(s) {missing} named as key or "
            f"time column; it has {table.column_names}"
        )


def _generation(table_name: str) -> int:
    """How many erasures moved the table (``datasets/_rewritten/bike/g2`` -> 2)."""
    found = re.fullmatch(rf"{_TABLES_PREFIX}/{_REWRITTEN}/.+/g([0-9]+)", table_name)
    return int(found[1]) if found else 0


def _table_names(name: str, generation: int) -> list[str]:
    """Every place the table of ``name`` has been, up to ``generation``."""
    return [
        f"{_TABLES_PREFIX}/{name}",
        *(f"{_TABLES_PREFIX}/{_REWRITTEN}/{name}/g{k}" for k in range(1, generation + 1)),
    ]


def _source_ref(described: str) -> str:
    """The lineage reference of a source: its description, cut to fit a reference.

    A long path keeps its first characters and ends in a hash of the whole, so
    two long sources stay two references.
    """
    ref = described if described.startswith(("file:", "sql:", "data:")) else f"memory:{described}"
    ref = ref.strip().replace("\x00", "")
    if len(ref) <= _MAX_SOURCE_REF:
        return ref
    whole = hashlib.sha256(ref.encode()).hexdigest()[:16]
    return f"{ref[: _MAX_SOURCE_REF - len(whole) - 3]}...{whole}"


def _table_schema(current: Any) -> pa.Schema | None:  # Any: a deltalake DeltaTable
    if current is None:
        return None
    return pa.schema(current.schema())


def _check_append(
    name: str,
    latest: DatasetVersion | None,
    existing: pa.Schema | None,
    table: pa.Table,
    *,
    merge: bool,
) -> None:
    if existing is None:
        return
    known = {f.name: canonical_type_text(f.type) for f in existing if f.name != ROW_COLUMN}
    new = {f.name: canonical_type_text(f.type) for f in table.schema}
    at = f"version {latest.version}" if latest else "the table"
    conflicts = [
        f"'{c}' is {known[c]} in {at} but {t} in the new rows"
        for c, t in new.items()
        if c in known and known[c] != t
    ]
    if conflicts:
        raise ValidationFailed(
            f"cannot append to dataset '{name}': column {'; '.join(conflicts)}; convert the "
            "column, register with mode='overwrite' to replace the table, or register a new "
            "dataset; the table is unchanged"
        )
    added = [c for c in new if c not in known]
    left_out = [c for c in known if c not in new]
    if (added or left_out) and not merge:
        parts = [
            f"new column(s) {added}" if added else "",
            f"no column(s) {left_out}" if left_out else "",
        ]
        raise ValidationFailed(
            f"cannot append to dataset '{name}': the new rows have "
            f"{' and '.join(p for p in parts if p)}; pass schema='merge' to evolve the schema, "
            "or mode='overwrite'; the table is unchanged"
        )


def canonical_type_text(type_: pa.DataType) -> str:
    """A column type as the canonical form names it (views and large types folded)."""
    return str(canonical(pa.table({"x": pa.array([], type=type_)})).schema.field("x").type)


def _files_in_row_order(delta: Any) -> list[tuple[str, int]] | None:  # Any: a DeltaTable
    """The version's data files as (path, first row), in row order, when each file's
    statistics show a contiguous run of row numbers and the runs cover ``0 .. rows - 1``."""
    actions = pa.table(delta.get_add_actions(flatten=True))
    low, high = f"min.{ROW_COLUMN}", f"max.{ROW_COLUMN}"
    if low not in actions.column_names or high not in actions.column_names:
        return None
    files = sorted(
        zip(
            actions.column(low).to_pylist(),
            actions.column(high).to_pylist(),
            actions.column("num_records").to_pylist(),
            actions.column("path").to_pylist(),
            strict=True,
        ),
        key=lambda file: (file[0] is None, file[0] or 0),
    )
    expected = 0
    for first, last, count, _ in files:
        if first != expected or last is None or count != last - first + 1:
            return None
        expected = last + 1
    return [(path, first) for first, _, _, path in files]


def _read_files(
    folder: Path, files: list[tuple[str, int]], names: list[str], *, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """Each file's batches in turn, with the columns it has; a row out of place is refused."""
    import pyarrow.parquet as pq  # noqa: PLC0415  (heavy; on first use)

    for path, first in files:
        # Pages read as decoded (a 1 MiB buffer), not whole column chunks up front.
        parquet = pq.ParquetFile(folder / path, buffer_size=1 << 20, pre_buffer=False)
        present = [n for n in names if n in parquet.schema_arrow.names]
        expected = first
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=[*present, ROW_COLUMN]):
            rows = batch.column(ROW_COLUMN).to_numpy()
            if not np.array_equal(rows, np.arange(expected, expected + len(rows))):
                raise MlcycleError(
                    f"the rows of {folder / path} are not in the order their numbers say; "
                    "the table was written by another tool: read it with load_table"
                )
            expected += len(rows)
            yield batch.drop_columns([ROW_COLUMN])


def _typed(
    batches: Iterator[pa.RecordBatch], schema: pa.Schema, *, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """Batches of at most ``batch_rows`` rows with ``schema``'s columns, in its order and
    types; a column a file lacks (added by a later merge) is null."""
    for batch in batches:
        columns = [
            batch.column(field.name).cast(field.type)
            if field.name in batch.schema.names
            else pa.nulls(batch.num_rows, field.type)
            for field in schema
        ]
        typed = pa.RecordBatch.from_arrays(columns, schema=schema)
        for start in range(0, typed.num_rows, batch_rows):
            yield typed.slice(start, batch_rows)
