"""exact_duplicates, leakage and label_conflicts on small in-memory audits with known copies.

Copies are planted as identical contents (same bytes) or as near copies (the same perceptual hashes,
other bytes); nothing else in these audits is similar, so the expected groups are known exactly."""

from __future__ import annotations

from auditor.checks import CHECKS
from auditor.config import Policy
from auditor.report import Severity, Status
from tests.checks.synthetic_audit import synthetic_context


def image(path: str, label: str, split: str = "train", **extra) -> dict:
    return {"path": f"{split}/{label}/{path}", "label": label, "split": split, **extra}


def run(check_id: str, items: list[dict], **config):
    return CHECKS[check_id].run(synthetic_context(items, with_embeddings=False, **config))


CLEAN = [image(f"{i}.jpg", label) for label in ("cat", "dog") for i in range(4)] + \
        [image(f"v{i}.jpg", label, "val") for label in ("cat", "dog") for i in range(2)]


def test_clean_data_passes_every_group_check():
    for check_id in ("exact_duplicates", "leakage", "label_conflicts"):
        result = run(check_id, CLEAN)
        assert result.status == Status.PASS and not result.findings, (check_id, result.summary)


def test_identical_bytes_are_one_exact_group_with_every_path():
    items = CLEAN + [image("copy.jpg", "cat", content="train/cat/0.jpg"), image("copy2.jpg", "cat", content="train/cat/0.jpg")]
    result = run("exact_duplicates", items)
    assert result.status == Status.WARN  # default policy: warn above 0 %
    [finding] = result.findings
    assert sorted(finding.paths) == ["train/cat/0.jpg", "train/cat/copy.jpg", "train/cat/copy2.jpg"]
    assert result.metrics["redundant_images"] == 2
    assert result.metrics["redundant_percent"] == round(100 * 2 / len(items), 2)


def test_exact_duplicates_policy_threshold():
    items = CLEAN + [image("copy.jpg", "cat", content="train/cat/0.jpg")]
    assert run("exact_duplicates", items, policy=Policy(exact_duplicates_max_percent=50.0)).status == Status.PASS


def test_a_val_copy_of_a_train_image_leaks_and_fails():
    items = CLEAN + [image("leak.jpg", "cat", "val", content="train/cat/1.jpg")]
    result = run("leakage", items)
    assert result.status == Status.FAIL
    val = result.metrics["per_split"]["val"]
    assert (val["images"], val["leaked"]) == (5, 1) and val["per_class"]["cat"]["leaked"] == 1
    [finding] = result.findings
    assert finding.severity == Severity.ERROR and sorted(finding.paths) == ["train/cat/1.jpg", "val/cat/leak.jpg"]
    assert "fail above 0.0 %" in result.summary


def test_a_near_copy_leaks_too():
    items = CLEAN + [image("near.jpg", "dog", "val", hashes_of="train/dog/2.jpg")]
    result = run("leakage", items)
    assert result.status == Status.FAIL and result.metrics["per_split"]["val"]["leaked"] == 1
    assert {"hash", "correlation"} & set(result.findings[0].evidence["pairs"][0]["kinds"])  # same hashes and pixels


def test_leakage_under_a_looser_policy_passes():
    items = CLEAN + [image("leak.jpg", "cat", "val", content="train/cat/1.jpg")]
    assert run("leakage", items, policy=Policy(leakage_max_percent=25.0)).status == Status.PASS  # 20 % leak


def test_a_copy_shared_by_val_and_test_only_is_not_a_leak_into_training():
    items = CLEAN + [image("a.jpg", "cat", "test"), image("b.jpg", "cat", "val", content="test/cat/a.jpg")]
    result = run("leakage", items)
    assert result.status == Status.PASS
    assert result.metrics["per_split"]["val"]["leaked"] == 0 and result.metrics["groups"] == 1


def test_one_split_only_skips_leakage():
    items = [image(f"{i}.jpg", "cat") for i in range(3)]
    assert run("leakage", items).status == Status.SKIPPED


