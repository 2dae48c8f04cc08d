"""The split CSV: every input once, excluded rows with an empty split and a reason, and a lossless round trip."""

from __future__ import annotations

import csv

import pytest

from auditor.errors import DatasetError
from auditor.fix.items import BROKEN, Exclusion, Item, SplitRequest
from auditor.fix.plan import plan_split
from auditor.fix.split_csv import COLUMNS, read_split_csv, split_rows, write_split_csv

HOSTILE = ['a,b.jpg', 'quote"d.jpg', "new\nline.jpg", "=cmd|' /C calc'!A0.jpg", "ünïcødé ✓.jpg", " spaced .jpg"]


def plan_with_everything():
    items = [Item(f"train/{'cat' if k % 2 else 'dog'}/{name}", "cat" if k % 2 else "dog", "train")
             for k, name in enumerate(HOSTILE)]
    items += [Item(f"train/cat/{k}.jpg", "cat", "train") for k in range(10)]
    items += [Item(f"val/dog/{k}.jpg", "dog", "val") for k in range(10)]
    items += [Item("train/cat/dup.jpg", "cat", "train", duplicate_group="d"),
              Item("val/cat/dup.jpg", "cat", "val", duplicate_group="d"),
              Item("train/cat/conflict.jpg", "cat", "train", duplicate_group="c"),
              Item("val/dog/conflict.jpg", "dog", "val", duplicate_group="c"),
              Item("train/cat/broken.jpg", "cat", "train", excluded=Exclusion(BROKEN, "cannot open: Truncated File Read"))]
    return items, plan_split(items, SplitRequest(fractions=None))


def test_round_trip_and_every_file_exactly_once(tmp_path):
    items, plan = plan_with_everything()
    destination = tmp_path / "split.csv"
    written = write_split_csv(plan, destination)
    back = read_split_csv(destination)
    assert back == written == split_rows(plan)
    assert sorted(r.path for r in back) == sorted(i.path for i in items)
    with destination.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == COLUMNS
    excluded = [r for r in back if r.split is None]
    assert {r.path for r in excluded} == {"train/cat/conflict.jpg", "val/dog/conflict.jpg", "train/cat/broken.jpg"}
    assert all(r.reason for r in excluded)
    dup = [r for r in back if r.path.endswith("/dup.jpg")]
    assert len({r.split for r in dup}) == 1 and dup[0].group == dup[1].group != ""


def test_rows_are_sorted_kept_first_train_first(tmp_path):
    _, plan = plan_with_everything()
    rows = split_rows(plan)
    kinds = [(r.split is None, r.split) for r in rows]
    first_excluded = next(i for i, r in enumerate(rows) if r.split is None)
    assert all(r.split is None for r in rows[first_excluded:])
    assert [s for _, s in kinds[:first_excluded]] == sorted((s for _, s in kinds[:first_excluded]),
                                                              key=lambda s: s != "train")


def test_reading_a_file_without_the_columns_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\nx.jpg,a\n")
    with pytest.raises(DatasetError, match="lacks column"):
        read_split_csv(bad)
