"""Traffic policies: which variant of a deployment answers a request, and who gets a copy.

``single`` sends everything to its one answering variant. ``canary`` and
``ab`` split by weight: a request with a sticky key (the deployment's
``sticky_key``, read from a header or the first row) always lands on the same
variant, because the key's hash picks the point on the weight line; without
one the pick is random. Shadow variants never answer: they get a copy of
every request after the answer is sent (for any policy; ``shadow`` names
the policy whose point they are).
"""

from __future__ import annotations

import hashlib
import random
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.store import Deployment, Variant

if TYPE_CHECKING:
    from mlcycle.serve._batching import Batcher
    from mlcycle.serve._metrics import LaneMetrics
    from mlcycle.serve._model import ServedModel
    from mlcycle.serve._shadow import ShadowProcess

__all__ = ["Lane", "LaneQueue", "Routes", "implicit_deployment"]

_HASH_SPAN = float(1 << 64)


class LaneQueue(Protocol):
    """Where a lane's requests wait: a ``Batcher`` (answering) or a ``ShadowProcess``."""

    async def close(self) -> None:
        """Predict what waits, then stop."""
        ...


QueueT = TypeVar("QueueT", bound=LaneQueue)


@dataclass(frozen=True, eq=False)
class Lane(Generic[QueueT]):
    """One variant being served: its model, the queue its requests wait in, its metrics."""

    variant: Variant
    model: ServedModel
    queue: QueueT
    metrics: LaneMetrics


@dataclass(frozen=True, eq=False)
class Routes:
    """A deployment's lanes at one moment; a change builds new ``Routes`` and swaps them in."""

    deployment: Deployment
    answering: tuple[Lane[Batcher], ...]
    shadows: tuple[Lane[ShadowProcess], ...]
    _bounds: list[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        total = sum(lane.variant.weight for lane in self.answering)
        object.__setattr__(
            self,
            "_bounds",
            [edge / total for edge in accumulate(lane.variant.weight for lane in self.answering)],
        )

    @property
    def lanes(self) -> tuple[Lane[Batcher] | Lane[ShadowProcess], ...]:
        """Every lane, answering ones first."""
        return self.answering + self.shadows

    def choose(self, key: str | None) -> Lane[Batcher]:
        """The lane that answers a request with sticky ``key`` (``None``: none given)."""
        if len(self.answering) == 1:
            return self.answering[0]
        if key is None:
            point = random.random()  # noqa: S311  (a traffic split, not a secret)
        else:
            digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
            point = int.from_bytes(digest, "big") / _HASH_SPAN
        index = min(bisect_right(self._bounds, point), len(self.answering) - 1)
        return self.answering[index]

    def for_version(self, version: str) -> Lane[Batcher]:
        """The answering lane serving model version ``version`` (the v2 ``/versions/{v}``)."""
        for lane in self.answering:
            if str(lane.model.version) == version:
                return lane
        served = ", ".join(str(lane.model.version) for lane in self.answering)
        raise NotFound(
            f"deployment '{self.deployment.name}' serves no version {version!r} "
            f"(it serves version {served})"
        )


def implicit_deployment(ref: str) -> Deployment:
    """The single-variant deployment ``mlcycle serve models:/NAME@ALIAS`` serves.

    >>> implicit_deployment("models:/bike-demand@production").variants[0].model
    'bike-demand@production'
    """
    from mlcycle.data import parse_ref  # noqa: PLC0415  (light; only for this form)

    parsed = parse_ref(ref, kind="models")
    if parsed.kind != "models":
        raise ValidationFailed(f"{ref!r} names a dataset; serve a model: 'models:/NAME@ALIAS'")
    model = parsed.name
    if parsed.version is not None:
        model = f"{parsed.name}/{parsed.version}"
    elif parsed.alias is not None:
        model = f"{parsed.name}@{parsed.alias}"
    return Deployment(name=parsed.name, variants=(Variant(name="primary", model=model),))
