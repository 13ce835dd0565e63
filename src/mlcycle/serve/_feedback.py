"""Feedback: ground-truth labels for served predictions, so monitoring sees real performance.

Labels arrive late and sometimes twice, from a caller (``record``, the
server's ``:feedback`` route) or from a dataset joined on the deployment's
key columns (``join``). Each call appends rows to the Delta table
``feedback/<deployment>`` in the artifact store's table area; nothing is
updated in place, and at read time the label recorded last for a
``(request_id, row_index)`` wins. A label for a request id the prediction
log does not know (yet) is kept and reported back: it may belong to a
prediction still in another machine's spool.

Columns: ``request_id, row_index, label, labelled_at, source``. Numeric
labels are stored as float64 (as outputs are), booleans as 1.0 and 0.0 (a
two-class target, which monitoring scores as classification), text labels
as strings; a deployment's labels are one or the other.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.errors import ValidationFailed
from mlcycle.serve._predictions import aware_utc, logged_request_ids, read_predictions
from mlcycle.store import check_deployment_name

if TYPE_CHECKING:
    from mlcycle.clock import Clock
    from mlcycle.store import Deployment, TableArea

__all__ = ["FeedbackLog", "Label", "Receipt", "feedback_table_name"]

Label = tuple[str, Any] | tuple[str, int, Any]  # Any: a number, a boolean or a string
"""``(request_id, label)``, or ``(request_id, row_index, label)`` for a row of a larger request."""

_KEY = ["request_id", "row_index"]
_MAX_ROW_INDEX = 2**31 - 1
"""The largest row index a label can name (the log stores them as int32)."""
_MAX_EXACT = 2**53
"""The largest integer label float64 holds exactly (and so the largest Arrow converts)."""
_COMMIT_RETRIES = 20
MAX_REQUEST_ID = 200
"""The longest request id (characters) a label, and so a request's ``x-request-id``, may be."""
_STORED = pa.schema(
    [
        pa.field("request_id", pa.string()),
        pa.field("row_index", pa.int32()),
        pa.field("label", pa.float64()),  # or pa.string(): a deployment's labels are one kind
        pa.field("labelled_at", pa.timestamp("us", tz="UTC")),
        pa.field("source", pa.string()),
    ]
)


