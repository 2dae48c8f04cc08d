"""gap_attribution's statistics: the decomposition adds up, intervals cover, estimates point the right way."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.checks.gap_attribution import accuracy_by_quintile, decompose, imbalance_points, shift_points
from auditor.stats import bootstrap_mean_ci, inflation_ci


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_images():
    rng = np.random.default_rng(0)
    small = rng.random(50) < 0.8
    large = rng.random(2000) < 0.8
    low, high = bootstrap_mean_ci(small, 2000, seed=1)
    assert low <= small.mean() <= high
    low2, high2 = bootstrap_mean_ci(large, 2000, seed=1)
    assert (high2 - low2) < (high - low) / 3
    assert bootstrap_mean_ci(np.array([]), 2000, seed=1) is None
    assert bootstrap_mean_ci(small, 2000, seed=1) == bootstrap_mean_ci(small, 2000, seed=1)


def test_bootstrap_interval_has_about_95_percent_coverage():
    rng = np.random.default_rng(5)
    covered = 0
    for trial in range(200):
        sample = rng.random(120) < 0.7
        low, high = bootstrap_mean_ci(sample, 1000, seed=trial)
        covered += low <= 0.7 <= high
    assert 0.88 <= covered / 200 <= 0.99


def test_decomposition_adds_up_to_the_gap_exactly():
    rng = np.random.default_rng(2)
    kind = rng.choice(["clean", "leaked", "conflict", "suspect"], size=300, p=[0.7, 0.15, 0.05, 0.1])
    correct = np.where(kind == "leaked", True, np.where(kind == "conflict", False, rng.random(300) < 0.8))
    result = decompose(0.99, correct, kind)
    assert sum(result["parts"].values()) == pytest.approx(result["gap_points"], abs=1e-9)
    assert result["parts"]["leakage"] < 0  # leaked copies are easy: they hide part of the gap
    assert result["parts"]["label_conflicts"] > 0  # conflicting copies are scored wrong: they widen it
    assert result["counts"]["leaked"] == int((kind == "leaked").sum())


def test_decomposition_without_any_duplicate_is_all_remainder():
    correct = np.array([1, 1, 0, 1, 0], dtype=bool)
    result = decompose(1.0, correct, np.array(["clean"] * 5))
    assert result["parts"]["leakage"] == 0 and result["parts"]["label_conflicts"] == 0
    assert result["parts"]["remainder"] == pytest.approx(40.0)


def test_decomposition_when_every_image_leaks():
    result = decompose(1.0, np.array([True, True, False]), np.array(["leaked", "leaked", "conflict"]))
    assert result["accuracy"]["no_train_duplicate"] is None
    assert sum(result["parts"].values()) == pytest.approx(result["gap_points"])


def test_inflation_interval_covers_the_point_estimate():
    rng = np.random.default_rng(3)
    clean = rng.random(400) < 0.8
    correct = np.where(clean, rng.random(400) < 0.75, True)
    estimate = correct.mean() - correct[clean].mean()
    low, high = inflation_ci(correct, clean, 2000, seed=0)
    assert low <= estimate <= high and low > 0
    assert inflation_ci(correct, np.ones(400, bool), 2000, seed=0) is None


def test_accuracy_by_quintile_and_the_shift_estimate():
    scores = np.linspace(0, 1, 100)
    correct = scores < 0.6  # the least train-like images are the ones the head gets wrong
    rows = accuracy_by_quintile(correct, scores)
    assert [r["images"] for r in rows] == [20] * 5
    assert rows[0]["accuracy"] == 1.0 and rows[-1]["accuracy"] == 0.0
    assert shift_points(rows) == pytest.approx(40.0)
    assert shift_points(accuracy_by_quintile(np.ones(100, bool), scores)) == 0.0


def test_imbalance_estimate_counts_only_under_represented_classes():
    per_class = {"big": {"train_images": 900, "val_images": 100, "accuracy": 0.9},
                 "small": {"train_images": 30, "val_images": 100, "accuracy": 0.5}}
    assert imbalance_points(per_class) == pytest.approx(20.0)
    per_class["small"]["accuracy"] = 0.95
    assert imbalance_points(per_class) == 0.0


def test_mislabels_are_attributed_only_when_label_issues_supports_its_estimate():
    from auditor.checks.gap_attribution import probable_mislabels
    from tests.checks.test_label_issues import _items
    from tests.checks.synthetic_audit import synthetic_context

    for spread, supported in ((0.35, True), (1.3, False)):
        items, flipped = _items(flip_every=7, spread=spread)
        ctx = synthetic_context(items, seed=0)
        val = [p for p, r in enumerate(ctx.records) if r.split == "val"]
        suspects, reason = probable_mislabels(ctx, val)
        if supported:
            assert reason is None and suspects
            assert {ctx.records[p].path for p in suspects} <= {p for p in flipped if p.startswith("val/")} | set()
        else:
            assert suspects is None and "cannot support" in reason and "cannot be told apart" in reason
