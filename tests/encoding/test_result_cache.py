"""Check results are reused only when nothing they depend on changed."""

from __future__ import annotations

import numpy as np

from auditor.encoding import result_cache
from auditor.checks import CHECKS
from auditor.runner import run_checks
from tests.checks.synthetic_audit import synthetic_context


def _items(label_of_last: str = "b") -> list[dict]:
    rng = np.random.default_rng(0)
    items = [{"path": f"train/a/{i}.jpg", "label": "a", "vector": rng.normal(size=8)} for i in range(6)]
    items += [{"path": f"train/b/{i}.jpg", "label": "b", "vector": rng.normal(size=8)} for i in range(5)]
    items.append({"path": "train/b/last.jpg", "label": label_of_last, "vector": rng.normal(size=8)})
    return items


def test_the_key_follows_what_results_depend_on():
    base = result_cache.inputs_key(synthetic_context(_items()))
    assert result_cache.inputs_key(synthetic_context(_items())) == base
    assert result_cache.inputs_key(synthetic_context(_items(label_of_last="a"))) != base  # a label changed
    assert result_cache.inputs_key(synthetic_context(_items(), min_cosine=0.9)) != base  # a threshold changed
    assert result_cache.inputs_key(synthetic_context(_items(), workers=7)) == base  # speed settings do not count


def test_a_second_run_reuses_every_result_and_returns_the_same_report():
    ctx = synthetic_context(_items(), with_embeddings=True, calibration_images=0)
    first = [r.to_dict() for r in run_checks(ctx, ["class_balance", "outliers", "image_quality"])]
    again = synthetic_context(_items(), with_embeddings=True, calibration_images=0)
    again.cache = ctx.cache  # same cache, unchanged inputs
    second = [r.to_dict() for r in run_checks(again, ["class_balance", "outliers", "image_quality"])]
    assert again.reused_checks == ["class_balance", "outliers", "image_quality"]
    assert second == first
    assert set(again.reused_checks) <= set(CHECKS)


def test_a_policy_change_rejudges_cached_evidence_without_recomputing_it():
    from auditor.config import Policy

    items = _items(label_of_last="a")  # 7 images of a, 5 of b: imbalance ratio 1.4
    ctx = synthetic_context(items, with_embeddings=True, calibration_images=0)
    before = {r.id: r for r in run_checks(ctx, ["class_balance", "image_quality"])}
    assert before["class_balance"].status.value == "pass"
    strict = synthetic_context(items, with_embeddings=True, calibration_images=0,
                               policy=Policy(max_imbalance_ratio=1.2, image_quality_max_percent=0.0))
    strict.cache = ctx.cache
    after = {r.id: r for r in run_checks(strict, ["class_balance", "image_quality"])}
    assert strict.reused_checks == ["class_balance", "image_quality"]  # nothing recomputed
    assert after["class_balance"].status.value == "warn"  # … yet judged by the new policy
    assert "warn above ratio 1.2" in after["class_balance"].summary
    assert "fail above 0 % of a split" in after["image_quality"].summary


def test_policy_values_a_computation_reads_are_part_of_its_key():
    from auditor.config import Policy

    ctx = synthetic_context(_items())
    base = result_cache.inputs_key(ctx)
    shift = CHECKS["split_shift"]
    assert result_cache.evidence_key(base, shift, Policy(alpha=0.01)) != result_cache.evidence_key(base, shift, Policy(alpha=0.05))
    assert result_cache.evidence_key(base, shift, Policy()) == result_cache.evidence_key(base, shift, Policy(min_domain_auc=0.9))
    balance = CHECKS["class_balance"]
    assert result_cache.evidence_key(base, balance, Policy()) == result_cache.evidence_key(base, balance, Policy(alpha=0.05))