def feedback_table_name(deployment: str) -> str:
    """The table-area name of a deployment's labels."""
    return f"feedback/{check_deployment_name(deployment)}"


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a feedback call stored.

    ``unknown``: request ids (of ``record``) not in the prediction log when
    the labels were stored; ``unmatched``: logged predictions that no row of
    the dataset (of ``join``) labelled.
    """

    recorded: int
    unknown: tuple[str, ...] = ()
    unmatched: int = 0


class FeedbackLog:
    """Labels of every deployment: ``record``, ``join``, and reads with the last label winning."""

    def __init__(self, *, tables: TableArea, spool_dir: Path, clock: Clock) -> None:
        self.tables = tables
        self.spool_dir = spool_dir
        self.clock = clock

    def record(self, deployment: str, labels: Sequence[Label], *, source: str = "api") -> Receipt:
        """Store ``labels`` for predictions of ``deployment``; unknown request ids are reported.

        Raises ``ValidationFailed`` naming the first bad label; then nothing is stored.
        """
        table = _labels_table(deployment, labels)
        known = self._logged_ids(deployment, table.column("request_id"))
        self._append(deployment, table, source)
        ids = dict.fromkeys(table.column("request_id").to_pylist())
        return Receipt(recorded=table.num_rows, unknown=tuple(i for i in ids if i not in known))

    def join(
        self,
        deployment: Deployment,
        data: pa.Table,
        *,
        label_column: str,
        source: str,
        since: datetime | None = None,
    ) -> Receipt:
        """Label the logged predictions of ``deployment`` from ``data``, matched on its key columns.

        Each key must identify one row of ``data``. A key column of ``data``
        is compared in the type its input is logged in, cast only when the
        cast changes no value: numbers to float64 (integers up to 2**53),
        text to strings, date-times to the log's unit (refused for a value
        finer than it) and zone, dates to their midnight. Text for a number
        would compare spellings (``"1.0"`` is not ``"1"``), and a zoned
        date-time for a naive one would need a zone the naive ones lack, so
        those are refused, not guessed.

        With no prediction logged (since ``since``), ``data`` is still
        checked, nothing is stored and ``Receipt(recorded=0)`` comes back
        rather than an error: a joined label is stored under the request id
        of the prediction it matched, so unlike ``record``'s labels for
        unknown ids there is none to keep it under. Join again once
        predictions are logged.

        Raises ``ValidationFailed`` when the deployment has no key columns, a
        key or the label column is missing, a key's type or values do not fit
        the logged ones, or keys repeat; then nothing is stored.
        """
        keys = list(deployment.key_columns)
        if not keys:
            raise ValidationFailed(
                f"deployment '{deployment.name}' has no key columns to join labels on; set them "
                f"with `mlcycle deploy {deployment.name} --model ... --key-columns COL,COL`"
            )
        _require(data, [*keys, label_column], f"the labels' data ({source})")
        right = _unique_keys(data, keys, label_column, source)
        logged = self._predictions(deployment.name, since=since)
        if not logged.num_rows:
            return Receipt(recorded=0)
        left = _logged_keys(logged, keys, deployment.name)
        right = _as_logged(right, left.schema, source=source, deployment=deployment.name)
        matched = left.join(right, keys=keys, join_type="inner", use_threads=False)
        matched = matched.group_by(_KEY, use_threads=False).aggregate([("label", "last")])
        table = pa.table(
            {
                "request_id": matched.column("request_id"),
                "row_index": matched.column("row_index"),
                "label": matched.column("label_last"),
            }
        )
        if table.num_rows:
            self._append(deployment.name, table, source)
        distinct = left.group_by(_KEY, use_threads=False).aggregate([]).num_rows
        return Receipt(recorded=table.num_rows, unmatched=distinct - table.num_rows)

    def read(
        self, deployment: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> pa.Table:
        """The latest label of each labelled row, labelled in ``[since, until)``.

        Labels older than ``since`` are left out of the scan: a row whose
        latest label is in the window keeps it, and a row labelled only before
        it is left out either way.
        """
        condition = _window(since, until)
        stored = self._stored(deployment, since=since)
        if stored is None:
            return _empty_feedback()
        latest = stored.group_by(_KEY, use_threads=False).aggregate(
            [("label", "last"), ("labelled_at", "last"), ("source", "last")]
        )
        latest = latest.rename_columns(
            {"label_last": "label", "labelled_at_last": "labelled_at", "source_last": "source"}
        )
        if condition is not None:
            latest = latest.filter(condition)
        return latest.sort_by([("labelled_at", "ascending"), ("request_id", "ascending")])

    def labelled(
        self,
        deployment: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        variant: str | None = None,
    ) -> pa.Table:
        """Predictions in ``[since, until)`` with their latest label and the label's delay.

        Every prediction row is kept; an unlabelled one has nulls in ``label``,
        ``labelled_at`` and ``label_delay_s`` (seconds from prediction to label).
        """
        logged = read_predictions(
            spool_dir=self.spool_dir,
            tables=self.tables,
            deployment=deployment,
            since=since,
            until=until,
            variant=variant,
        )
        labels = self.read(deployment).drop_columns(["source"])
        # Arrow joins carry no nested columns (inputs, list outputs): join the keys and each
        # row's position, then put the labels next to the rows in their order.
        keys = logged.select(_KEY).append_column(
            "_at", pa.array(range(logged.num_rows), pa.int64())
        )
        found = keys.join(labels, keys=_KEY, join_type="left outer", use_threads=False)
        found = found.sort_by("_at")
        delay = pc.divide(
            pc.cast(pc.subtract(found.column("labelled_at"), logged.column("time")), pa.int64()),
            1e6,
        )
        return (
            logged.append_column("label", found.column("label"))
            .append_column("labelled_at", found.column("labelled_at"))
            .append_column("label_delay_s", delay)
        )

    def _predictions(self, deployment: str, *, since: datetime | None) -> pa.Table:
        return read_predictions(  # the join needs no order: unsorted saves a pass over all
            spool_dir=self.spool_dir,
            tables=self.tables,
            deployment=deployment,
            since=since,
            ordered=False,
        )

    def _logged_ids(self, deployment: str, ids: pa.ChunkedArray) -> set[str]:
        return logged_request_ids(
            spool_dir=self.spool_dir,
            tables=self.tables,
            deployment=deployment,
            ids=pc.unique(ids.combine_chunks()),
        )

    def _stored(self, deployment: str, *, since: datetime | None = None) -> pa.Table | None:
        from deltalake import DeltaTable, QueryBuilder  # noqa: PLC0415  (heavy; on first use)
        from deltalake.exceptions import TableNotFoundError  # noqa: PLC0415

        uri = self.tables.table_uri(feedback_table_name(deployment))
        try:
            delta = DeltaTable(uri, storage_options=self.tables.storage_options() or None)
        except TableNotFoundError:
            return None
        # DataFusion's scan, as datasets are read (see DatasetRegistry._read_delta); the order
        # of the appends is kept by sorting on the time each label was recorded.
        query = 'SELECT * FROM "t"'
        if since is not None:  # files whose statistics end before it are not read
            start = aware_utc(since).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            query += f""" WHERE "labelled_at" >= TIMESTAMP '{start}'"""
        found = pa.table(QueryBuilder().register("t", delta).execute(query))
        label = pa.string() if _kind(found.schema.field("label").type) == "text" else pa.float64()
        found = found.select([*_STORED.names, "seq"]).cast(
            pa.schema([*_STORED, pa.field("seq", pa.int64())]).set(2, pa.field("label", label))
        )
        return found.sort_by([("labelled_at", "ascending"), ("seq", "ascending")]).drop_columns(
            ["seq"]
        )

    def _append(self, deployment: str, table: pa.Table, source: str) -> None:
        from deltalake import write_deltalake  # noqa: PLC0415  (heavy; on first use)
        from deltalake.exceptions import CommitFailedError, SchemaMismatchError  # noqa: PLC0415

        stored = self._stored_label_type(deployment)
        if stored is not None and stored != table.schema.field("label").type:
            raise ValidationFailed(
                f"deployment '{deployment}' has {_kind(stored)} labels; these are "
                f"{_kind(table.schema.field('label').type)}: send labels of one kind"
            )
        stamp = pa.scalar(self.clock.now(), pa.timestamp("us", tz="UTC"))
        rows = table.num_rows
        full = table.append_column("labelled_at", pa.array([stamp.as_py()] * rows, stamp.type))
        full = full.append_column("source", pa.array([source] * rows, pa.string()))
        full = full.append_column("seq", pa.array(range(rows), pa.int64()))
        uri = self.tables.table_uri(feedback_table_name(deployment))
        options = self.tables.storage_options() or None
        for attempt in range(_COMMIT_RETRIES):
            try:
                write_deltalake(uri, full, mode="append", storage_options=options)
                return
            except SchemaMismatchError as exc:  # another writer stored the other kind first
                raise ValidationFailed(
                    f"deployment '{deployment}' stores labels of another kind: {exc}"
                ) from None
            except CommitFailedError:
                if attempt == _COMMIT_RETRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))

    def _stored_label_type(self, deployment: str) -> pa.DataType | None:
        from deltalake import DeltaTable  # noqa: PLC0415  (heavy; on first use)
        from deltalake.exceptions import TableNotFoundError  # noqa: PLC0415

        uri = self.tables.table_uri(feedback_table_name(deployment))
        try:
            delta = DeltaTable(uri, storage_options=self.tables.storage_options() or None)
        except TableNotFoundError:
            return None
        found = pa.schema(delta.schema().to_arrow()).field("label").type
        return pa.string() if _kind(found) == "text" else pa.float64()


def _labels_table(deployment: str, labels: object) -> pa.Table:
    """Checked labels as columns ``request_id, row_index, label``."""
    check_deployment_name(deployment)
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
        raise ValidationFailed(
            "labels must be a list of (request_id, label) or (request_id, row_index, label)"
        )
    if not labels:
        raise ValidationFailed("no labels given; send at least one (request_id, label)")
    ids, indexes, values = [], [], []
    for position, item in enumerate(labels):
        request_id, row_index, value = _one_label(position, item)
        ids.append(request_id)
        indexes.append(row_index)
        values.append(value)
    return pa.table(
        {
            "request_id": pa.array(ids, pa.string()),
            "row_index": pa.array(indexes, pa.int32()),
            "label": _label_array(values, deployment),
        }
    )


def _one_label(position: int, item: object) -> tuple[str, int, Any]:  # Any: the label
    where = f"label {position}"
    if not isinstance(item, tuple) or len(item) not in {2, 3}:
        raise ValidationFailed(
            f"{where} is {item!r}; give (request_id, label) or (request_id, row_index, label)"
        )
    request_id, row_index, value = (item[0], 0, item[1]) if len(item) == 2 else item
    if not isinstance(request_id, str) or not request_id or len(request_id) > MAX_REQUEST_ID:
        raise ValidationFailed(
            f"{where}: request_id must be a non-empty string of at most {MAX_REQUEST_ID} "
            f"characters, not {request_id!r}; use the request_id a prediction answered with"
        )
    if (
        isinstance(row_index, bool)
        or not isinstance(row_index, int)
        or not 0 <= row_index <= _MAX_ROW_INDEX
    ):
        raise ValidationFailed(
            f"{where} (request {request_id}): row_index must be an integer from 0 to "
            f"{_MAX_ROW_INDEX:,} (the row's position in its request), not {row_index!r}"
        )
    if not isinstance(value, (int, float, str)):  # a bool is an int: 1 or 0
        raise ValidationFailed(
            f"{where} (request {request_id}): the label must be a number, a boolean or a string, "
            f"not {value!r}"
        )
    if isinstance(value, int) and abs(value) > _MAX_EXACT:
        raise ValidationFailed(
            f"{where} (request {request_id}): the label {value} is past 2**53; numeric labels "
            "are stored as float64, which holds integers exactly only up to there"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationFailed(
            f"{where} (request {request_id}): the label is {value}; labels must be finite"
        )
    return request_id, row_index, value


def _label_array(values: Sequence[Any], deployment: str) -> pa.Array:  # Any: labels
    """Labels as float64 when all are numbers (booleans as 1 and 0), strings when all are text."""
    if all(isinstance(v, str) for v in values):
        return pa.array(values, pa.string())
    if not any(isinstance(v, str) for v in values):
        return pa.array(values, pa.float64())
    raise ValidationFailed(
        f"labels for deployment '{deployment}' mix numbers and strings; send one kind"
    )


def _kind(type_: pa.DataType) -> str:
    text = pa.types.is_string(type_) or pa.types.is_large_string(type_)
    return "text" if text or pa.types.is_string_view(type_) else "numeric"


def _require(table: pa.Table, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValidationFailed(f"{what} has no column(s) {missing}; it has {table.column_names}")


def _key(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A logged key column as keys are compared: numbers and booleans as float64."""
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return pc.cast(column, pa.float64())
    return column


