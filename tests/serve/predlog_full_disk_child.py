"""A prediction log whose disk fills up mid-write and is freed again (a file size limit).

Usage: python predlog_full_disk_child.py ROOT

Logs 10 rows, lowers the process's file size limit so the next 1,000 rows
fail part-way through their write, raises it again and logs 10 more, then
closes the log. The test reads what reached the table.
"""

from __future__ import annotations

import resource
import signal
import sys
from pathlib import Path

import numpy as np

from mlcycle.serve import PredictionBatch, PredictionLog
from mlcycle.store import LocalArtifactStore


def batch(first: int, rows: int) -> PredictionBatch:
    return PredictionBatch(
        deployment="bikes",
        model="bikes",
        model_version=3,
        variant="primary",
        shadow=False,
        request_ids=[f"r{first + i}" for i in range(rows)],
        row_indexes=[0] * rows,
        times=[1.9e9] * rows,
        latency_ms=[1.0] * rows,
        inputs={"hr": np.arange(rows, dtype=np.float64)},
        outputs=np.arange(rows, dtype=np.float64),
    )


def main() -> None:
    root = Path(sys.argv[1])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write over the limit fails with EFBIG
    log = PredictionLog(spool_dir=root / "spool", tables=LocalArtifactStore(root=root / "tables"))
    log.append(batch(0, 10))
    log.flush()
    [segment] = (root / "spool").glob("*/*.arrows")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (segment.stat().st_size + 200, hard))  # full
    log.append(batch(1000, 1000))
    log.flush()
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space freed
    log.append(batch(5000, 10))
    log.flush()
    log.close()


if __name__ == "__main__":
    main()
