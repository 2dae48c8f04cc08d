"""The index of a merge audit (`audit NEW --against EXISTING`): both datasets as one, with each record's origin.

Paths start with `incoming/` or `existing/`; either dataset may be a folder or a CSV manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from auditor.config import AuditConfig
from auditor.errors import DatasetError
from auditor.index.dataset import DatasetIndex, WalkIssue, load_dataset

INCOMING, EXISTING = "incoming", "existing"


@dataclass
class MergedIndex(DatasetIndex):
    """The union of two datasets; `origins[i]` says whether record i is incoming or existing."""

    origins: list[str] = field(default_factory=list)
    roots: dict[str, str] = field(default_factory=dict)

    @property
    def calibration_positions(self) -> list[int]:
        return [i for i, origin in enumerate(self.origins) if origin == EXISTING]

    def positions(self, origin: str) -> list[int]:
        return [i for i, o in enumerate(self.origins) if o == origin]

    def summary(self) -> dict:
        base = super().summary()
        base["against"] = {
            "incoming_root": self.roots[INCOMING],
            "existing_root": self.roots[EXISTING],
            "incoming_images": self.origins.count(INCOMING),
            "existing_images": self.origins.count(EXISTING),
        }
        return base


def load_one(path: Path, config: AuditConfig) -> DatasetIndex:
    """A dataset folder, or a manifest file (paths relative to the manifest's folder)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"the existing dataset {str(path)!r} (--against) does not exist",
                           "Pass the existing dataset's folder, or a manifest CSV of its images.")
    if path.is_file():
        return load_dataset(path.parent, replace(config, manifest=path, validation_split=None))
    return load_dataset(path, replace(config, manifest=None))


def load_merged(incoming_dir: Path, existing: Path, config: AuditConfig) -> MergedIndex:
    """Index both datasets into one (existing first, so its records keep their order)."""
    incoming_index = load_dataset(Path(incoming_dir).expanduser(), config)
    existing_index = load_one(existing, config)
    merged = MergedIndex(root=incoming_index.root, layout=f"{incoming_index.layout} against {existing_index.layout}",
                         records=[], roots={INCOMING: str(incoming_index.root), EXISTING: str(existing_index.root)})
    for origin, index in ((EXISTING, existing_index), (INCOMING, incoming_index)):
        for record in index.records:
            merged.records.append(replace(record, path=f"{origin}/{record.path}"))
            merged.origins.append(origin)
        merged.issues.extend(WalkIssue(f"{origin}/{i.path}", i.kind, i.message) for i in index.issues)
        merged.notes.extend(f"{origin}: {note}" for note in index.notes)
    merged.notes.append(
        f"Merge audit: {merged.origins.count(INCOMING)} incoming images ({incoming_index.root}) against "
        f"{merged.origins.count(EXISTING)} existing ({existing_index.root}); findings among existing images only "
        "are accepted."
    )
    return merged
