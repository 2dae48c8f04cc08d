"""Small helpers the checks share: member descriptions, percentages, stable ids."""

from __future__ import annotations

from contextlib import contextmanager

from auditor.context import AuditContext
from auditor.report import stable_finding_id
from auditor.text import plural  # noqa: F401  (the checks' count-and-word, imported from here)


def members(ctx: AuditContext, positions: list[int]) -> list[dict]:
    return [
        {"path": ctx.records[p].path, "split": ctx.records[p].split, "label": ctx.records[p].label}
        for p in positions
    ]


# The pairs a group's finding lists (all are counted, `pairs_total`): a crowd of one picture's copies is a group whose
# members are all candidates of each other, 124 750 pairs at the 500 copies a crowd may reach, each a dict of evidence
# — repeated in every check that reports the group.
LISTED_PAIRS = 500


def listed_pairs(pairs: list[dict]) -> dict:
    """A group finding's `pairs` (the first LISTED_PAIRS, in the group's order) and `pairs_total`."""
    return {"pairs": pairs[:LISTED_PAIRS], "pairs_total": len(pairs)}


def group_id(ctx: AuditContext, check_id: str, kind: str, positions: list[int]) -> str:
    return stable_finding_id(check_id, kind, [ctx.encoded.record_sha[p] or ctx.records[p].path for p in positions])


def percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def quoted_paths(ctx: AuditContext, positions: list[int], limit: int = 4) -> str:
    shown = ", ".join(ctx.records[p].path for p in positions[:limit])
    return shown + (f" and {len(positions) - limit} more" if len(positions) > limit else "")


@contextmanager
def one_blas_thread():
    """Run many small matrix products on one BLAS thread: faster than threads fighting over busy cores
    (measured: a PCA of 60 rows took 0.3 s with threads, 0.01 s without)."""
    import scipy.linalg  # noqa: F401  (load every BLAS first: the limit applies to the libraries loaded)
    import scipy.stats  # noqa: F401
    import sklearn.decomposition  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.model_selection  # noqa: F401

    from auditor.parallel import one_blas_thread as limit

    with limit():
        yield
