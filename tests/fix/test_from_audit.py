"""The adapter from an audit context to Items: the context's own duplicate groups (real graph, synthetic
hashes and vectors), broken files, files the walk could not index, --group-by, --drop-suspect-labels, and the
counterfactual split gap_attribution is to call."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from auditor.index.dataset import WalkIssue
from auditor.errors import ConfigError
from auditor.fix.from_audit import (_duplicate_group_ids, counterfactual_split, items_from_audit, plan_from_audit,
                                    positions_by_split)
from auditor.fix.items import SplitRequest
from auditor.encoding.imaging import Problem
from tests.checks.synthetic_audit import gaussian_classes, synthetic_context


def audited(items: list[dict], near: dict[str, str] | None = None, **config):
    """A synthetic context whose duplicate graph is the real one: distinct random thumbnails per content, except
    `near` (path → path): that content gets the other's thumbnail (a near copy at pHash distance 0)."""
    settings = {"seed": 0, "calibration_images": 0, "min_cosine": 0.9999, "min_correlation": 0.9999, **config}
    ctx = synthetic_context(items, **settings)
    ctx.backbone = SimpleNamespace(input_size=224, cache_key="synthetic")
    sha_of_path = {r.path: ctx.sha(i) for i, r in enumerate(ctx.records)}
    for copy, original in (near or {}).items():
        source, target = ctx.encoded.scans[sha_of_path[original]], ctx.encoded.scans[sha_of_path[copy]]
        target.grey32 = source.grey32
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
    plan, _, verification = plan_from_audit(ctx, SplitRequest(fractions=None))
    assert verification == {"checked": False, "clean": True,
                            "reason": "thresholds fixed (--min-cosine and --min-correlation given)"}
    placed = {item.path: p for item, p in plan.rows()}
    # One copy in train, two in val: the fewest moves take the train copy to val.
    assert {placed[p].split for p in ("val/a/exact.jpg", "val/a/near.jpg", first_a["path"])} == {"val"}
    assert placed[first_a["path"]].reason.startswith("moved from train to val")


def test_groups_that_share_a_member_are_merged():
    assert _duplicate_group_ids([[0, 1], [1, 2], [5, 6]], 8) == {0: "d0", 1: "d0", 2: "d0", 5: "d5", 6: "d5"}
    assert _duplicate_group_ids([[3]], 4) == {}


def test_an_accepted_pair_left_out_of_the_groups_keeps_its_images_together(monkeypatch):
    # A chain A≈B≈C with A≉C: the groups hold {A, B}, and the pair (B, C) is accepted but in no group. The split must
    # keep C with A and B (frames of one clip split into several groups were placed on both sides of a split).
    items = dataset()
    train_a = [i for i in items if i["label"] == "a" and i["split"] == "train"]
    items.append({**train_a[0], "path": "val/a/near.jpg", "split": "val"})
    ctx = audited(items, near={"val/a/near.jpg": train_a[0]["path"]})
    graph = ctx.duplicate_graph
    node_of_path = {r.path: graph.shas.index(ctx.sha(i)) for i, r in enumerate(ctx.records)}
    chained = np.array([[node_of_path["val/a/near.jpg"], node_of_path[train_a[1]["path"]]]])
    monkeypatch.setattr(type(graph), "chained_edges", lambda self, both_tiers=False: chained)
    by_path = {i.path: i for i in items_from_audit(ctx)[0]}
    group = by_path["val/a/near.jpg"].duplicate_group
    assert group is not None
    assert by_path[train_a[0]["path"]].duplicate_group == by_path[train_a[1]["path"]].duplicate_group == group
    assert sum(i.duplicate_group == group for i in by_path.values()) == 3


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
    plan, _, _ = plan_from_audit(ctx, SplitRequest(fractions={"train": 0.5, "val": 0.5}), group_by="patient")
    for patient in ("p0", "p1", "p2", "p3"):
        members = [p.split for item, p in plan.rows() if item.together == (f"patient={patient}",)]
        assert len(set(members)) == 1


