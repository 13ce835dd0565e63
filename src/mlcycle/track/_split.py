"""How a run split its data into training and test rows, recorded so a gate can check it later.

A model's test metrics mean something only on rows training never saw. A run
records its split once, as the tag ``mlcycle.split`` (JSON): the dataset
version, and either a time cut-off (train
rows have ``time <= train_until``, test rows ``time >= test_from``) or the
key columns, whose train key values are stored as a sorted array of 64-bit
digests (artifact ``mlcycle/split-train-keys.u64``; no key value is kept).
``Split.overlap`` then counts the rows of any test set that were in training.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson

from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.ids import Digest
from mlcycle.store import ArtifactStore, DatasetVersion, Run

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    from mlcycle.track._runs import ActiveRun

__all__ = ["SPLIT_KEYS_ARTIFACT", "SPLIT_TAG", "Split", "record_split"]

SPLIT_TAG = "mlcycle.split"
SPLIT_KEYS_ARTIFACT = "mlcycle/split-train-keys.u64"
_SEPARATOR = "\x1f"
TimeValue = str | int | float | date | datetime


@dataclass(frozen=True, eq=False)
class Split:
    """A recorded train/test split: a time cut-off, train key digests, or both.

    ``train_until`` and ``test_from`` are stored as text (ISO 8601 for times)
    or numbers; ``time_kind`` says which. ``train_keys`` holds the sorted
    64-bit digests of the train rows' key values (compared as text).
    """

    dataset: str
    time_column: str | None = None
    train_until: str | float | None = None
    test_from: str | float | None = None
    time_kind: Literal["datetime", "number"] | None = None
    key: tuple[str, ...] = ()
    train_rows: int = 0
    test_rows: int | None = None
    keys_digest: Digest | None = None
    train_keys: npt.NDArray[np.uint64] | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        """``time``, ``keys`` or ``time+keys``: how rows are told apart."""
        parts = (["time"] if self.time_column else []) + (["keys"] if self.key else [])
        return "+".join(parts)

    def train_mask(self, frame: pd.DataFrame) -> npt.NDArray[np.bool_]:
        """Which rows of ``frame`` the recorded training used (by every criterion recorded)."""
        import numpy as np  # noqa: PLC0415  (numpy only when a split is used)

        mask = np.ones(len(frame), dtype=bool)
        if self.time_column is not None and self.train_until is not None:
            mask &= _as_bool(self._times(frame) <= _bound(self.train_until, self.time_kind))
        if self.key:
            mask &= np.isin(key_digests(frame, self.key), self._keys())
        return mask

    def test_mask(self, frame: pd.DataFrame) -> npt.NDArray[np.bool_]:
        """Which rows of ``frame`` lie on the test side: from ``test_from``, keys not trained on."""
        import numpy as np  # noqa: PLC0415  (numpy only when a split is used)

        mask = np.ones(len(frame), dtype=bool)
        if self.time_column is not None and self.test_from is not None:
            mask &= _as_bool(self._times(frame) >= _bound(self.test_from, self.time_kind))
        if self.key:
            mask &= ~np.isin(key_digests(frame, self.key), self._keys())
        return mask

    def overlap(self, test: pd.DataFrame) -> int:
        """How many rows of ``test`` were in training."""
        return int(self.train_mask(test).sum())

    def to_dict(self) -> dict[str, Any]:  # Any: JSON values
        """The split as the ``mlcycle.split`` tag stores it (without the key digests)."""
        return {
            "dataset": self.dataset,
            "kind": self.kind,
            "time_column": self.time_column,
            "train_until": self.train_until,
            "test_from": self.test_from,
            "time_kind": self.time_kind,
            "key": list(self.key),
            "train_rows": self.train_rows,
            "test_rows": self.test_rows,
            "keys_digest": self.keys_digest,
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],  # Any: JSON values
        *,
        train_keys: npt.NDArray[np.uint64] | None = None,
    ) -> Split:
        """Read a split written by ``to_dict``; ``train_keys`` are the digests it names."""
        try:
            digest = data.get("keys_digest")
            return cls(
                dataset=str(data["dataset"]),
                time_column=data.get("time_column"),
                train_until=data.get("train_until"),
                test_from=data.get("test_from"),
                time_kind=data.get("time_kind"),
                key=tuple(str(name) for name in data.get("key", ())),
                train_rows=int(data.get("train_rows", 0)),
                test_rows=None if data.get("test_rows") is None else int(data["test_rows"]),
                keys_digest=None if digest is None else Digest(str(digest)),
                train_keys=train_keys,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationFailed(f"not a recorded split: {exc}") from exc

    @classmethod
    def from_run(cls, run: Run, *, artifacts: ArtifactStore) -> Split:
        """The split ``run`` recorded, its train key digests read from ``artifacts``.

        Raises:
            NotFound: the run recorded no split.
        """
        text = run.tags.get(SPLIT_TAG)
        if text is None:
            raise NotFound(
                f"run {run.id} recorded no split; call run.log_split(dataset, train, test, "
                "time_column=... or key=...) where it splits its data"
            )
        import numpy as np  # noqa: PLC0415  (numpy only when a split is used)

        data = orjson.loads(text)
        keys = None
        if data.get("keys_digest"):
            with artifacts.open(Digest(data["keys_digest"])) as stream:
                keys = np.frombuffer(stream.read(), dtype="<u8").astype(np.uint64)
        return cls.from_dict(data, train_keys=keys)

    def _keys(self) -> npt.NDArray[np.uint64]:
        if self.train_keys is None:
            raise ValidationFailed(
                f"the split of {self.dataset} records keys {list(self.key)} but its train key "
                "digests were not loaded; read it with Split.from_run(run, artifacts=...)"
            )
        return self.train_keys

    def _times(self, frame: pd.DataFrame) -> Any:  # Any: a pandas Series
        import pandas as pd  # noqa: PLC0415  (pandas comes with the frame)

        column = self.time_column
        if column not in frame.columns:
            raise ValidationFailed(
                f"the data has no column {column!r}, which the split of {self.dataset} "
                "cuts by time; pass rows that include it"
            )
        values = frame[column]
        return pd.to_datetime(values) if self.time_kind == "datetime" else values


def key_digests(frame: pd.DataFrame, key: Sequence[str]) -> npt.NDArray[np.uint64]:
    """One 64-bit BLAKE2b digest per row of the ``key`` columns' values, compared as text."""
    import numpy as np  # noqa: PLC0415  (numpy only when a split is used)

    missing = [name for name in key if name not in frame.columns]
    if missing:
        raise ValidationFailed(
            f"the data has no key column(s) {missing}; the split identifies rows by {list(key)}"
        )
    text = frame[list(key)].astype(str)
    rows = text.iloc[:, 0]
    for position in range(1, len(key)):
        rows = rows + _SEPARATOR + text.iloc[:, position]
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "little")
            for value in rows.tolist()
        ),
        dtype=np.uint64,
        count=len(frame),
    )


