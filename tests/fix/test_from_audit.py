"""The adapter from an audit context to Items: the context's own duplicate groups (real graph, synthetic
hashes and vectors), broken files, files the walk could not index, --group-by, --drop-suspect-labels, and the
counterfactual split gap_attribution is to call."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from auditor.dataset import WalkIssue
from auditor.errors import ConfigError
from auditor.fix.from_audit import (_duplicate_group_ids, counterfactual_split, items_from_audit, plan_from_audit,
                                    positions_by_split)
from auditor.fix.items import SplitRequest
from auditor.imaging import Problem
from tests.checks.synthetic_audit import gaussian_classes, synthetic_context


def audited(items: list[dict], near: dict[str, str] | None = None, **config):
    """A synthetic context whose duplicate graph is the real one: distinct random hashes per content, except
    `near` (path → path): that content gets the other's hashes (a near copy at pHash distance 0)."""
    ctx = synthetic_context(items, seed=0, calibration_images=0, min_cosine=0.9999, **config)
    ctx.backbone = SimpleNamespace(input_size=224, cache_key="synthetic")
    rng = np.random.default_rng(0)
    for sha, scan in ctx.encoded.scans.items():
        h = int(rng.integers(0, 2**63))
        scan.phash = scan.dhash = f"{h:016x}"
        scan.phash_mirror = scan.dhash_mirror = f"{h ^ (2**64 - 1):016x}"
        scan.pixel_hash = sha
    sha_of_path = {r.path: ctx.sha(i) for i, r in enumerate(ctx.records)}
    for copy, original in (near or {}).items():
        source, target = ctx.encoded.scans[sha_of_path[original]], ctx.encoded.scans[sha_of_path[copy]]
        target.phash, target.dhash = source.phash, source.dhash
    return ctx


def dataset(n: int = 30) -> list[dict]:
    vectors, true = gaussian_classes(n, 2, seed=1)
    items = [{"path": f"{'val' if i % 5 == 0 else 'train'}/{'ab'[t]}/{i}.jpg", "label": "ab"[t],
              "split": "val" if i % 5 == 0 else "train", "vector": v} for i, (v, t) in enumerate(zip(vectors, true))]
    return items


def test_items_carry_the_audit_groups_and_exclusions():
    items = dataset()
    first_a = next(i for i in items if i["label"] == "a" and i["split"] == "train")
    items.append({**first_a, "path": "val/a/exact.jpg", "split": "val", "content": first_a["path"]})
    items.append({**first_a, "path": "val/a/near.jpg", "split": "val"})
    items.append({"path": "train/b/broken.jpg", "label": "b", "vector": items[1]["vector"]})
    ctx = audited(items, near={"val/a/near.jpg": first_a["path"]})
    broken = len(items) - 1
    ctx.encoded.record_sha[broken] = None
    ctx.encoded.read_problems[broken] = Problem("unreadable", "error", "cannot open: Truncated File Read")
    ctx.index.issues.append(WalkIssue("train/readme.txt", "unlabelled_file", "file sits directly in a split folder"))
    result, notes = items_from_audit(ctx)
    by_path = {i.path: i for i in result}
    assert by_path["val/a/exact.jpg"].duplicate_group == by_path["val/a/near.jpg"].duplicate_group \
        == by_path[first_a["path"]].duplicate_group is not None
    assert sum(i.duplicate_group is not None for i in result) == 3
    assert by_path["train/b/broken.jpg"].excluded.text() == "broken: cannot open: Truncated File Read"
    assert by_path["train/readme.txt"].excluded.kind == "not_indexed" and by_path["train/readme.txt"].label == ""
    assert len(result) == len(items) + 1 and not notes
    plan, _ = plan_from_audit(ctx, SplitRequest(fractions=None))
    placed = {item.path: p for item, p in plan.rows()}
    # One copy in train, two in val: the fewest moves take the train copy to val.
    assert {placed[p].split for p in ("val/a/exact.jpg", "val/a/near.jpg", first_a["path"])} == {"val"}
    assert placed[first_a["path"]].reason.startswith("moved from train to val")


def test_groups_that_share_a_member_are_merged():
    assert _duplicate_group_ids([[0, 1], [1, 2], [5, 6]], 8) == {0: "d0", 1: "d0", 2: "d0", 5: "d5", 6: "d5"}
    assert _duplicate_group_ids([[3]], 4) == {}


def test_group_by_source_and_by_a_manifest_column(tmp_path):
    items = dataset(20)
    ctx = audited(items)
    with pytest.raises(ConfigError, match="no image has a source"):
        items_from_audit(ctx, group_by="source")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,split,patient\n" + "".join(
        f"{i['path']},{i['label']},{i['split']},{'p' + str(k % 4) if k % 3 else ''}\n" for k, i in enumerate(items)))
    ctx = audited(items, manifest=manifest)
    result, notes = items_from_audit(ctx, group_by="patient")
    assert result[1].together == ("patient=p1",) and result[0].together == ()
    assert "grouped by patient" in notes[0]
    with pytest.raises(ConfigError, match="no such column"):
        items_from_audit(ctx, group_by="hospital")
    plan, _ = plan_from_audit(ctx, SplitRequest(fractions={"train": 0.5, "val": 0.5}), group_by="patient")
    for patient in ("p0", "p1", "p2", "p3"):
        members = [p.split for item, p in plan.rows() if item.together == (f"patient={patient}",)]
        assert len(set(members)) == 1


def test_drop_suspect_labels_excludes_exactly_the_strong_label_issues():
    from auditor.checks import label_issues

    vectors, true = gaussian_classes(60, 3, seed=2)
    items = []
    flipped = set()
    for i, (v, t) in enumerate(zip(vectors, true)):
        label = "abc"[(t + 1) % 3] if i % 12 == 5 else "abc"[t]
        if label != "abc"[t]:
            flipped.add(i)
        items.append({"path": f"train/{label}/{i}.jpg", "label": label, "vector": v})
    ctx = audited(items)
    result, notes = items_from_audit(ctx, drop_suspect_labels=True)
    analysis = label_issues.analyse(ctx)
    strong = {p for u, s in enumerate(analysis.strong) if s for p in analysis.unit_positions[u]}
    excluded = {k for k, item in enumerate(result) if item.excluded is not None}
    assert excluded == strong and len(strong & flipped) >= 0.8 * len(strong) and strong
    assert all(result[k].excluded.kind == "suspect_label" and "looks like" in result[k].excluded.detail for k in excluded)
    assert f"{len(strong)} images with strong evidence" in notes[0]


def test_counterfactual_split_is_the_keep_existing_dedupe_split():
    items = dataset()
    first_a = next(i for i in items if i["label"] == "a" and i["split"] == "train")
    items.append({**first_a, "path": "val/a/leak.jpg", "split": "val", "content": first_a["path"]})
    ctx = audited(items)
    positions, stats = counterfactual_split(ctx, seed=0)
    leak = len(items) - 1
    train_copy = next(k for k, i in enumerate(items) if i["path"] == first_a["path"])
    assert train_copy in positions["train"] and leak not in positions["val"] and leak not in positions["train"]
    assert stats["excluded"]["by_kind"] == {"duplicate": 1} and stats["moved"]["total"] == 0
    plan, _ = plan_from_audit(ctx, SplitRequest(fractions=None, dedupe=True))
    assert positions == positions_by_split(plan, len(ctx.records))
    made, _ = counterfactual_split(ctx, seed=0, made_holdout=0.25)
    assert sorted(made) == ["train", "val"] and abs(len(made["val"]) - 0.25 * (len(items) - 1)) <= 1
