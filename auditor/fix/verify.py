"""Judge a planned split the way an audit of the written split will, before writing it.

An audit of the materialized folder calibrates its cosine threshold afresh on the images it sees. Without the
excluded copies (or with the images in another order, which changes the calibration sample) that threshold can
differ from the one the split was planned with, and a lower one links images the first decision did not
(measured: cats_and_dogs with planted leaks, `--keep-existing --dedupe`: 0.98 at planning, 0.95 on re-audit, one
leak found). So `verified_plan` builds the context such an audit would build — the kept images laid out as
`--materialize` lays them out, walked in the same order, sharing the encodings and the cache — asks it for its
duplicate groups and the accepted pairs between them (`from_audit.linked_groups`), adds those that span splits or
labels to the plan's, and plans again, until an audit of the result finds nothing (at most `rounds` times). The
same settings as the re-audit are assumed (a re-audit with other thresholds can still decide otherwise; the output
states the thresholds).
"""

from __future__ import annotations

import dataclasses

from auditor.fix.items import SplitRequest

MAX_ROUNDS = 4


def split_context(ctx, plan):
    """(context of an audit of the written split, its record position → the original record position)."""
    from auditor.context import AuditContext
    from auditor.index.dataset import DatasetIndex, ImageRecord
    from auditor.encoding.encode import Encoded
    from auditor.fix.materialize import Entry, layout

    record_count = len(ctx.records)
    position_of = {ctx.records[p].path: p for p in range(record_count)}
    entries = [Entry(source=ctx.records[position_of[item.path]].abspath, path=item.path, split=placement.split,
                     label=item.label)
               for item, placement in plan.rows()[:record_count] if placement.split is not None]
    placed, _splits, _classes = layout(entries)
    # The order a walk of DEST yields: split folders, class folders, files, each sorted by name.
    placed.sort(key=lambda pair: tuple(pair[1].split("/")))
    records, origin = [], []
    for entry, relative in placed:
        split_folder, class_folder, _name = relative.split("/")
        records.append(ImageRecord(relative, entry.source, split=split_folder, label=class_folder))
        origin.append(position_of[entry.path])
    index = DatasetIndex(root=ctx.index.root, layout="splits", records=records)
    encoded = Encoded(record_sha=[ctx.encoded.record_sha[p] for p in origin], read_problems={},
                      scans=ctx.encoded.scans, embeddings=ctx.encoded.embeddings, thumbnails=ctx.encoded.thumbnails)
    return AuditContext(index=index, config=ctx.config, encoded=encoded, backbone=ctx.backbone, cache=ctx.cache,
                        pool=ctx.pool), origin


def verified_plan(ctx, request: SplitRequest, group_by: str | None = None, drop_suspect_labels: bool = False,
                  rounds: int = MAX_ROUNDS):
    """(plan, notes, verification): the plan an audit of the written split agrees with, when one is found."""
    from auditor.fix.from_audit import items_from_audit, linked_groups
    from auditor.fix.plan import plan_split
    from auditor.similarity.describe import decision_text

    extra: list[list[int]] = []
    history: list[dict] = []
    recalibrated = ctx.config.min_cosine is None or ctx.config.min_correlation is None  # the audit chooses its rule
    for round_number in range(1, rounds + 1):
        items, notes = items_from_audit(ctx, group_by, drop_suspect_labels, extra_groups=extra)
        plan = plan_split(items, dataclasses.replace(request, notes=tuple(request.notes) + tuple(notes)))
        if not recalibrated:  # the same thresholds decide the same pairs on any subset: nothing new to find
            return plan, notes, {"checked": False, "clean": True,
                                 "reason": "thresholds fixed (--min-cosine and --min-correlation given)"}
        audit_ctx, origin = split_context(ctx, plan)
        found = []
        for group in linked_groups(audit_ctx):
            members = [origin[p] for p in group]
            if len({plan.placements[m].split for m in members}) > 1 or len({items[m].label for m in members}) > 1:
                found.append(members)
        history.append({"round": round_number, "rule": decision_text(audit_ctx),
                        "groups_found": len(found), "images_in_them": sum(map(len, found))})
        if not found:
            return plan, notes, {"checked": True, "clean": True, "rounds": history}
        extra.extend(found)
    return plan, notes, {"checked": True, "clean": False, "rounds": history}
