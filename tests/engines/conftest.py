"""One local Ray (2 CPUs) for the whole test session: starting Ray costs seconds, so every Ray test shares it.
Ray tests skip, saying why, where the extra is not installed; `make test` installs it, so there they run."""

from __future__ import annotations

import pytest

RAY_MISSING = "the ray extra is not installed (pip install 'auditor[ray]')"


@pytest.fixture(scope="session")
def ray_session():
    pytest.importorskip("ray", reason=RAY_MISSING)
    pytest.importorskip("ray.data", reason=RAY_MISSING)
    from auditor.engines.ray_engine import RayEngine

    with RayEngine(workers=2, address="local").session() as ray:  # a local Ray even where RAY_ADDRESS is set
        yield ray
