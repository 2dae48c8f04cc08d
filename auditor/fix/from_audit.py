"""From an audit context to the re-split's plain Items. Only the context's public methods are used, so the
duplicate decision (which images are copies) stays the audit's own:

- every record is an Item (path, label, today's split); unusable files are excluded as `broken`;
- duplicate groups come from `ctx.duplicate_groups` (exact and near, at the audit's thresholds) and the accepted
  pairs left out of them (`linked_groups`); groups that share a member are merged, so the re-split keeps together
  whatever the audit links;
- `--group-by source` uses each record's source; `--group-by COLUMN` a column of the manifest;
- `--drop-suspect-labels` excludes the images `label_issues` flags with strong evidence;
- files the walk found but could not index as an image of a class are excluded as `not_indexed`.
"""

from __future__ import annotations

import csv
from pathlib import Path

from auditor.errors import ConfigError
from auditor.fix.items import BROKEN, NOT_INDEXED, SUSPECT_LABEL, Exclusion, Item

# Walk issues that name one file the user put in the dataset (others name folders or manifest lines).
FILE_ISSUES = ("unlabelled_file", "loose_file", "ignored_by_keras", "broken_link")


def items_from_audit(ctx, group_by: str | None = None, drop_suspect_labels: bool = False,
                     extra_groups: list[list[int]] | None = None) -> tuple[list[Item], list[str]]:
    """Items for every input file, and notes for the output (what was grouped by, what could not be judged).
    `extra_groups`: more groups of record positions to keep together (fix.verify adds what a re-audit links)."""
    records = ctx.records
    notes: list[str] = []
    group_of = _duplicate_group_ids(linked_groups(ctx) + list(extra_groups or []), len(records))
    together = _group_keys(ctx, group_by, notes) if group_by else [()] * len(records)
    suspects = _suspect_labels(ctx, notes) if drop_suspect_labels else {}
    items: list[Item] = []
    for position, record in enumerate(records):
        excluded = None
        if not ctx.is_usable(position):
            excluded = Exclusion(BROKEN, _why_unusable(ctx, position))
        elif position in suspects:
            excluded = Exclusion(SUSPECT_LABEL, suspects[position])
        items.append(Item(path=record.path, label=record.label, split=record.split,
                          duplicate_group=group_of.get(position), together=together[position], excluded=excluded,
                          rank=-_pixels(ctx, position)))
    known = {item.path for item in items}
    for issue in getattr(ctx.index, "issues", []):
        if issue.kind in FILE_ISSUES and issue.path not in known:
            known.add(issue.path)
            items.append(Item(path=issue.path, label="", excluded=Exclusion(NOT_INDEXED, issue.message)))
    return items, notes


def linked_groups(ctx) -> list[list[int]]:
    """The audit's duplicate groups and, as groups of two images' records, the accepted pairs left out of them.

    A group holds images that are all duplicates of each other, so a pair the rule accepts can fall between two
    groups (A≈B≈C with A≉C; frames of one clip whose every pair the rule does not accept). A split that kept only the
    groups together put such pairs on both sides of a split reported leak-free: of 20 clips × 30 near-identical
    frames, 3 with today's splits kept, 9 with --fractions train=0.8,val=0.2. Kept together, a chain of look-alikes
    stays in one split, which costs a split little (the largest such unit on the truth rows of bench_truth.py holds
    6 images)."""
    graph = ctx.duplicate_graph
    positions = [ctx.positions_by_sha[sha] for sha in graph.shas]
    chained = [positions[a] + positions[b] for a, b in graph.chained_edges().tolist()]
    return ctx.duplicate_groups + chained


def _duplicate_group_ids(groups: list[list[int]], count: int) -> dict[int, str]:
    """Record position → group id; groups sharing a member are one group (the audit's groups may overlap)."""
    parent = list(range(count))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for group in groups:
        for member in group[1:]:
            a, b = find(group[0]), find(member)
            if a != b:
                parent[max(a, b)] = min(a, b)
    members: dict[int, list[int]] = {}
    for group in groups:
        for p in group:
            members.setdefault(find(p), []).append(p)
    return {p: f"d{root}" for root, ps in members.items() if len(set(ps)) > 1 for p in ps}


def _group_keys(ctx, group_by: str, notes: list[str]) -> list[tuple[str, ...]]:
    records = ctx.records
    if group_by == "source":
        values = [r.source for r in records]
        if not any(values):
            raise ConfigError("--group-by source: no image has a source",
                              "Give sources with --source-depth N (folders below the class folder) or a manifest "
                              "column named source.")
    else:
        manifest = getattr(ctx.config, "manifest", None)
        if manifest is None:
            raise ConfigError(f"--group-by {group_by!r} names a manifest column, but no --manifest was given",
                              "Use --group-by source, or pass --manifest FILE.csv with that column.")
        by_path = read_manifest_column(Path(manifest), group_by)
        values = [by_path.get(r.path) for r in records]
    grouped = sum(1 for v in values if v)
    distinct = len({v for v in values if v})
    notes.append(f"grouped by {group_by}: {grouped} images in {distinct} {group_by} values never span two splits"
                 + (f"; {len(values) - grouped} images have no {group_by} and are grouped by duplicates only"
                    if grouped < len(values) else ""))
    return [(f"{group_by}={v}",) if v else () for v in values]


