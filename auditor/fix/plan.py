"""The re-split, from Items to a placement of every input file: `plan_split(items, request)`.

Order of decisions (each one a reason in the CSV):
1. the audit's own exclusions (broken files, files without a label, with --drop-suspect-labels probable wrong
   labels) are kept as given;
2. label conflicts: every remaining member of a duplicate group whose remaining members carry two or more
   labels is excluded (which copy is right is not knowable from the images);
3. --dedupe: one member of every remaining duplicate group is kept (a member in train first, then the lowest
   rank, then the first path); the others are excluded as `duplicate of <kept path>`;
4. units: the kept images linked by a shared duplicate group or --group-by key (connected components), so
   every unit lies in one split;
5. assignment: by fractions (stratified, group-aware, seeded) or keep-existing (fewest images moved).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from auditor.errors import ConfigError
from auditor.fix.assign import Unit, assign_by_fractions, assign_keep_existing
from auditor.fix.items import DUPLICATE, LABEL_CONFLICT, Exclusion, Item, SplitRequest

SPLIT_ORDER = ("train", "val", "valid", "validation", "test")


def split_sort_key(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


@dataclass(frozen=True)
class Placement:
    """Where one input file goes: a split, or None with an exclusion."""

    split: str | None
    group: str  # images sharing a group id are linked (duplicates or one --group-by value); "" alone
    reason: str  # the exclusion, or why a kept image is where it is ("" when there is nothing to say)
    excluded: Exclusion | None = None


@dataclass
class SplitPlan:
    items: list[Item]
    placements: list[Placement]
    request: SplitRequest
    splits: list[str]  # the splits written, in order
    classes: list[str]  # labels of kept images
    reference: str | None
    unit_of: list[int] = field(default_factory=list)  # item → unit index (-1: excluded)

    def rows(self) -> list[tuple[Item, Placement]]:
        return list(zip(self.items, self.placements))

    def kept(self, split: str | None = None) -> list[int]:
        return [i for i, p in enumerate(self.placements) if p.split is not None and (split is None or p.split == split)]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, x):
        parent = self.parent
        parent.setdefault(x, x)
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb, key=repr)] = min(ra, rb, key=repr)


def plan_split(items: list[Item], request: SplitRequest) -> SplitPlan:
    """Place every item: a split, or excluded with a reason. Deterministic for a given seed."""
    paths = [item.path for item in items]
    if len(set(paths)) != len(paths):
        seen: set[str] = set()
        twice = next(p for p in paths if p in seen or seen.add(p))
        raise ConfigError(f"the file {twice!r} is listed twice", "Each input file must appear once.")
    excluded: list[Exclusion | None] = [item.excluded for item in items]
    _exclude_conflicts(items, excluded)
    all_splits = sorted({i.split for i in items if i.split}, key=split_sort_key)
    if request.keep_existing:
        splits = sorted({items[i].split for i in range(len(items)) if excluded[i] is None and items[i].split},
                        key=split_sort_key) or all_splits
        if len(set(all_splits)) < 2:
            raise ConfigError("--keep-existing needs a dataset with two or more splits; this one has "
                              + (f"only {all_splits[0]!r}" if all_splits else "none"),
                              "Pass --fractions train=0.8,val=0.2 to make a split.")
    else:
        splits = list(request.fractions)
    reference = request.reference(splits)
    representative: dict[int, int] = {}
    if request.dedupe:
        representative = _dedupe(items, excluded, reference)
    units, unit_of = _units(items, excluded)
    classes = sorted({items[i].label for i in range(len(items)) if excluded[i] is None})
    class_index = {c: k for k, c in enumerate(classes)}
    split_index = {s: k for k, s in enumerate(splits)}
    plain_units: list[Unit] = []
    for members in units:
        counts: dict[int, int] = {}
        current: dict[int, int] = {}
        for i in members:
            c = class_index[items[i].label]
            counts[c] = counts.get(c, 0) + 1
            if items[i].split in split_index:
                s = split_index[items[i].split]
                current[s] = current.get(s, 0) + 1
        pinned = None
        if not request.keep_existing and len(members) == 1 and members[0] in representative and reference:
            pinned = split_index[reference]  # --dedupe keeps the representative in train
        plain_units.append(Unit(members=members, counts=counts, current=current, pinned=pinned))
    if request.keep_existing:
        where = assign_keep_existing(plain_units, len(splits), split_index.get(reference) if reference else None)
    else:
        where = assign_by_fractions(plain_units, len(classes), [request.fractions[s] for s in splits], request.seed,
                                    request.class_tolerance, request.size_tolerance)
    group_ids = _group_ids(items, excluded, units, unit_of)
    placements: list[Placement] = []
    for i, item in enumerate(items):
        group = group_ids.get(i, "")
        if excluded[i] is not None:
            placements.append(Placement(split=None, group=group, reason=excluded[i].text(), excluded=excluded[i]))
            continue
        u = unit_of[i]
        split = splits[where[u]]
        placements.append(Placement(split=split, group=group,
                                    reason=_kept_reason(item, split, plain_units[u], representative.get(i), request,
                                                                       splits)))
    return SplitPlan(items=list(items), placements=placements, request=request, splits=splits, classes=classes,
                     reference=reference, unit_of=unit_of)


def _members_by_group(items: list[Item], excluded: list[Exclusion | None]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        if item.duplicate_group is not None and excluded[i] is None:
            groups.setdefault(item.duplicate_group, []).append(i)
    return groups


def _exclude_conflicts(items: list[Item], excluded: list[Exclusion | None]) -> None:
    for members in _members_by_group(items, excluded).values():
        labels = sorted({items[i].label for i in members})
        if len(labels) < 2:
            continue
        detail = f"{len(members)} copies of one image carry labels " + ", ".join(repr(label) for label in labels)
        for i in members:
            excluded[i] = Exclusion(LABEL_CONFLICT, detail)


def _dedupe(items: list[Item], excluded: list[Exclusion | None], reference: str | None) -> dict[int, int]:
    """Keep one member per duplicate group; returns kept position → how many copies it stands for."""
    kept: dict[int, int] = {}
    for members in _members_by_group(items, excluded).values():
        if len(members) < 2:
            continue
        best = min(members, key=lambda i: (items[i].split != reference, items[i].rank, items[i].path))
        kept[best] = len(members) - 1
        for i in members:
            if i != best:
                excluded[i] = Exclusion(DUPLICATE, f"duplicate of {items[best].path}")
    return kept


def _units(items: list[Item], excluded: list[Exclusion | None]) -> tuple[list[list[int]], list[int]]:
    """Connected components of kept items through shared duplicate groups and --group-by keys."""
    links = _UnionFind()
    for i, item in enumerate(items):
        if excluded[i] is not None:
            continue
        links.find(("item", i))
        if item.duplicate_group is not None:
            links.union(("item", i), ("dup", item.duplicate_group))
        for key in item.together:
            links.union(("item", i), ("key", key))
    components: dict = {}
    for i in range(len(items)):
        if excluded[i] is None:
            components.setdefault(links.find(("item", i)), []).append(i)
    units = sorted(components.values(), key=lambda members: items[members[0]].path)
    unit_of = [-1] * len(items)
    for u, members in enumerate(units):
        for i in members:
            unit_of[i] = u
    return units, unit_of


def _group_ids(items: list[Item], excluded: list[Exclusion | None], units: list[list[int]],
               unit_of: list[int]) -> dict[int, str]:
    """g1, g2, …: kept units of two or more images, joined by their excluded copies; then groups of excluded
    images only (label conflicts). Numbered in path order."""
    by_dup: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        if item.duplicate_group is not None:
            by_dup.setdefault(item.duplicate_group, []).append(i)
    shown_units: dict[int, list[int]] = {}
    excluded_groups: list[list[int]] = []
    for members in by_dup.values():
        if len(members) < 2:
            continue
        kept_units = {unit_of[i] for i in members if unit_of[i] >= 0}
        if kept_units:
            target = min(kept_units)
            for i in members:
                if unit_of[i] < 0:
                    shown_units.setdefault(target, []).append(i)
        else:
            excluded_groups.append(sorted(members, key=lambda i: items[i].path))
    named: list[list[int]] = []
    for u, members in enumerate(units):
        extra = shown_units.get(u, [])
        if len(members) + len(extra) > 1:
            named.append(sorted(members + extra, key=lambda i: items[i].path))
    named.extend(excluded_groups)
    named.sort(key=lambda members: items[members[0]].path)
    ids: dict[int, str] = {}
    for n, members in enumerate(named, start=1):
        for i in members:
            ids.setdefault(i, f"g{n}")
    return ids


def _kept_reason(item: Item, split: str, unit: Unit, copies: int | None, request: SplitRequest,
                 splits: list[str]) -> str:
    parts = []
    if copies:
        parts.append(f"kept for {copies} excluded duplicate{'s' if copies > 1 else ''}")
    if request.keep_existing and item.split and item.split != split:
        here = unit.current.get(splits.index(split), 0)
        there = unit.current.get(splits.index(item.split), 0) if item.split in splits else 0
        parts.append(f"moved from {item.split} to {split} with its group ({unit.size} images: {here} in {split}, "
                     f"{there} in {item.split})")
    return "; ".join(parts)
