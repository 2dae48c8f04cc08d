"""class_balance: counts, imbalance, missing classes and the label-distribution test, judged by the policy."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.checks import CHECKS
from auditor.checks.class_balance import distribution_test
from auditor.config import Policy
from auditor.encoding.imaging import Problem
from auditor.report import Status
from tests.checks.synthetic_audit import synthetic_context


def dataset(train: dict[str, int], val: dict[str, int]) -> list[dict]:
    items = []
    for split, counts in (("train", train), ("val", val)):
        for label, n in counts.items():
            items += [{"path": f"{split}/{label}/{i}.jpg", "label": label, "split": split} for i in range(n)]
    return items


UNREADABLE = Problem("not_an_image", "error", "not an image")


def run(items, **config):
    return CHECKS["class_balance"].run(synthetic_context(items, with_embeddings=False, **config))


def test_balanced_splits_pass():
    result = run(dataset({"a": 20, "b": 20}, {"a": 5, "b": 5}))
    assert result.status == Status.PASS and not result.findings
    assert result.metrics["per_split"]["train"]["imbalance_ratio"] == 1.0


def test_imbalance_above_the_ratio_warns_and_names_the_small_class():
    result = run(dataset({"a": 40, "b": 10}, {"a": 5, "b": 5}))
    assert result.status == Status.WARN
    [finding] = [f for f in result.findings if "under_represented" in f.id]
    assert finding.evidence["class"] == "b" and finding.evidence["largest_class"] == "a"
    assert run(dataset({"a": 40, "b": 10}, {"a": 5, "b": 5}), policy=Policy(max_imbalance_ratio=5.0)).status == Status.PASS


def test_a_class_missing_from_train_fails_and_from_val_warns():
    result = run(dataset({"a": 10}, {"a": 5, "b": 5}))
    assert result.status == Status.FAIL
    assert any(f.evidence.get("class") == "b" and f.evidence["split"] == "train" for f in result.findings)
    result = run(dataset({"a": 10, "b": 10}, {"a": 5}))
    assert result.status == Status.WARN
    assert result.metrics["per_split"]["val"]["missing_classes"] == ["b"]


def test_a_class_without_a_usable_image_fails_in_a_single_split_pool_too():
    """One pool of class folders (or a dataset whose only files cannot be read): a class with no usable image
    cannot be learnt, whatever the number of splits; its finding is an error, so the check fails."""
    items = [{"path": f"a/{i}.jpg", "label": "a"} for i in range(5)]
    items.append({"path": "b/notes.jpg", "label": "b", "problems": [UNREADABLE]})
    result = run(items)
    assert list(result.metrics["per_split"]) == ["train"] and result.status == Status.FAIL
    assert any(f.evidence.get("class") == "b" and f.severity.value == "error" for f in result.findings)


def test_a_different_label_distribution_is_tested_and_judged():
    items = dataset({"a": 100, "b": 100}, {"a": 90, "b": 10})
    result = run(items)
    test = result.metrics["distribution_tests"]["val"]
    assert test["p_value"] < 1e-6 and test["cramers_v"] > 0.3
    assert any("distribution_differs" in f.id for f in result.findings)
    lenient = run(items, policy=Policy(min_cramers_v=0.9))
    assert not any("distribution_differs" in f.id for f in lenient.findings)


def test_distribution_test_matches_scipy():
    from scipy.stats import chi2_contingency

    reference, held = np.array([30, 20, 10]), np.array([5, 10, 15])
    result = distribution_test(reference, held)
    chi2, p, dof, _ = chi2_contingency(np.stack([reference, held]), correction=False)
    assert result["chi2"] == pytest.approx(chi2, rel=1e-4) and result["p_value"] == pytest.approx(p, rel=1e-3)
    assert result["dof"] == dof
    assert distribution_test(np.array([5, 0]), np.array([0, 0]))["p_value"] is None


def test_one_class_is_said_in_the_singular():
    assert run(dataset({"a": 10}, {"a": 5})).summary.startswith("1 class;")