def _logged_keys(logged: pa.Table, keys: list[str], deployment: str) -> pa.Table:
    """The ``request_id``, ``row_index`` and key inputs of each logged prediction row."""
    inputs = logged.column("inputs")
    missing = [key for key in keys if inputs.type.get_field_index(key) < 0]
    if missing:
        raise ValidationFailed(
            f"key column(s) {missing} of deployment '{deployment}' are not inputs of "
            "its logged predictions; key columns must be model inputs"
        )
    return pa.table(
        {
            "request_id": logged.column("request_id"),
            "row_index": logged.column("row_index"),
            **{key: _key(pc.struct_field(inputs, key)) for key in keys},
        }
    )


def _unique_keys(data: pa.Table, keys: list[str], label_column: str, source: str) -> pa.Table:
    """``data``'s keys and label, checked: one row per key.

    A row with a missing label or key (null, NaN) labels nothing, and is left
    out: a missing key matches no prediction, not even one logged without
    that input, so two such rows are no repeated key.
    """
    label = _label_column(data.column(label_column), label_column, source)
    right = pa.table({**{key: data.column(key) for key in keys}, "label": label})
    known = _present(label)
    for key in keys:
        known = pc.and_(known, _present(right.column(key)))
    right = right.filter(known)
    counts = right.group_by(keys, use_threads=False).aggregate([([], "count_all")])
    repeated = counts.filter(pc.greater(counts.column("count_all"), 1))
    if repeated.num_rows:
        first = {key: repeated.column(key)[0].as_py() for key in keys}
        raise ValidationFailed(
            f"{source} has {repeated.num_rows} key(s) on more than one row, such as {first}; "
            f"the key columns {keys} must identify one row"
        )
    return right