def test_one_image_under_two_labels_is_a_conflict_within_or_across_splits():
    within = CLEAN + [image("same.jpg", "dog", content="train/cat/3.jpg")]
    result = run("label_conflicts", within)
    assert result.status == Status.FAIL
    assert (result.metrics["within_split"], result.metrics["across_splits"]) == (1, 0)
    assert result.findings[0].evidence["labels"] == ["cat", "dog"]
    across = CLEAN + [image("other.jpg", "dog", "val", content="train/cat/3.jpg")]
    result = run("label_conflicts", across)
    assert (result.metrics["within_split"], result.metrics["across_splits"]) == (0, 1)
    assert run("label_conflicts", across, policy=Policy(label_conflicts_max=1)).status == Status.PASS


def test_finding_ids_follow_contents_not_paths():
    first = run("leakage", CLEAN + [image("leak.jpg", "cat", "val", content="train/cat/1.jpg")])
    renamed = run("leakage", CLEAN + [image("renamed.jpg", "cat", "val", content="train/cat/1.jpg")])
    assert first.findings[0].id == renamed.findings[0].id


def test_no_leak_found_by_a_nearly_blind_decision_warns_instead_of_passing():
    """24 copies of one picture: no rule finds the calibration copies without matching everything, so the
    decision's recall interval lies near 0 and "0 % leaked" proves nothing."""
    from auditor.checks.base import Evidence
    from auditor.checks.leakage import BLIND_RECALL, judge

    def evidence(interval, percent=0.0):
        return Evidence(summary="", metrics={
            "groups": 0, "has_train": True, "per_split": {"val": {"percent": percent}},
            "detection_quality": {"recall": interval[0], "recall_interval": list(interval)}}, findings=[])

    blind = judge(evidence((0.0, BLIND_RECALL - 0.1)), Policy())
    assert blind.status == Status.WARN and "estimated recall" in blind.policy
    assert judge(evidence((0.4, 0.9)), Policy()).status == Status.PASS
    assert judge(evidence((0.0, 0.1), percent=50.0), Policy()).status == Status.FAIL
    assert judge(Evidence(summary="", metrics={"groups": 0, "has_train": True, "per_split": {},
                                               "detection_quality": None}, findings=[]), Policy()).status == Status.PASS


def test_a_held_out_image_the_groups_left_alone_still_leaks_through_its_own_pair():
    """val/v pairs with train/t on both tiers, but t went into a clique (t, t2, val/w) that v cannot join
    entirely: v is in no group, yet it has its own train duplicate. A held-out image inside a group keeps that
    group's verdict."""
    import numpy as np

    vectors = np.random.default_rng(0).normal(size=(5, 8))  # pairs accepted on both tiers are embedded
    ctx = synthetic_context([image(name, "cat", split, vector=v) for (name, split), v in zip(
        (("t.jpg", "train"), ("t2.jpg", "train"), ("w.jpg", "val"), ("v.jpg", "val"), ("u.jpg", "val")), vectors)])
    shas = ctx.unique_shas
    node = {ctx.records[p].path: shas.index(ctx.encoded.record_sha[p]) for p in range(len(ctx.records))}

    class Graph:  # the clique split's outcome: one group, and the accepted pairs it left out
        def __init__(self):
            self.shas = shas

        def components(self, kinds):
            return [[node["train/cat/t.jpg"], node["train/cat/t2.jpg"], node["val/cat/w.jpg"]]]

        def chained_edges(self, both_tiers=False):
            assert both_tiers  # a pair on one tier only is not a leak of its own
            return np.array([[node["train/cat/t.jpg"], node["val/cat/v.jpg"]],  # v alone: a leak of its own
                             [node["val/cat/w.jpg"], node["train/cat/t2.jpg"]]])  # inside the group already

    ctx.__dict__["duplicate_graph"] = Graph()
    left_out = [[ctx.records[p].path for p in group] for group in ctx.left_out_leaks]
    assert left_out == [["train/cat/t.jpg", "val/cat/v.jpg"]]
    from auditor.checks.leakage import leaked_positions

    assert {ctx.records[p].path for p in leaked_positions(ctx)["val"]} == {"val/cat/w.jpg", "val/cat/v.jpg"}


