"""STYLE.md #17: ``mypy --strict`` is clean on ``shmlayer`` and ``interface``.

Runs the real mypy (a test dependency, see setup.py's ``test`` extra) in a subprocess from
the repository root, so ``mypy.ini`` there applies; the cache goes under ``tmp_path`` so a
stale cache from an earlier tree can never hide an error.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("shmlayer", "interface")


def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "mypy_cache"), *PACKAGES],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert proc.returncode == 0, (
        f"mypy --strict {' '.join(PACKAGES)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    )
