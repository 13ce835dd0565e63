"""Throwaway virtual environments for the incumbent tools the benchmarks compare against.

Their pins conflict with ours, so each lives in ``benchmarks/.work/<name>-venv``,
never in our lock, and is reused while it already has the wanted version.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
UV = Path(sys.executable).parent / "uv"


def incumbent_python(
    distribution: str,
    version: str,
    *,
    requirement: str | None = None,
    pins: Sequence[str] = (),
    venv: Path | None = None,
    log: Callable[[str], None],
) -> Path:
    """The Python of ``benchmarks/.work/<distribution>-venv`` with ``distribution==version``.

    ``requirement`` is what to install when it differs from the distribution's
    name (an extra, say); ``pins`` are further exact requirements; ``venv``
    puts the environment elsewhere (tests cache theirs outside the checkout).
    """
    venv = venv or WORK / f"{distribution}-venv"
    python = venv / "bin" / "python"
    if python.exists():
        probe = subprocess.run(
            [
                str(python),
                "-c",
                f"import importlib.metadata as m; print(m.version({distribution!r}))",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.stdout.strip() == version:
            log(f"reusing {distribution} {version} in {venv}")
            return python
    log(f"installing {distribution} {version} into {venv}")
    base_python = os.path.realpath(sys.executable)
    subprocess.run(
        [str(UV), "venv", "-q", "--clear", "--python", base_python, str(venv)], check=True
    )
    subprocess.run(
        [
            str(UV),
            "pip",
            "install",
            "-q",
            "--compile-bytecode",
            "--python",
            str(python),
            f"{requirement or distribution}=={version}",
            *pins,
        ],
        check=True,
    )
    return python
