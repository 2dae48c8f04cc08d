"""What incoming images bring, measured against the existing dataset (pure functions on arrays).

A merge audit does not re-test the whole merged dataset's distribution (its own audit did that): it asks
whether the incoming images differ from the existing ones, and whether an incoming image's label
disagrees with the existing images it looks like. Each costs a search or a fit over the incoming images
against (a bounded sample of) the existing ones, so the gate stays cheap as the dataset grows.
"""

from __future__ import annotations

import numpy as np

LABEL_NEIGHBOURS = 10  # existing images an incoming image's label is compared with
MIN_DISAGREEMENT = 0.8  # an incoming label disagrees when this share of its neighbours carries one other label


def neighbour_labels(existing_unit: np.ndarray, existing_labels: list[str], incoming_unit: np.ndarray,
                     incoming_labels: list[str], k: int = LABEL_NEIGHBOURS) -> list[dict]:
    """For each incoming image: the share of its k nearest existing images that carry its label, and the
    most common other label with its share."""
    from auditor.similarity.neighbours import knn

    k = min(k, len(existing_unit))
    if k < 1 or not len(incoming_unit):
        return []
    sims, rows = knn(existing_unit, k, queries=incoming_unit)
    result = []
    for label, row_sims, row_ids in zip(incoming_labels, sims, rows):
        neighbours = [existing_labels[r] for r in row_ids if r >= 0]
        counts: dict[str, int] = {}
        for other in neighbours:
            counts[other] = counts.get(other, 0) + 1
        others = {name: n for name, n in counts.items() if name != label}
        top = max(sorted(others), key=others.get) if others else None
        result.append({
            "same_label_share": round(counts.get(label, 0) / len(neighbours), 3) if neighbours else None,
            "other_label": top,
            "other_label_share": round(others[top] / len(neighbours), 3) if top else 0.0,
            "neighbours": len(neighbours),
            "nearest_cosine": round(float(row_sims[0]), 4),
        })
    return result


def disagrees(entry: dict) -> bool:
    return entry["other_label"] is not None and entry["other_label_share"] >= MIN_DISAGREEMENT
