"""Before/after statistics of a re-split, as a plain JSON-able dict: `split_statistics(plan)`.

Leaks and conflicts are counted from the duplicate groups the plan was given, the way the audit's `leakage`
and `label_conflicts` checks count them: a held-out image leaks when a member of its group is in train
(with no train split: when its group spans splits); a conflict is a group whose members carry two labels.
"after" is recomputed from the placements, never assumed.
"""

from __future__ import annotations

import math

from auditor.fix.items import EXCLUSION_KINDS, Item
from auditor.fix.plan import SplitPlan, split_sort_key

ROUND = 2


def split_statistics(plan: SplitPlan) -> dict:
    items, placements, request = plan.items, plan.placements, plan.request
    today = [item.split for item in items]
    after = [p.split for p in placements]
    kept = [i for i, s in enumerate(after) if s is not None]
    by_kind: dict[str, int] = {}
    for p in placements:
        if p.excluded is not None:
            by_kind[p.excluded.kind] = by_kind.get(p.excluded.kind, 0) + 1
    by_kind = {k: by_kind[k] for k in sorted(by_kind, key=lambda k: (EXCLUSION_KINDS.index(k) if k in EXCLUSION_KINDS else 99, k))}
    routes: dict[str, int] = {}
    for i in kept:
        if today[i] is not None and today[i] != after[i]:
            route = f"{today[i]} → {after[i]}"
            routes[route] = routes.get(route, 0) + 1
    has_together = any(item.together for item in items)
    stats: dict = {
        "mode": "keep-existing" if request.keep_existing else "fractions",
        "seed": request.seed,
        "dedupe": request.dedupe,
        "requested": dict(request.fractions) if request.fractions else None,
        "files": len(items),
        "kept": len(kept),
        "excluded": {"total": len(items) - len(kept), "by_kind": by_kind},
        "moved": {"total": sum(routes.values()), "by_route": dict(sorted(routes.items()))},
        "before": _state(items, list(range(len(items))), today, has_together),
        "after": _state(items, kept, after, has_together),
        "notes": list(request.notes),
        "warnings": [],
    }
    before_sizes = stats["before"]["splits"]
    stats["sizes"] = {s: {"before": before_sizes.get(s, {}).get("images", 0),
                          "after": stats["after"]["splits"].get(s, {}).get("images", 0)}
                      for s in sorted(set(before_sizes) | set(plan.splits), key=split_sort_key)}
    # A split left without any image (every image of the dataset one picture, or conflicting copies): the CSV is
    # written, but nothing can be trained or measured on it — said first, and the command exits 1.
    stats["empty_splits"] = [s for s in plan.splits if not stats["after"]["splits"].get(s, {}).get("images", 0)]
    for split in stats["empty_splits"]:
        stats["warnings"].append(f"{split} is empty after the split ({stats['sizes'].get(split, {}).get('before', 0)} "
                                 f"images before, {len(kept)} of {len(items)} kept in all): nothing can be "
                                 f"{'trained' if split == plan.reference else 'measured'} on it")
    if not request.keep_existing:
        stats["targets"] = _targets(plan, kept)
        stats["warnings"].extend(_explain(plan, kept, stats["targets"]))
    else:
        for split, sizes in stats["sizes"].items():
            if split != plan.reference and sizes["before"] and sizes["after"] < 0.9 * sizes["before"]:
                stats["warnings"].append(
                    f"{split} shrinks from {sizes['before']} to {sizes['after']} images "
                    f"({_pct(sizes['after'] / sizes['before'] - 1, signed=True)}): most of its leaking groups "
                    "had more copies in another split; pass --fractions to rebuild the shares")
    for label in plan.classes:
        missing = [s for s in plan.splits if not stats["after"]["splits"].get(s, {}).get("classes", {}).get(label)]
        if missing:
            stats["warnings"].append(f"class {label!r} has no image in {', '.join(missing)}")
    return stats


def _state(items: list[Item], positions: list[int], split_of: list[str | None], has_together: bool) -> dict:
    splits: dict[str, dict] = {}
    for i in positions:
        s = split_of[i]
        if s is None:
            continue
        row = splits.setdefault(s, {"images": 0, "classes": {}})
        row["images"] += 1
        row["classes"][items[i].label] = row["classes"].get(items[i].label, 0) + 1
    splits = {s: {"images": splits[s]["images"], "classes": dict(sorted(splits[s]["classes"].items()))}
              for s in sorted(splits, key=split_sort_key)}
    groups: dict[str, list[int]] = {}
    for i in positions:
        if items[i].duplicate_group is not None and split_of[i] is not None:
            groups.setdefault(items[i].duplicate_group, []).append(i)
    reference = "train" if "train" in splits else None
    leaked: dict[str, set[int]] = {s: set() for s in splits if s != reference}
    spanning = conflicts = conflict_images = 0
    for members in groups.values():
        member_splits = {split_of[i] for i in members}
        if len({items[i].label for i in members}) > 1:
            conflicts += 1
            conflict_images += len(members)
        if len(member_splits) < 2:
            continue
        spanning += 1
        if reference is not None and reference not in member_splits:
            continue  # held-out splits sharing an image: not a leak into training (as the leakage check counts)
        for i in members:
            if split_of[i] != reference:
                leaked[split_of[i]].add(i)
    per_split = {s: {"images": splits[s]["images"], "leaked": len(leaked[s]),
                     "percent": round(100.0 * len(leaked[s]) / splits[s]["images"], ROUND) if splits[s]["images"] else 0.0}
                 for s in leaked}
    state = {
        "splits": splits,
        "leaks": {"groups_spanning_splits": spanning, "leaked_images": sum(len(v) for v in leaked.values()),
                  "per_split": per_split},
        "conflicts": {"groups": conflicts, "images": conflict_images},
    }
    if has_together:
        keys: dict[str, set[str]] = {}
        for i in positions:
            if split_of[i] is not None:
                for key in items[i].together:
                    keys.setdefault(key, set()).add(split_of[i])
        state["group_by_values_spanning_splits"] = sum(1 for v in keys.values() if len(v) > 1)
    return state


