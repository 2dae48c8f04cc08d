"""The merge gate on an in-memory merged audit: what incoming images bring, and what is accepted."""

from __future__ import annotations

import pytest

from auditor.gate.merge import CHECK as MERGE, is_existing_only
from auditor.index.merged import EXISTING, INCOMING, MergedIndex
from auditor.report import Finding, Severity, Status
from tests.checks.synthetic_audit import synthetic_context


def merged_context(items: list[dict]):
    """items carry an `origin`; their paths are prefixed with it, as load_merged does."""
    items = [{**item, "path": f"{item['origin']}/{item['path']}"} for item in items]
    ctx = synthetic_context(items, with_embeddings=False)
    index = MergedIndex(root=ctx.index.root, layout="splits against splits", records=ctx.index.records,
                        origins=[item["origin"] for item in items],
                        roots={INCOMING: "/incoming", EXISTING: "/existing"})
    ctx.index = index
    return ctx


def image(origin: str, path: str, label: str, split: str = "train", **extra) -> dict:
    return {"origin": origin, "path": f"{split}/{label}/{path}", "label": label, "split": split, **extra}


EXISTING_IMAGES = [image(EXISTING, f"{i}.jpg", label) for label in ("a", "b") for i in range(3)] + \
                  [image(EXISTING, f"v{i}.jpg", label, "val") for label in ("a", "b") for i in range(2)]


def test_clean_incoming_images_pass():
    items = EXISTING_IMAGES + [image(INCOMING, "new.jpg", "a")]
    result = MERGE.run(merged_context(items))
    assert result.status == Status.PASS
    assert (result.metrics["incoming_images"], result.metrics["existing_images"]) == (1, 10)
    assert result.metrics["class_balance"]["after"]["train"]["classes"]["a"] == 4


def test_incoming_leaks_both_ways_and_conflicts_are_counted():
    items = EXISTING_IMAGES + [
        image(INCOMING, "leak_in.jpg", "a", "val", content="existing/train/a/0.jpg"),  # into existing train
        image(INCOMING, "leak_out.jpg", "b", "train", content="existing/val/b/v0.jpg"),  # existing val into it
        image(INCOMING, "conflict.jpg", "b", "train", content="existing/train/a/1.jpg"),  # other label
    ]
    result = MERGE.run(merged_context(items))
    metrics = result.metrics
    assert result.status == Status.WARN
    assert metrics["incoming_duplicating_existing"] == 3
    assert metrics["incoming_held_out_leaking_into_existing_train"] == 1
    assert metrics["existing_held_out_leaking_into_incoming_train"] == 1
    assert metrics["label_conflicts_with_existing"] == 1


def test_findings_among_existing_images_only_are_accepted():
    old = Finding("leakage:group:1", Severity.ERROR, "m", [f"{EXISTING}/val/a/1.jpg", f"{EXISTING}/train/a/1.jpg"])
    new = Finding("leakage:group:2", Severity.ERROR, "m", [f"{INCOMING}/val/a/1.jpg", f"{EXISTING}/train/a/1.jpg"])
    assert is_existing_only(old) and not is_existing_only(new)
    assert not is_existing_only(Finding("class_balance:x", Severity.WARNING, "m", []))


def test_an_incoming_label_its_existing_neighbours_contradict_is_flagged():
    from auditor.gate.incoming import disagrees, neighbour_labels
    import numpy as np

    rng = np.random.default_rng(0)
    centres = {"a": rng.normal(size=16), "b": rng.normal(size=16)}
    existing_labels = ["a"] * 20 + ["b"] * 20
    existing = np.stack([centres[label] + 0.1 * rng.normal(size=16) for label in existing_labels])
    incoming = np.stack([centres["a"] + 0.1 * rng.normal(size=16), centres["b"] + 0.1 * rng.normal(size=16)])
    norm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    found = neighbour_labels(norm(existing).astype("float32"), existing_labels, norm(incoming).astype("float32"), ["a", "a"])
    assert found[0]["same_label_share"] == 1.0 and not disagrees(found[0])
    assert found[1]["other_label"] == "b" and found[1]["other_label_share"] == 1.0 and disagrees(found[1])


def test_a_merge_audit_skips_whole_dataset_tests_and_runs_merge(tmp_path):
    from auditor.runner import WHOLE_DATASET_TESTS, run_checks

    ctx = merged_context(EXISTING_IMAGES + [image(INCOMING, "new.jpg", "a")])
    results = {r.id: r for r in run_checks(ctx)}
    assert "merge" in results and results["merge"].status == Status.PASS
    for check_id in WHOLE_DATASET_TESTS:
        assert results[check_id].status == Status.SKIPPED and "merge audit" in results[check_id].summary


@pytest.mark.slow  # seconds: run by `make test`, not the edit-test loop
def test_the_shift_test_finds_shifted_incoming_images_on_a_capped_existing_side():
    import numpy as np

    from auditor.gate.merge import EXISTING_PER_INCOMING, shift_test

    rng = np.random.default_rng(0)
    norm = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")  # noqa: E731
    centre = rng.normal(size=64)
    existing = norm(centre + rng.normal(size=(2000, 64)))
    same = shift_test(norm(centre + rng.normal(size=(30, 64))), existing, 99, seed=0)
    moved = shift_test(norm(centre + 0.6 + rng.normal(size=(30, 64))), existing, 99, seed=0)
    assert same["existing"] == moved["existing"] == EXISTING_PER_INCOMING * 30  # not all 2 000
    assert same["p_value"] > 0.05 and same["domain_auc"] < 0.7
    assert moved["p_value"] <= 0.01 and moved["domain_auc"] > 0.9
    assert moved["centroid_cosine_distance"] > same["centroid_cosine_distance"]