@pytest.mark.slow
def test_drop_suspect_labels_excludes_exactly_the_strong_label_issues():
    # Enough images, well enough separated, for the label analysis to support its estimate (strong evidence).
    vectors, true = gaussian_classes(300, 3, spread=0.25, seed=2)
    items = []
    flipped = set()
    for i, (v, t) in enumerate(zip(vectors, true)):
        label = "abc"[(t + 1) % 3] if i % 20 == 5 else "abc"[t]
        if label != "abc"[t]:
            flipped.add(i)
        items.append({"path": f"train/{label}/{i}.jpg", "label": label, "vector": v})
    ctx = audited(items)
    result, notes = items_from_audit(ctx, drop_suspect_labels=True)
    analysis = ctx.label_analysis
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
    plan, _, _ = plan_from_audit(ctx, SplitRequest(fractions=None, dedupe=True))
    assert positions == positions_by_split(plan, len(ctx.records))
    made, _ = counterfactual_split(ctx, seed=0, made_holdout=0.25)
    assert sorted(made) == ["train", "val"] and abs(len(made["val"]) - 0.25 * (len(items) - 1)) <= 1


def test_verification_adds_what_a_recalibrated_audit_of_the_split_links(monkeypatch):
    """An audit of the written split chooses its own rule on the subset and may link a pair the whole
    dataset's rule did not (here: the split's audit links items[1] with a val twin). The verified plan
    keeps the pair together, and a second round finds nothing more."""
    import auditor.fix.verify as verify

    items = dataset(20)
    items.append({**items[1], "path": f"val/{items[1]['label']}/twin.jpg", "split": "val"})
    items[-1]["content"] = "a twin that only the split's own audit links"
    items[-1]["vector"] = np.random.default_rng(9).normal(size=len(items[1]["vector"]))  # nothing like items[1]
    ctx = audited(items, min_correlation=None)  # the audit chooses its pixel-tier threshold: verification runs
    real_split_context = verify.split_context

    def linking(ctx_, plan):
        audit_ctx, origin = real_split_context(ctx_, plan)
        pair = [origin.index(1), origin.index(len(items) - 1)]
        monkeypatch.setattr(type(audit_ctx), "duplicate_groups", property(
            lambda self: [pair] if self is audit_ctx else []), raising=False)
        return audit_ctx, origin

    monkeypatch.setattr(verify, "split_context", linking)
    plan, _, verification = verify.verified_plan(ctx, SplitRequest(fractions=None))
    assert verification["checked"] and verification["clean"]
    assert [r["groups_found"] for r in verification["rounds"]] == [1, 0]
    placed = {item.path: p.split for item, p in plan.rows()}
    assert placed[items[1]["path"]] == placed[items[-1]["path"]]


def test_the_split_context_walks_like_an_audit_of_the_materialized_folder(tmp_path):
    """Same records, same order, as load_dataset over the folder materialize writes."""
    from auditor.config import AuditConfig
    from auditor.index.dataset import load_dataset
    from auditor.fix.materialize import Entry, materialize
    from auditor.fix.verify import split_context

    items = dataset(12)
    for k, item in enumerate(items):
        item["path"] = f"{item['split']}/{item['label']}/{'Z' if k % 3 else 'a'}{k}.jpg"
    items.append({**items[0], "path": "val/b/" + items[0]["path"].split("/")[-1]})  # a name taken twice in one folder
    ctx = audited(items)
    for k, record in enumerate(ctx.records):
        (tmp_path / "data" / record.path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / record.path).write_bytes(f"image {k}".encode())
    ctx.index.records[:] = [r.__class__(r.path, tmp_path / "data" / r.path, r.split, r.label) for r in ctx.records]
    plan, _, _ = plan_from_audit(ctx, SplitRequest(fractions={"train": 0.6, "val": 0.4}, seed=2))
    split_ctx, origin = split_context(ctx, plan)
    entries = [Entry(ctx.records[p].abspath, ctx.records[p].path, split, ctx.records[p].label)
               for split, positions in positions_by_split(plan, len(ctx.records)).items() for p in positions]
    materialize(entries, tmp_path / "data", tmp_path / "dest")
    walked = load_dataset(tmp_path / "dest", AuditConfig())
    assert [(r.path, r.split, r.label) for r in split_ctx.records] == [(r.path, r.split, r.label) for r in walked.records]
    assert [ctx.records[p].abspath.read_bytes() for p in origin] == [r.abspath.read_bytes() for r in walked.records]
