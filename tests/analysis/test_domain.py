"""Tests for `auditor.analysis.domain`: the per-split and per-class content lists the shift tests sample from."""

from __future__ import annotations

import numpy as np

from auditor.analysis import domain
from auditor.encoding.imaging import Problem
from tests.checks.synthetic_audit import synthetic_context


def _loop_by_split(ctx) -> dict[str, dict[str, int]]:
    """The definition, one record at a time (how it was computed before the record columns)."""
    grouped: dict[str, dict[str, int]] = {}
    for p in ctx.usable_positions:
        grouped.setdefault(ctx.records[p].split, {}).setdefault(ctx.encoded.record_sha[p], p)
    return grouped


def _loop_by_class(ctx, split: str) -> dict[str, dict[str, None]]:
    by_class: dict[str, dict[str, None]] = {}
    for p in ctx.usable_positions:
        if ctx.records[p].split == split:
            by_class.setdefault(ctx.records[p].label, {})[ctx.encoded.record_sha[p]] = None
    return by_class


def test_contents_by_split_and_class_are_the_record_loops_in_the_same_order():
    """Copies across splits and classes, a content filed under two labels, unusable records, and splits and
    contents met out of order: the same dicts, in the same order (the seeded subsamples depend on it)."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(400):
        split = ["val", "train", "test"][int(rng.integers(0, 3))]
        label = ["ant", "bee", "wasp"][int(rng.integers(0, 3))]
        item = {"path": f"{split}/{label}/{i}.jpg", "split": split, "label": label,
                "content": f"c{int(rng.integers(0, 150))}"}  # many copies of 150 contents
        if i % 37 == 0:
            item = {**item, "content": f"broken{i}", "problems": [Problem("decode_error", "error", "cannot decode")]}
        items.append(item)
    ctx = synthetic_context(items, with_embeddings=False)
    assert len(ctx.usable_positions) < len(items)
    by_split = domain.unique_by_split(ctx)
    expected = _loop_by_split(ctx)
    assert list(by_split) == list(expected) == ["val", "test", "train"]  # as first met, not sorted
    for split in expected:
        assert list(by_split[split].items()) == list(expected[split].items())
        by_class = domain.contents_by_class(ctx, split)
        assert {c: list(s) for c, s in by_class.items()} == {c: list(s) for c, s in _loop_by_class(ctx, split).items()}
    assert domain.contents_by_class(ctx, "holdout") == {}
