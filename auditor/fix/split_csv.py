"""The split as CSV: `path,label,split,group,reason`, every input file exactly once.

- kept rows: `split` names the split; `reason` says why a kept image is where it is (moved with its group,
  kept for its duplicates) or is empty;
- excluded rows: `split` is empty and `reason` is `<kind>: <detail>` (broken, not_indexed, label_conflict,
  suspect_label, duplicate);
- `group`: images sharing an id (g1, g2, …) are duplicates of each other or share a --group-by value, directly
  or through others; every kept image of a group is in one split. Empty for an image linked to none.

Rows are sorted: kept rows by split (train first), label and path, then excluded rows by path.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from auditor.errors import DatasetError
from auditor.fix.plan import SplitPlan, split_sort_key

COLUMNS = ("path", "label", "split", "group", "reason")


@dataclass(frozen=True)
class SplitRow:
    path: str
    label: str
    split: str | None  # None: excluded
    group: str
    reason: str


def split_rows(plan: SplitPlan) -> list[SplitRow]:
    rows = [SplitRow(item.path, item.label, placement.split, placement.group, placement.reason)
            for item, placement in plan.rows()]
    return sorted(rows, key=_row_order)


def _row_order(row: SplitRow) -> tuple:
    if row.split is None:
        return (1, (0, ""), "", row.path)
    return (0, split_sort_key(row.split), row.label, row.path)


def render_split_csv(rows: list[SplitRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([row.path, row.label, row.split or "", row.group, row.reason])
    return buffer.getvalue()


def write_split_csv(plan: SplitPlan, destination: Path) -> list[SplitRow]:
    """Write the CSV atomically (a reader never sees half of it); returns the rows written."""
    from auditor.atomic import atomic_write_text

    rows = split_rows(plan)
    atomic_write_text(Path(destination), render_split_csv(rows))
    return rows


def read_split_csv(source: Path) -> list[SplitRow]:
    """Read a split CSV back (the columns may come in any order; more columns are ignored)."""
    source = Path(source)
    try:
        with source.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [c.strip().lower() for c in next(reader, [])]
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise DatasetError(f"{source.name} lacks column(s) {', '.join(missing)}",
                                   f"A split CSV starts with the line {','.join(COLUMNS)}.")
            col = {name: header.index(name) for name in COLUMNS}
            rows = []
            for line_number, cells in enumerate(reader, start=2):
                if not cells:
                    continue
                if len(cells) < len(header):
                    raise DatasetError(f"{source.name}:{line_number}: {len(cells)} cells, the header has {len(header)}",
                                       "Check the file's quoting.")
                split = cells[col["split"]]
                rows.append(SplitRow(cells[col["path"]], cells[col["label"]], split or None, cells[col["group"]],
                                     cells[col["reason"]]))
    except UnicodeDecodeError:
        raise DatasetError(f"{source.name} is not UTF-8 text", "Save it as UTF-8 CSV.") from None
    except csv.Error as exc:
        raise DatasetError(f"{source.name} is not valid CSV: {exc}", "Check its quoting.") from None
    return rows
