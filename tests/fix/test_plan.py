"""plan_split's decisions: exclusions with reasons, --dedupe, keep-existing's fewest moves, group ids."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.errors import ConfigError
from auditor.fix.items import BROKEN, SUSPECT_LABEL, Exclusion, Item, SplitRequest, parse_fractions
from auditor.fix.plan import plan_split
from auditor.fix.stats import split_statistics
from tests.fix.shapes import random_items

FRACTIONS = {"train": 0.8, "val": 0.2}


def by_path(plan) -> dict:
    return {item.path: placement for item, placement in plan.rows()}


def test_broken_and_conflicting_images_are_excluded_with_reasons():
    items = [
        Item("train/a/1.jpg", "a", "train", duplicate_group="g"),
        Item("val/b/1.jpg", "b", "val", duplicate_group="g"),  # the same image filed as b
        Item("train/a/2.jpg", "a", "train", excluded=Exclusion(BROKEN, "truncated JPEG")),
        Item("train/a/3.jpg", "a", "train"),
        Item("val/a/4.jpg", "a", "val"),
    ]
    plan = plan_split(items, SplitRequest(fractions=None))
    placed = by_path(plan)
    assert placed["train/a/1.jpg"].split is None and placed["val/b/1.jpg"].split is None
    assert placed["train/a/1.jpg"].reason == "label_conflict: 2 copies of one image carry labels 'a', 'b'"
    assert placed["train/a/1.jpg"].group == placed["val/b/1.jpg"].group != ""
    assert placed["train/a/2.jpg"].reason == "broken: truncated JPEG"
    assert placed["train/a/3.jpg"].split == "train" and placed["val/a/4.jpg"].split == "val"
    stats = split_statistics(plan)
    assert stats["excluded"] == {"total": 3, "by_kind": {"broken": 1, "label_conflict": 2}}
    assert stats["before"]["conflicts"] == {"groups": 1, "images": 2}
    assert stats["after"]["conflicts"] == {"groups": 0, "images": 0}


def test_a_suspect_label_excluded_first_resolves_the_conflict_it_caused():
    items = [Item("train/a/1.jpg", "a", "train", duplicate_group="g"),
             Item("train/a/2.jpg", "a", "train", duplicate_group="g"),
             Item("val/b/1.jpg", "b", "val", duplicate_group="g", excluded=Exclusion(SUSPECT_LABEL, "looks like a")),
             Item("val/a/9.jpg", "a", "val")]
    placed = by_path(plan_split(items, SplitRequest(fractions=None)))
    assert placed["train/a/1.jpg"].split == placed["train/a/2.jpg"].split == "train"
    assert placed["val/b/1.jpg"].reason.startswith("suspect_label:")


def test_dedupe_keeps_the_train_copy_and_excludes_the_others():
    items = [Item("val/a/copy.jpg", "a", "val", duplicate_group="g", rank=-100),
             Item("train/a/orig.jpg", "a", "train", duplicate_group="g", rank=-50),
             Item("test/a/copy2.jpg", "a", "test", duplicate_group="g"),
             Item("val/a/only.jpg", "a", "val"), Item("test/a/only.jpg", "a", "test"),
             Item("train/a/x.jpg", "a", "train")]
    plan = plan_split(items, SplitRequest(fractions=None, dedupe=True))
    placed = by_path(plan)
    assert placed["train/a/orig.jpg"].split == "train"
    assert placed["train/a/orig.jpg"].reason == "kept for 2 excluded duplicates"
    assert placed["val/a/copy.jpg"].reason == "duplicate: duplicate of train/a/orig.jpg"
    assert placed["test/a/copy2.jpg"].split is None
    stats = split_statistics(plan)
    assert stats["moved"]["total"] == 0 and stats["excluded"]["by_kind"] == {"duplicate": 2}


def test_dedupe_without_a_train_copy_prefers_the_largest_image():
    items = [Item("val/a/small.jpg", "a", "val", duplicate_group="g", rank=-100),
             Item("val/a/large.jpg", "a", "val", duplicate_group="g", rank=-10_000),
             Item("train/a/x.jpg", "a", "train")]
    placed = by_path(plan_split(items, SplitRequest(fractions=None, dedupe=True)))
    assert placed["val/a/large.jpg"].split == "val"  # keep-existing: a group inside val keeps its copy there
    assert placed["val/a/small.jpg"].reason == "duplicate: duplicate of val/a/large.jpg"


def test_dedupe_with_fractions_keeps_every_representative_in_train():
    rng = np.random.default_rng(3)
    items = random_items(rng, min_class=150, max_class=300, group_share=0.3, max_group=5, current_splits=False)
    plan = plan_split(items, SplitRequest(fractions=FRACTIONS, seed=1, dedupe=True))
    representatives = [p for p in plan.placements if p.reason.startswith("kept for")]
    assert representatives and all(p.split == "train" for p in representatives)
    groups = {}
    for item, p in plan.rows():
        if item.duplicate_group:
            groups.setdefault(item.duplicate_group, []).append(p)
    for members in groups.values():
        assert sum(p.split is not None for p in members) == 1
    assert split_statistics(plan)["targets"]["met"]


def test_keep_existing_moves_the_fewest_images_and_keeps_sizes_close():
    items = []
    for k in range(6):  # six leaking pairs: one copy in train, one in val
        items += [Item(f"train/a/p{k}.jpg", "a", "train", duplicate_group=f"p{k}"),
                  Item(f"val/a/p{k}.jpg", "a", "val", duplicate_group=f"p{k}")]
    items += [Item(f"train/a/t{k}.jpg", "a", "train", duplicate_group="big") for k in range(3)]
    items.append(Item("val/a/t.jpg", "a", "val", duplicate_group="big"))  # 3 in train, 1 in val: the val one moves
    items += [Item(f"train/a/s{k}.jpg", "a", "train") for k in range(20)]
    items += [Item(f"val/a/s{k}.jpg", "a", "val") for k in range(5)]
    plan = plan_split(items, SplitRequest(fractions=None))
    stats = split_statistics(plan)
    assert stats["moved"]["total"] == 7  # 1 per pair + the lone val copy
    assert stats["moved"]["by_route"] == {"train → val": 3, "val → train": 4}
    assert stats["sizes"]["val"] == {"before": 12, "after": 11}
    assert stats["before"]["leaks"]["per_split"]["val"]["leaked"] == 7
    assert stats["after"]["leaks"]["groups_spanning_splits"] == 0
    placed = by_path(plan)
    assert placed["val/a/t.jpg"].split == "train"
    assert placed["val/a/t.jpg"].reason == "moved from val to train with its group (4 images: 3 in train, 1 in val)"
    assert all(placed[f"{s}/a/s{k}.jpg"].split == s for s, n in (("train", 20), ("val", 5)) for k in range(n))


@pytest.mark.parametrize("sources", [False, True])
def test_keep_existing_resolves_random_leaks_with_minimal_moves(sources):
    rng = np.random.default_rng(11)
    items = random_items(rng, min_class=50, max_class=200, group_share=0.3, sources=sources)
    plan = plan_split(items, SplitRequest(fractions=None))
    stats = split_statistics(plan)
    assert stats["after"]["leaks"]["groups_spanning_splits"] == 0
    assert stats["after"].get("group_by_values_spanning_splits", 0) == 0
    assert stats["before"].get("group_by_values_spanning_splits", 1) > 0
    units: dict[int, list[int]] = {}
    for i, u in enumerate(plan.unit_of):
        if u >= 0:
            units.setdefault(u, []).append(i)
    minimal = sum(len(m) - max(sum(items[i].split == s for i in m) for s in ("train", "val")) for m in units.values())
    assert stats["moved"]["total"] == minimal


def test_group_by_keys_keep_a_source_in_one_split_and_chain_through_duplicates():
    items = [Item(f"a/{k}.jpg", "a", together=("source=cam1",)) for k in range(10)]
    items += [Item("a/bridge.jpg", "a", duplicate_group="d", together=("source=cam2",)),
              Item("b/bridge.jpg", "b", duplicate_group="d", together=("source=cam1",))]  # conflict: excluded
    items += [Item(f"b/{k}.jpg", "b", together=("source=cam2",)) for k in range(10)]
    items += [Item(f"{c}/s{k}.jpg", c) for c in "ab" for k in range(40)]
    plan = plan_split(items, SplitRequest(fractions=FRACTIONS, seed=0))
    placed = by_path(plan)
    assert len({placed[f"a/{k}.jpg"].split for k in range(10)}) == 1
    assert len({placed[f"b/{k}.jpg"].split for k in range(10)}) == 1
    assert placed["a/bridge.jpg"].split is None  # its copy carries label b


def test_every_input_appears_once_and_hostile_labels_are_plain_data():
    labels = ["../x", "a/b", "", ".", "<script>", "ants\nbees", "\x1b[31mred"]
    items = [Item(f"{k}/{n}.jpg", label) for k, label in enumerate(labels) for n in range(12)]
    plan = plan_split(items, SplitRequest(fractions=FRACTIONS, seed=0))
    assert [i.path for i in plan.items] == [i.path for i in items]
    assert set(plan.classes) == set(labels)
    assert all(p.split in ("train", "val") for p in plan.placements)


def test_one_split_cannot_keep_existing_and_duplicate_paths_are_refused():
    with pytest.raises(ConfigError, match="two or more splits"):
        plan_split([Item("a/1.jpg", "a", "train"), Item("a/2.jpg", "a", "train")], SplitRequest(fractions=None))
    with pytest.raises(ConfigError, match="listed twice"):
        plan_split([Item("a/1.jpg", "a", "train"), Item("a/1.jpg", "a", "val")], SplitRequest(fractions=FRACTIONS))


def test_parse_fractions():
    assert parse_fractions("train=0.7, val=0.2,test=0.1") == {"train": 0.7, "val": 0.2, "test": 0.1}
    assert parse_fractions("train=80,val=20") == {"train": 0.8, "val": 0.2}
    for bad, message in (("train=0.8", "two or more"), ("train=0.8,val=0.3", "add up"), ("train=1,val=0", "above 0"),
                         ("../x=0.5,val=0.5", "folder name"), ("train=a,val=0.5", "not a number"),
                         ("train=0.5,train=0.5", "twice"), ("train,val", "NAME=SHARE")):
        with pytest.raises(ConfigError, match=message):
            parse_fractions(bad)


def test_nothing_left_to_split_is_not_a_crash():
    items = [Item(f"train/a/{k}.jpg", "a", "train", excluded=Exclusion(BROKEN, "empty file")) for k in range(3)]
    items += [Item("val/a/x.jpg", "a", "val", excluded=Exclusion(BROKEN, "empty file"))]
    for request in (SplitRequest(fractions=FRACTIONS), SplitRequest(fractions=None)):
        plan = plan_split(items, request)
        stats = split_statistics(plan)
        assert stats["kept"] == 0 and stats["excluded"]["total"] == 4


def test_the_csv_does_not_depend_on_python_hash_randomisation():
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import hashlib, numpy as np\n"
        "from tests.fix.shapes import random_items\n"
        "from auditor.fix.items import SplitRequest\n"
        "from auditor.fix.plan import plan_split\n"
        "from auditor.fix.split_csv import split_rows, render_split_csv\n"
        "items = random_items(np.random.default_rng(5), min_class=40, max_class=120, sources=True)\n"
        "for r in (SplitRequest(fractions={'train': .7, 'val': .2, 'test': .1}, seed=2, dedupe=True), SplitRequest()):\n"
        "    print(hashlib.sha256(render_split_csv(split_rows(plan_split(items, r))).encode()).hexdigest())\n")
    root = Path(__file__).resolve().parents[2]
    outputs = [subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True,
                              env={"PYTHONHASHSEED": seed, "PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}).stdout
               for seed in ("1", "2")]
    assert outputs[0] == outputs[1] and len(outputs[0].split()) == 2


def test_a_split_left_empty_is_said_first():
    # One picture filed as a and as b, in train and val: both copies are excluded, nothing is left anywhere.
    items = [Item("train/a/1.jpg", "a", "train", duplicate_group="g"), Item("val/b/1.jpg", "b", "val", duplicate_group="g")]
    stats = split_statistics(plan_split(items, SplitRequest(fractions=None)))
    assert stats["empty_splits"] == ["train", "val"]
    assert stats["warnings"][0].startswith("train is empty after the split (1 images before, 0 of 2 kept in all)")
    clean = [Item("train/a/1.jpg", "a", "train"), Item("val/a/2.jpg", "a", "val")]
    assert split_statistics(plan_split(clean, SplitRequest(fractions=None)))["empty_splits"] == []
