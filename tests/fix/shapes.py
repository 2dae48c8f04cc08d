"""Random dataset shapes for the re-split tests and bench/bench_split.py: classes of mixed sizes, duplicate
groups of mixed sizes (mostly single images), optionally sources spanning classes, optionally one huge group."""

from __future__ import annotations

import numpy as np

from auditor.fix.items import Item

FRACTION_CHOICES = (
    {"train": 0.8, "val": 0.2},
    {"train": 0.9, "val": 0.1},
    {"train": 0.5, "val": 0.5},
    {"train": 0.7, "val": 0.2, "test": 0.1},
    {"train": 0.6, "val": 0.2, "test": 0.2},
    {"train": 0.75, "val": 0.15, "test": 0.1},
)


def random_items(rng: np.random.Generator, min_class: int = 60, max_class: int = 1500, max_classes: int = 8,
                 group_share: float = 0.2, max_group: int = 12, sources: bool = False, huge_group: int = 0,
                 current_splits: bool = True, n_classes: int | None = None) -> list[Item]:
    """Items with labels, today's split (80/20 at random, so groups leak), duplicate groups and sources."""
    items: list[Item] = []
    n_classes = n_classes or int(rng.integers(2, max_classes + 1))
    group_counter = 0
    for c in range(n_classes):
        n = int(rng.integers(min_class, max_class + 1))
        i = 0
        if huge_group and c == 0:
            size = min(huge_group, n)
            source = _source(rng, sources)
            items += [_item(rng, c, i + k, f"d{group_counter}", source, current_splits) for k in range(size)]
            group_counter += 1
            i += size
        while i < n:
            size = 1 if rng.random() >= group_share else int(rng.integers(2, max_group + 1))
            size = min(size, n - i)
            group = f"d{group_counter}" if size > 1 else None
            group_counter += 1
            source = _source(rng, sources)  # copies come from one source
            items += [_item(rng, c, i + k, group, source, current_splits) for k in range(size)]
            i += size
    return items


def _source(rng, sources: bool) -> tuple[str, ...]:
    """Half the images come from one of 200 sources (each spanning classes), the rest have none."""
    return (f"source={int(rng.integers(0, 200))}",) if sources and rng.random() < 0.5 else ()


def _item(rng, c: int, k: int, group: str | None, together: tuple[str, ...], current_splits: bool) -> Item:
    split = ("train" if rng.random() < 0.8 else "val") if current_splits else None
    return Item(path=f"c{c}/{k:05d}.jpg", label=f"class{c}", split=split, duplicate_group=group, together=together)
