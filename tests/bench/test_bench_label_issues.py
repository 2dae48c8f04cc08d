"""bench/bench_label_issues.py: flips planted where asked, and each split's truth set beside its estimate."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))


def _index():
    from auditor.index.dataset import DatasetIndex, ImageRecord

    records = [ImageRecord(f"{split}/{label}/{i}.png", Path(f"/nowhere/{split}/{label}/{i}.png"), split=split,
                           label=label)
               for i in range(200) for split, label in [("val" if i % 4 == 0 else "train", "ab"[i % 2])]]
    return DatasetIndex(root=Path("/nowhere"), layout="splits", records=records)


def test_flips_within_one_split_touch_only_that_split_at_its_own_rate():
    import bench_label_issues as bench

    index = _index()
    noisy, chosen = bench.flipped(index, 0.10, seed=0, within="val")
    in_val = [p for p, r in enumerate(index.records) if r.split == "val"]
    assert len(chosen) == round(0.10 * len(in_val)) == 5 and chosen <= set(in_val)
    changed = {p for p, (a, b) in enumerate(zip(index.records, noisy.records)) if a.label != b.label}
    assert changed == chosen
    _noisy, everywhere = bench.flipped(index, 0.10, seed=0)
    assert len(everywhere) == 20 and not everywhere <= set(in_val)


def test_a_splits_line_says_whether_its_interval_holds_the_planted_share():
    import bench_label_issues as bench

    assert bench.split_text(0.02, 0.018, 0.01, 0.027).endswith("holds")
    assert bench.split_text(0.0199, 0.0173, 0.0154, 0.0188).endswith("MISSES")
    assert "1.99 → 1.73 [1.54, 1.88]" in bench.split_text(0.0199, 0.0173, 0.0154, 0.0188)


def test_a_test_split_takes_a_stratified_share_of_train_the_same_at_every_call():
    import bench_label_issues as bench

    index = _index()  # 150 train (50 a, 100 b), 50 val
    with_test = bench.with_test_split(index, 0.10)
    moved = [p for p, (a, b) in enumerate(zip(index.records, with_test.records)) if a.split != b.split]
    assert len(moved) == 20 and all(index.records[p].split == "train" for p in moved)
    assert all(with_test.records[p].split == "test" for p in moved)
    assert sorted(with_test.records[p].label for p in moved) == ["a"] * 7 + ["b"] * 13  # 50 : 100
    assert [r.label for r in with_test.records] == [r.label for r in index.records]
    assert set(with_test.held_out_splits) == {"val", "test"}
    again = bench.with_test_split(index, 0.10)
    assert [r.split for r in again.records] == [r.split for r in with_test.records]