def read_manifest_column(manifest: Path, column: str) -> dict[str, str]:
    """path → the value of `column` in a manifest (case-insensitive column name; empty cells are left out)."""
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [c.strip().lower() for c in next(reader, [])]
            if column.lower() not in header or "path" not in header:
                raise ConfigError(f"--group-by {column!r}: the manifest {manifest.name} has no such column "
                                  f"(columns: {', '.join(header) or 'none'})", "Name one of its columns, or source.")
            path_col, value_col = header.index("path"), header.index(column.lower())
            return {row[path_col].strip(): row[value_col].strip() for row in reader
                    if len(row) > max(path_col, value_col) and row[value_col].strip()}
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read the manifest {manifest.name}: {exc}", "Check the file.") from None


def _suspect_labels(ctx, notes: list[str]) -> dict[int, str]:
    """Positions label_issues flags with strong evidence (the likeliest wrong labels by probe and neighbours) → why."""
    analysis = ctx.label_analysis
    if analysis.skipped_reason:
        notes.append(f"--drop-suspect-labels: label_issues could not judge the labels ({analysis.skipped_reason}); "
                     "no image excluded for its label")
        return {}
    flagged: dict[int, str] = {}
    for u, strong in enumerate(analysis.strong):
        if not strong:
            continue
        given = analysis.classes[int(analysis.unit_labels[u])]
        suggested = analysis.classes[int(analysis.probs[u].argmax())]
        for p in analysis.unit_positions[u]:
            flagged[p] = (f"filed as {given!r}, looks like {suggested!r} "
                          f"(p = {float(analysis.probs[u].max()):.2f}; among the likeliest wrong labels by probe and "
                          "neighbours)")
    notes.append(f"--drop-suspect-labels: {len(flagged)} images with strong evidence of a wrong label excluded"
                 + (f"; classes not judged (too few images): {', '.join(analysis.excluded_classes)}"
                    if analysis.excluded_classes else ""))
    return flagged


def _why_unusable(ctx, position: int) -> str:
    problem = ctx.encoded.read_problems.get(position)
    if problem is not None:
        return problem.message
    sha = ctx.sha(position)
    scan = ctx.encoded.scans.get(sha) if sha else None
    errors = [p.message for p in (scan.problems if scan else []) if p.severity == "error"]
    return "; ".join(errors) or "not a usable image"


def _pixels(ctx, position: int) -> float:
    sha = ctx.sha(position)
    scan = ctx.encoded.scans.get(sha) if sha else None
    if scan is None or not scan.width or not scan.height:
        return 0.0
    return float(scan.width * scan.height)


def plan_from_audit(ctx, request, group_by: str | None = None, drop_suspect_labels: bool = False):
    """The re-split of an audited dataset, verified against what an audit of it would decide (fix.verify):
    (SplitPlan, notes, verification). The first len(ctx.records) items are the records, in order, so a kept
    item's index is its record position (see positions_by_split)."""
    from auditor.fix.verify import verified_plan

    return verified_plan(ctx, request, group_by, drop_suspect_labels)


def positions_by_split(plan, record_count: int) -> dict[str, list[int]]:
    """Record positions per split of the plan (excluded records and walk-only files are in none)."""
    result: dict[str, list[int]] = {s: [] for s in plan.splits}
    for position, placement in enumerate(plan.placements[:record_count]):
        if placement.split is not None:
            result[placement.split].append(position)
    return result


def counterfactual_split(ctx, seed: int, made_holdout: float | None = None) -> tuple[dict[str, list[int]], dict]:
    """The split `gap_attribution`'s counterfactual should train and validate on: exactly what
    `auditor split --keep-existing --dedupe --seed SEED` writes for this dataset (or, when the fine-tune made its
    own held-out split, `--fractions train=1-h,val=h`). Leaking held-out copies are excluded as duplicates of
    their train copy (none moves), conflicts are excluded, one copy per group is kept.

    Returns (record positions per split, the split statistics)."""
    from auditor.fix.items import SplitRequest
    from auditor.fix.stats import split_statistics

    fractions = None if made_holdout is None else {"train": 1.0 - made_holdout, "val": made_holdout}
    plan, _notes, verification = plan_from_audit(ctx, SplitRequest(fractions=fractions, seed=seed, dedupe=True))
    stats = split_statistics(plan)
    stats["verification"] = verification
    return positions_by_split(plan, len(ctx.records)), stats
