"""One call that seeds the usual random generators and records the seed on the run.

``PYTHONHASHSEED`` cannot be changed from inside a running interpreter, so it
is only recorded (as the ``env.PYTHONHASHSEED`` tag, through the environment
allow-list), never set.
"""

from __future__ import annotations

import random
import sys
import threading

from mlcycle.errors import ValidationFailed
from mlcycle.track._runs import current_run

__all__ = ["seed_everything", "take_pending_seed"]

_MAX_SEED = 2**32 - 1
_pending: list[int] = []
_pending_lock = threading.Lock()


def seed_everything(seed: int) -> int:
    """Seed ``random``, NumPy (and PyTorch when it is loaded); record ``seed`` on the run.

    Without an active run in this thread, the seed is recorded on the next run started.

    >>> seed_everything(7)
    7
    >>> take_pending_seed()  # no run was active: the next run would have recorded it
    7
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _MAX_SEED:
        raise ValidationFailed(f"seed {seed!r} must be an int from 0 to {_MAX_SEED}")
    random.seed(seed)
    import numpy  # noqa: PLC0415  (numpy is only paid for by those who seed)

    numpy.random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:  # pragma: no cover - torch is not a dependency
        torch.manual_seed(seed)
    run = current_run()
    with _pending_lock:
        _pending[:] = [] if run is not None else [seed]
    if run is not None:
        run.set_seed(seed)
    return seed


def take_pending_seed() -> int | None:
    """The seed set while no run was active, once; ``None`` if there is none."""
    with _pending_lock:
        return _pending.pop() if _pending else None
