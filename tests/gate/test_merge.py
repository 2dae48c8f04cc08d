"""The merge gate on an in-memory merged audit: what incoming images bring, and what is accepted."""

from __future__ import annotations

from auditor.gate.merge import is_existing_only, merge_check
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
    result = merge_check(merged_context(items))
    assert result.status == Status.PASS
    assert (result.metrics["incoming_images"], result.metrics["existing_images"]) == (1, 10)
    assert result.metrics["class_balance"]["after"]["train"]["classes"]["a"] == 4


def test_incoming_leaks_both_ways_and_conflicts_are_counted():
    items = EXISTING_IMAGES + [
        image(INCOMING, "leak_in.jpg", "a", "val", content="existing/train/a/0.jpg"),  # into existing train
        image(INCOMING, "leak_out.jpg", "b", "train", content="existing/val/b/v0.jpg"),  # existing val into it
        image(INCOMING, "conflict.jpg", "b", "train", content="existing/train/a/1.jpg"),  # other label
    ]
    result = merge_check(merged_context(items))
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
