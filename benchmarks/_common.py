"""What the benchmark scripts share."""

from __future__ import annotations

import os


def loadavg() -> str:
    """The 1/5/15-minute load average, printed with every figure: this machine is shared."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"
