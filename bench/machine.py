"""The machine a benchmark ran on, printed beside its figures.

Inference speed differs about 3× in bfloat16 between machines with AMX and machines without it (README, Backbones),
and which precision `--precision auto` runs follows from that. A figure without this line cannot be compared with a
figure from another session.
"""

from __future__ import annotations

import os
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")


def cpu_bf16_features() -> str:
    try:
        flags = set(Path("/proc/cpuinfo").read_text(errors="ignore").split())
    except OSError:
        return "bf16 features unknown (no /proc/cpuinfo)"
    return ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in BF16_FLAGS)


def describe() -> str:
    """One line: cores, the CPU's bf16 features, what `--precision auto` runs here, the load average."""
    from auditor.engines.device import cpu_precision

    load = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "unknown"
    return (f"machine: {os.cpu_count()} cores; {cpu_bf16_features()}; `--precision auto` runs {cpu_precision()} "
            f"here (KERAS_BACKEND={os.environ.get('KERAS_BACKEND', 'tensorflow')}); load average {load}")