def _targets(plan: SplitPlan, kept: list[int]) -> dict:
    request, items, placements = plan.request, plan.items, plan.placements
    fractions = request.fractions
    total = len(kept)
    class_total: dict[str, int] = {}
    cell: dict[tuple[str, str], int] = {}
    size: dict[str, int] = {}
    for i in kept:
        label, split = items[i].label, placements[i].split
        class_total[label] = class_total.get(label, 0) + 1
        cell[(split, label)] = cell.get((split, label), 0) + 1
        size[split] = size.get(split, 0) + 1
    per_split = {}
    for s in plan.splits:
        share = size.get(s, 0) / total if total else 0.0
        error = 100.0 * (share - fractions[s])
        per_split[s] = {"requested": fractions[s], "images": size.get(s, 0), "share": round(share, 4),
                        "error_points": round(error, ROUND),
                        "within": abs(error) <= 100.0 * request.size_tolerance + 1e-9}
    per_class = {}
    for label in plan.classes:
        n = class_total.get(label, 0)
        row = {"images": n, "splits": {}}
        for s in plan.splits:
            count = cell.get((s, label), 0)
            share = count / n if n else 0.0
            error = 100.0 * (share - fractions[s])
            row["splits"][s] = {"images": count, "share": round(share, 4), "error_points": round(error, ROUND),
                                "within": abs(error) <= 100.0 * request.class_tolerance + 1e-9}
        per_class[label] = row
    worst_class = max((abs(c["error_points"]) for r in per_class.values() for c in r["splits"].values()), default=0.0)
    worst_size = max((abs(r["error_points"]) for r in per_split.values()), default=0.0)
    return {
        "class_tolerance_points": round(100 * request.class_tolerance, ROUND),
        "size_tolerance_points": round(100 * request.size_tolerance, ROUND),
        "per_split": per_split,
        "per_class": per_class,
        "worst_class_error_points": round(worst_class, ROUND),
        "worst_size_error_points": round(worst_size, ROUND),
        "met": all(r["within"] for r in per_split.values())
               and all(c["within"] for r in per_class.values() for c in r["splits"].values()),
    }


def _explain(plan: SplitPlan, kept: list[int], targets: dict) -> list[str]:
    """Why a missed target was missed: too few images to divide (rounding), groups too large, or neither."""
    items, request = plan.items, plan.request
    unit_sizes: dict[int, dict[str, int]] = {}
    for i in kept:
        classes = unit_sizes.setdefault(plan.unit_of[i], {})
        classes[items[i].label] = classes.get(items[i].label, 0) + 1
    warnings = []
    total = len(kept)
    for split, row in targets["per_split"].items():
        if row["within"]:
            continue
        wanted = row["requested"] * total
        best = _rounding_error(wanted, total)
        largest = max((sum(c.values()) for c in unit_sizes.values()), default=0)
        why = (f"{total} images cannot be divided more finely (closest possible: {_pct(best, signed=False)} off)"
               if best > request.size_tolerance else
               f"groups are too large to balance (the largest has {largest} images)"
               if largest > request.size_tolerance * total else "the optimiser did not find a closer split")
        warnings.append(f"{split} holds {row['images']} images ({_pct(row['share'])}), not {_pct(row['requested'])} "
                        f"of {total} (off by {abs(row['error_points']):.1f} points): {why}")
    for label, row in targets["per_class"].items():
        n = row["images"]
        misses = [(s, c) for s, c in row["splits"].items() if not c["within"]]
        if not misses:
            continue
        shares = ", ".join(f"{s} {c['images']} ({_pct(c['share'])})" for s, c in row["splits"].items())
        wanted = ", ".join(f"{s} {_pct(request.fractions[s])}" for s in row["splits"])
        worst_rounding = max(_rounding_error(request.fractions[s] * n, n) for s, _ in misses)
        largest = max((c.get(label, 0) for c in unit_sizes.values()), default=0)
        if worst_rounding > request.class_tolerance:
            why = f"{n} image{'s' if n != 1 else ''} cannot be divided more finely"
        elif largest > request.class_tolerance * n:
            why = f"its images come in groups too large to balance (the largest holds {largest} of its {n})"
        else:
            why = "the optimiser did not find a closer split"
        warnings.append(f"class {label!r}: {shares} instead of {wanted}: {why}")
    return warnings


def _rounding_error(wanted: float, total: int) -> float:
    """The smallest share error any whole number of images gives."""
    if total == 0:
        return 0.0
    return abs(wanted - math.floor(wanted + 0.5)) / total


def _pct(value: float, signed: bool = False) -> str:
    text = f"{100 * value:+.1f} %" if signed else f"{100 * value:.1f} %"
    return text