def test_a_left_out_held_out_image_is_shown_with_its_closest_training_partner():
    """Paired on both tiers with two training images (t first in node order, t2 closer): the leak names t2."""
    import numpy as np

    near, far, other = np.array([1.0, 0.0, 0.0]), np.array([0.8, 0.6, 0.0]), np.array([0.0, 0.0, 1.0])
    ctx = synthetic_context([image("t.jpg", "cat", vector=far), image("t2.jpg", "cat", vector=near),
                             image("v.jpg", "cat", "val", vector=near * 0.99 + other * 0.01)])
    shas = ctx.unique_shas
    node = {ctx.records[p].path: shas.index(ctx.encoded.record_sha[p]) for p in range(len(ctx.records))}

    class Graph:  # no group; v accepted on both tiers with t and with t2
        def __init__(self):
            self.shas = shas

        def components(self, kinds):
            return []

        def chained_edges(self, both_tiers=False):
            return np.array(sorted([sorted([node["train/cat/t.jpg"], node["val/cat/v.jpg"]]),
                                    sorted([node["train/cat/t2.jpg"], node["val/cat/v.jpg"]])]))

    ctx.__dict__["duplicate_graph"] = Graph()
    left_out = [[ctx.records[p].path for p in group] for group in ctx.left_out_leaks]
    assert left_out == [["train/cat/t2.jpg", "val/cat/v.jpg"]]


def test_each_groups_evidence_is_read_once_for_all_three_checks_and_is_its_own():
    items = CLEAN + [image("copy.jpg", "cat", content="train/cat/0.jpg"),
                     image("leak.jpg", "cat", "val", content="train/cat/1.jpg"),
                     image("near.jpg", "dog", "val", hashes_of="train/dog/2.jpg"),
                     image("relabelled.jpg", "dog", content="train/cat/3.jpg"),
                     image("near2.jpg", "cat", "val", hashes_of="train/dog/3.jpg")]
    ctx = synthetic_context(items, with_embeddings=False)
    graph = ctx.duplicate_graph
    asked: list[list[list[int]]] = []
    real = graph.evidence_within_groups
    graph.evidence_within_groups = lambda groups: asked.append(groups) or real(groups)
    results = {check_id: CHECKS[check_id].run(ctx) for check_id in ("near_duplicates", "leakage", "label_conflicts")}
    assert len(results["leakage"].findings) == 3 and len(results["label_conflicts"].findings) == 2
    # One read per check at most (near_duplicates' groups at once, then the identical-bytes groups only leakage and
    # label_conflicts report), and no group read twice.
    asked_groups = [tuple(group) for call in asked for group in call]
    assert len(asked) == 3 and len(asked_groups) == len(set(asked_groups))
    alone = synthetic_context(items, with_embeddings=False)  # every group read by itself, on a context of its own
    for result in results.values():
        for finding in result.findings:
            group = sorted(p for p, r in enumerate(alone.records) if r.path in finding.paths)
            assert finding.evidence["pairs"] == alone.group_evidence(group) and finding.evidence["pairs"]


def test_a_group_lists_at_most_the_capped_pairs_and_counts_them_all(monkeypatch):
    """A crowd of one picture's copies has a pair for every two members; each check lists the first LISTED_PAIRS and
    says how many there are, instead of writing them all (124 750 at 500 copies) into every check's finding."""
    import auditor.checks.common as common

    items = CLEAN + [image(f"copy{i}.jpg", "cat", content="train/cat/0.jpg") for i in range(3)] + \
        [image("leak.jpg", "dog", "val", content="train/cat/0.jpg")]
    near = CLEAN + [image(f"near{i}.jpg", "dog", hashes_of="train/dog/2.jpg") for i in range(2)]
    full = {check_id: run(check_id, items).findings for check_id in ("exact_duplicates", "leakage", "label_conflicts")}
    full["near_duplicates"] = run("near_duplicates", near).findings
    monkeypatch.setattr(common, "LISTED_PAIRS", 2)
    for check_id, findings in full.items():
        [whole] = findings
        [capped] = run(check_id, near if check_id == "near_duplicates" else items).findings
        # 5 identical files (a chain of 4 byte pairs); 3 near copies of each other (a pair for every two: 3)
        total = 3 if check_id == "near_duplicates" else 4
        assert whole.evidence["pairs_total"] == len(whole.evidence["pairs"]) == total, check_id
        assert capped.evidence["pairs"] == whole.evidence["pairs"][:2] and capped.evidence["pairs_total"] == total
