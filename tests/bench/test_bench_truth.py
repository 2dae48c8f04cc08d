"""bench/bench_truth.py: how many leaks a row plants."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))


def test_a_zero_rate_plants_nothing_and_any_other_rate_at_least_one():
    from bench_truth import planted_count

    assert planted_count(0.0, 1000) == 0  # the clean row: every flag there is a false alarm
    assert planted_count(0.02, 1000) == 20 and planted_count(0.3, 1000) == 300
    assert planted_count(0.001, 100) == 1  # a tiny rate still plants one


def test_leaks_planted_at_another_seed_sit_beside_the_default_ones(tmp_path):
    import numpy as np
    from PIL import Image

    from truth_data import plant_leaks

    photos = []
    for i in range(6):
        native = tmp_path / "native" / f"{i}.png"
        native.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(native)
        photos.append((f"train/a/{i}.png", "train", "a", native))
    pool = tmp_path / "pool"
    default = plant_leaks(pool, photos, 3, 32, seed=0)
    other = plant_leaks(pool, photos, 3, 32, seed=1)
    assert all(p.startswith("planted/") for p, *_ in default)
    assert all(p.startswith("planted_s1/") for p, *_ in other)  # the default rows' files are not overwritten
    assert all((pool / p).is_file() for p, *_ in default + other)
    assert [src for *_, src in default] != [src for *_, src in other]  # other train photos


def test_false_within_split_pairs_count_grouped_pairs_in_one_split_that_are_not_known_duplicates():
    from bench_truth import false_within_split_pairs

    members = [{"path": "t/a", "split": "train"}, {"path": "t/b", "split": "train"}, {"path": "t/c", "split": "train"},
               {"path": "v/d", "split": "val"}]
    pairs = [{"a": "t/a", "b": "t/b"}, {"a": "t/b", "b": "t/c"}, {"a": "t/a", "b": "v/d"}]
    report = {"checks": [{"id": "near_duplicates", "findings": [{"evidence": {"members": members, "pairs": pairs}}]}]}
    assert false_within_split_pairs(report, set()) == 2  # the cross-split pair is a leak, scored elsewhere
    assert false_within_split_pairs(report, {frozenset(("t/b", "t/a"))}) == 1  # a genuine duplicate is no false pair
    assert false_within_split_pairs({"checks": []}, set()) == 0