def _present(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Whether each value is there: neither null nor NaN."""
    known = pc.is_valid(column)
    if pa.types.is_floating(column.type):
        return pc.and_(known, pc.invert(pc.is_nan(column)))
    return known


def _label_column(column: pa.ChunkedArray, name: str, source: str) -> pa.ChunkedArray:
    """``column`` as labels are stored: numbers and booleans as float64, text as strings."""
    if pa.types.is_dictionary(column.type):  # a category column: its values are the labels
        column = pc.cast(column, column.type.value_type)
    kind = column.type
    numbers = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
    known = numbers or pa.types.is_boolean(kind) or _kind(kind) == "text"
    if not known and not pa.types.is_null(kind):  # nulls only: no labels, left out
        raise ValidationFailed(
            f"label column '{name}' of {source} is {kind}; labels must be numbers, booleans or "
            "text: pass another label_column, or store this one as one of those and register "
            "the data again"
        )
    try:  # safe: refuses an integer float64 would round
        return pc.cast(column, pa.string() if _kind(kind) == "text" else pa.float64())
    except pa.ArrowInvalid as exc:
        raise ValidationFailed(
            f"label column '{name}' of {source} has values float64 cannot hold exactly ({exc}); "
            "numeric labels are stored as float64: store the column as text and register the "
            "data again"
        ) from None


def _as_logged(right: pa.Table, logged: pa.Schema, *, source: str, deployment: str) -> pa.Table:
    """``right`` with each key column cast to the type of its logged column, where that is exact."""
    for key in right.column_names[:-1]:  # the keys, then the label
        column, wanted = right.column(key), logged.field(key).type
        if pa.types.is_dictionary(column.type):  # a category column: compare its values
            column = pc.cast(column, column.type.value_type)
        if column.type != wanted and not _exact_cast(column.type, wanted):
            raise ValidationFailed(
                f"key column '{key}' of {source} is {column.type}, but deployment "
                f"'{deployment}' logs it as {wanted}; store the column as {wanted} and register "
                "the data again"
            )
        try:
            column = pc.cast(column, wanted)  # safe: refuses to change a value
        except pa.ArrowInvalid as exc:
            raise ValidationFailed(
                f"key column '{key}' of {source} has values {wanted} cannot hold exactly ({exc}), "
                f"and deployment '{deployment}' logs it as {wanted}; store the column as "
                f"{wanted} and register the data again"
            ) from None
        right = right.set_column(right.schema.get_field_index(key), key, column)
    return right


def _exact_cast(found: pa.DataType, wanted: pa.DataType) -> bool:
    """Whether a safe cast from ``found`` to ``wanted`` keeps what each value means."""
    if pa.types.is_null(found):  # nulls only: missing keys, already left out
        return True
    numbers = pa.types.is_integer(found) or pa.types.is_floating(found)
    if numbers or pa.types.is_boolean(found):
        return bool(pa.types.is_float64(wanted))
    if _kind(found) == "text":
        return _kind(wanted) == "text"
    if pa.types.is_timestamp(found) and pa.types.is_timestamp(wanted):
        return (found.tz is None) == (wanted.tz is None)
    return pa.types.is_date(found) and pa.types.is_timestamp(wanted) and wanted.tz is None


def _window(since: datetime | None, until: datetime | None) -> pc.Expression | None:
    condition = None
    if since is not None:
        condition = pc.field("labelled_at") >= aware_utc(since)
    if until is not None:
        bound = pc.field("labelled_at") < aware_utc(until)
        condition = bound if condition is None else condition & bound
    return condition


def _empty_feedback() -> pa.Table:
    return _STORED.empty_table()
