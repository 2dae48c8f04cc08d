"""The plain inputs of a re-split: one Item per input file, and the request.

Nothing here knows about the audit context: an Item is a path, a label, today's split, the audit's
duplicate group and any other keys that must keep images together (`--group-by`), and, when the audit
already excludes it (a broken file, a probable wrong label), why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from auditor.errors import ConfigError

# Exclusion kinds, in the order the output lists them.
BROKEN = "broken"  # the file cannot be used as an image
NOT_INDEXED = "not_indexed"  # the walk found the file but it is no image of a class (beside the class folders, …)
LABEL_CONFLICT = "label_conflict"  # its duplicates carry another label
SUSPECT_LABEL = "suspect_label"  # label_issues: probably the wrong label, strong evidence
DUPLICATE = "duplicate"  # --dedupe: another copy of it is kept
EXCLUSION_KINDS = (BROKEN, NOT_INDEXED, LABEL_CONFLICT, SUSPECT_LABEL, DUPLICATE)

REFERENCE_SPLIT = "train"
CLASS_TOLERANCE = 0.02  # per-class share of each split: within ±2 points of the request
SIZE_TOLERANCE = 0.01  # each split's share of the kept images: within ±1 point of the request

_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Exclusion:
    kind: str  # one of EXCLUSION_KINDS
    detail: str  # a sentence for people: "truncated JPEG", "duplicate of train/a/1.jpg"

    def text(self) -> str:
        return f"{self.kind}: {self.detail}" if self.detail else self.kind


@dataclass(frozen=True)
class Item:
    """One input file."""

    path: str  # unique; relative to the dataset root (the CSV's path column)
    label: str
    split: str | None = None  # today's split; None when the file has none
    duplicate_group: str | None = None  # the audit's duplicate group (exact or near); None: no copy
    together: tuple[str, ...] = ()  # other keys whose images must share one split (--group-by source)
    excluded: Exclusion | None = None  # why the audit leaves it out, before any re-split logic
    rank: float = 0.0  # --dedupe: among copies, the lowest rank is kept (e.g. minus the pixel count)


@dataclass(frozen=True)
class SplitRequest:
    """What to write. `fractions` None: keep today's splits and move as few images as possible."""

    fractions: dict[str, float] | None = None
    seed: int = 0
    dedupe: bool = False
    class_tolerance: float = CLASS_TOLERANCE
    size_tolerance: float = SIZE_TOLERANCE
    notes: tuple[str, ...] = field(default_factory=tuple)  # said in the output as given (e.g. what was grouped by)

    @property
    def keep_existing(self) -> bool:
        return self.fractions is None

    def reference(self, splits: list[str]) -> str | None:
        """The split copies are kept in with --dedupe: train, else the largest requested, else the first."""
        if REFERENCE_SPLIT in splits:
            return REFERENCE_SPLIT
        if self.fractions:
            return max(self.fractions, key=lambda s: (self.fractions[s], -list(self.fractions).index(s)))
        return splits[0] if splits else None


def parse_fractions(text: str) -> dict[str, float]:
    """`train=0.8,val=0.2` (or percentages, `train=80,val=20`) → {"train": 0.8, "val": 0.2}.

    Split names become folder names: letters, digits, `_`, `-`, `.`, starting with a letter or digit."""
    tip = "Write --fractions like train=0.8,val=0.2 or train=0.7,val=0.2,test=0.1 (shares that add up to 1)."
    fractions: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--fractions: {part!r} is not NAME=SHARE", tip)
        if not _SPLIT_NAME.match(name) or name in (".", ".."):
            raise ConfigError(f"--fractions: split name {name!r} cannot be a folder name", tip)
        if name in fractions:
            raise ConfigError(f"--fractions: split {name!r} is given twice", tip)
        try:
            share = float(value)
        except ValueError:
            raise ConfigError(f"--fractions: {value.strip()!r} is not a number", tip) from None
        if not share > 0 or share != share or share == float("inf"):
            raise ConfigError(f"--fractions: the share of {name!r} must be above 0; got {value.strip()}", tip)
        fractions[name] = share
    if len(fractions) < 2:
        raise ConfigError("--fractions needs two or more splits", tip)
    total = sum(fractions.values())
    if abs(total - 100.0) < 1e-6:
        fractions = {k: v / 100.0 for k, v in fractions.items()}
    elif abs(total - 1.0) > 1e-6:
        raise ConfigError(f"--fractions add up to {total:g}, not 1 (or 100)", tip)
    return fractions
