"""A server stand-in for the prediction log's process tests: appends batches at a steady rate.

Usage: python predlog_child.py HOME DEPLOYMENT COUNT INTERVAL_S ROLL_BYTES

Prints ``<index> <time>`` after each append. Stops after COUNT batches (0:
until signalled); SIGTERM stops it gracefully, closing the log.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from mlcycle.serve import PredictionBatch, PredictionLog, spool_dir
from mlcycle.settings import Settings
from mlcycle.store import LocalArtifactStore


def main() -> None:
    home, deployment, count, interval, roll_bytes = sys.argv[1:6]
    settings = Settings(home=Path(home))
    tables = LocalArtifactStore(root=settings.workspace_dir / "artifacts")
    log = PredictionLog(spool_dir=spool_dir(settings), tables=tables, roll_bytes=int(roll_bytes))
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    index = 0
    while not stopping and (int(count) == 0 or index < int(count)):
        now = time.time()
        log.append(
            PredictionBatch(
                deployment=deployment,
                model="bike-demand",
                model_version=1,
                variant="primary",
                shadow=False,
                request_ids=[f"{deployment}-{index}", f"{deployment}-{index}"],
                row_indexes=[0, 1],
                times=[now, now],
                latency_ms=[0.5, 0.5],
                inputs={"hr": [index % 24, 3], "temp": [0.25, 0.5]},
                outputs=[float(index), 1.0],
            )
        )
        print(index, now, flush=True)
        index += 1
        if float(interval):
            time.sleep(float(interval))
    log.close()
    print("closed", flush=True)


if __name__ == "__main__":
    main()