def record_split(
    run: ActiveRun,
    dataset: str | DatasetVersion,
    train: pd.DataFrame,
    test: pd.DataFrame | None = None,
    *,
    time_column: str | None = None,
    train_until: TimeValue | None = None,
    test_from: TimeValue | None = None,
    key: str | Sequence[str] | None = None,
) -> Split:
    """Check and record a run's split (see ``ActiveRun.log_split``)."""
    import numpy as np  # noqa: PLC0415  (numpy only when a split is used)

    if time_column is None and key is None:
        raise ValidationFailed(
            "log_split needs time_column=... (a cut-off in time) or key=... (the columns "
            "that identify a row), so the gates can check the test rows were not trained on"
        )
    ref = dataset.ref if isinstance(dataset, DatasetVersion) else _dataset_ref(dataset)
    split = Split(dataset=ref, train_rows=len(train), test_rows=None if test is None else len(test))
    if time_column is not None:
        split = _with_cutoff(split, train, test, time_column, train_until, test_from)
    if key is not None:
        names = (key,) if isinstance(key, str) else tuple(key)
        digests = np.unique(key_digests(train, names))
        data = digests.astype("<u8").tobytes()
        record = run.log_artifact(data, SPLIT_KEYS_ARTIFACT)
        split = replace(split, key=names, keys_digest=record.digest, train_keys=digests)
    if test is not None:
        _check_disjoint(split, test)
    run.set_tag(SPLIT_TAG, orjson.dumps(split.to_dict()).decode())
    return split


def _dataset_ref(text: str) -> str:
    return text if ":/" in text else f"data:/{text}"


def _with_cutoff(  # noqa: PLR0917  (private: one call site, the names read alike)
    split: Split,
    train: pd.DataFrame,
    test: pd.DataFrame | None,
    column: str,
    train_until: TimeValue | None,
    test_from: TimeValue | None,
) -> Split:
    import pandas as pd  # noqa: PLC0415  (pandas comes with the frames)

    if column not in train.columns:
        raise ValidationFailed(f"the train rows have no time column {column!r}")
    values = train[column]
    kind: Literal["datetime", "number"] = "number"
    if not pd.api.types.is_numeric_dtype(values) or isinstance(train_until, str | date):
        kind = "datetime"
    until = _stored(train_until, kind) if train_until is not None else None
    start = _stored(test_from, kind) if test_from is not None else None
    if until is None:
        until = _stored(_convert(values, kind).max(), kind)
    late = int((_convert(values, kind) > _bound(until, kind)).sum())
    if late:
        raise ValidationFailed(
            f"{late} of the {len(train)} train rows have {column} after train_until ({until}); "
            "pass the rows training used, or the cut-off they were selected by"
        )
    if start is None and test is not None and len(test):
        start = _stored(_convert(test[column], kind).min(), kind)
    if until is not None and start is not None and _bound(start, kind) <= _bound(until, kind):
        raise ValidationFailed(
            f"test_from ({start}) must come after train_until ({until}): rows at the same time "
            "would be on both sides of the split"
        )
    return replace(split, time_column=column, train_until=until, test_from=start, time_kind=kind)


def _check_disjoint(split: Split, test: pd.DataFrame) -> None:
    overlap = split.overlap(test)
    if overlap:
        raise ValidationFailed(
            f"{overlap} of the {len(test)} test rows are also training rows of {split.dataset} "
            f"(by {split.kind}); split the data so no test row is trained on"
        )


def _convert(values: Any, kind: str) -> Any:  # Any: a pandas Series
    import pandas as pd  # noqa: PLC0415  (pandas comes with the frames)

    return pd.to_datetime(values) if kind == "datetime" else values


def _stored(value: Any, kind: str) -> str | float:  # Any: a time or a number
    import pandas as pd  # noqa: PLC0415  (pandas comes with the frames)

    if kind == "datetime":
        return str(pd.Timestamp(value).isoformat())
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"split bound {value!r} is not a number like its column") from exc
    return int(number) if number.is_integer() else number


def _bound(value: str | float, kind: str | None) -> Any:  # Any: a Timestamp or a number
    import pandas as pd  # noqa: PLC0415  (pandas comes with the frames)

    return pd.Timestamp(value) if kind == "datetime" else value


def _as_bool(values: Any) -> npt.NDArray[np.bool_]:  # Any: a pandas Series of comparisons
    import numpy as np  # noqa: PLC0415  (numpy only when a split is used)

    return np.asarray(values, dtype=bool)
