"""Turn a dataset on disk into a DatasetIndex: which file is which image, in which split, with which label.

Three layouts: `DIR/<split>/<class>/…`, `DIR/<class>/…` (optionally split the way Keras splits it),
and a CSV manifest `path,label,split[,source]`. Nothing here opens an image; problems found while
walking (symlink loops, unreadable folders, files outside a class folder) become WalkIssues that the
integrity check reports, and the walk goes on.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from auditor.config import HELD_OUT_SPLIT_NAMES, REFERENCE_SPLIT, AuditConfig
from auditor.errors import DatasetError

# Files every OS sprinkles into folders; they are never dataset images.
IGNORED_FILE_NAMES = {"thumbs.db", "desktop.ini", "icon\r"}
IGNORED_DIR_NAMES = {"__macosx"}


@dataclass(frozen=True)
class ImageRecord:
    path: str  # POSIX path relative to the dataset root, or as written in the manifest
    abspath: Path
    split: str
    label: str
    source: str | None = None


@dataclass(frozen=True)
class WalkIssue:
    path: str
    kind: str  # symlink_loop, unreadable_dir, broken_link, unlabelled_file, manifest_row, missing_file, …
    message: str


@dataclass
class DatasetIndex:
    root: Path
    layout: str
    records: list[ImageRecord]
    issues: list[WalkIssue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def splits(self) -> list[str]:
        return sorted({r.split for r in self.records}, key=_split_sort_key)

    @property
    def reference_split(self) -> str | None:
        return REFERENCE_SPLIT if REFERENCE_SPLIT in self.splits else None

    @property
    def held_out_splits(self) -> list[str]:
        """Every split other than train is held out from training; the usual names come first."""
        return [s for s in self.splits if s != REFERENCE_SPLIT]

    @property
    def classes(self) -> list[str]:
        return sorted({r.label for r in self.records})

    def summary(self) -> dict:
        splits: dict[str, dict] = {}
        for split in self.splits:
            members = [r for r in self.records if r.split == split]
            counts: dict[str, int] = {}
            for r in members:
                counts[r.label] = counts.get(r.label, 0) + 1
            splits[split] = {"images": len(members), "classes": dict(sorted(counts.items()))}
        return {"root": str(self.root), "layout": self.layout, "splits": splits}


def _split_sort_key(split: str) -> tuple[int, str]:
    order = (REFERENCE_SPLIT, *HELD_OUT_SPLIT_NAMES)
    return (order.index(split) if split in order else len(order), split)


def load_dataset(root: Path, config: AuditConfig) -> DatasetIndex:
    """Index the dataset the way the config says; raise DatasetError when nothing can be audited."""
    root = Path(root).expanduser()
    if config.manifest is not None:
        index = read_manifest(root, Path(config.manifest))
    else:
        _require_directory(root)
        layout = config.layout if config.layout != "auto" else detect_layout(root)
        if layout == "splits":
            if config.validation_split is not None:
                raise DatasetError(
                    f"{root} already has split folders ({', '.join(_top_dirs(root))}); --validation-split applies "
                    "to a folder of class folders",
                    "Drop --validation-split, or point auditor at the folder that holds the class folders.",
                )
            index = index_split_folders(root)
        elif config.validation_split is not None:
            index = index_keras_split(root, config.validation_split, config.seed, config.split_style)
        else:
            index = index_class_folders(root, split=REFERENCE_SPLIT)
            index.notes.append("One pool of class folders: audited as a single split (no leakage check possible).")
        if config.source_depth:
            assign_sources(index, config.source_depth, class_level=1 if layout == "splits" else 0)
    if not index.records:
        raise DatasetError(
            f"no images found in {root}",
            "Expected DIR/<split>/<class>/<image>, DIR/<class>/<image>, or --manifest FILE.csv.",
        )
    return index


def _require_directory(root: Path) -> None:
    if not root.exists():
        raise DatasetError(f"dataset directory {str(root)!r} does not exist", "Check the path and try again.")
    if not root.is_dir():
        raise DatasetError(f"{str(root)!r} is not a directory", "Pass the folder that holds the split or class folders.")
    try:
        next(os.scandir(root), None)
    except PermissionError:
        raise DatasetError(f"cannot read directory {str(root)!r}", "Check its permissions.") from None


def _top_dirs(root: Path) -> list[str]:
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    return [e.name for e in entries if _is_dir(e) and not _ignored_name(e.name, is_dir=True)]


def detect_layout(root: Path) -> str:
    """`splits` when a top-level folder is named like a split (train, val, …), else `classes`."""
    names = {n.lower() for n in _top_dirs(root)}
    return "splits" if names & {REFERENCE_SPLIT, *HELD_OUT_SPLIT_NAMES} else "classes"


def assign_sources(index: DatasetIndex, depth: int, class_level: int) -> None:
    """`--source-depth N`: an image's source is the first N folders below its class folder, joined with '/'.

    `train/bees/siteA/cam1/x.jpg` has source `siteA` at depth 1 and `siteA/cam1` at depth 2 (fewer folders
    than N: as many as there are). An image directly in its class folder has no source.
    """
    for position, record in enumerate(index.records):
        folders = PurePosixPath(record.path).parts[class_level + 1:-1][:depth]
        index.records[position] = dataclasses.replace(record, source="/".join(folders) or None)
    sources = {r.source for r in index.records if r.source}
    if sources:
        index.notes.append(f"Source read from the first {depth} folder level(s) below the class folder: "
                           f"{len(sources)} source(s).")
    else:
        index.notes.append(f"--source-depth {depth}: no image lies in a folder below its class folder; no source known.")


def index_split_folders(root: Path) -> DatasetIndex:
    index = DatasetIndex(root=root, layout="splits", records=[])
    walker = _SafeWalker(root, index.issues)
    for split in _top_dirs(root):
        for relpath, abspath in walker.files(root / split):
            parts = PurePosixPath(relpath).parts
            if len(parts) < 3:
                index.issues.append(
                    WalkIssue(relpath, "unlabelled_file", "file sits directly in a split folder, not in a class folder")
                )
                continue
            index.records.append(ImageRecord(relpath, abspath, split=split, label=parts[1]))
    _note_loose_files(root, index)
    if REFERENCE_SPLIT not in index.splits and index.records:
        index.notes.append(f"No '{REFERENCE_SPLIT}' split: leakage shares are measured between all pairs of splits.")
    return index


def index_class_folders(root: Path, split: str) -> DatasetIndex:
    index = DatasetIndex(root=root, layout="classes", records=[])
    walker = _SafeWalker(root, index.issues)
    for relpath, abspath in walker.files(root):
        parts = PurePosixPath(relpath).parts
        if len(parts) < 2:
            index.issues.append(WalkIssue(relpath, "unlabelled_file", "file sits at the top level, not in a class folder"))
            continue
        index.records.append(ImageRecord(relpath, abspath, split=split, label=parts[0]))
    return index


def index_keras_split(root: Path, validation_split: float, seed: int | None, style: str) -> DatasetIndex:
    """Reproduce the exact training/validation split Keras makes for this folder of class folders."""
    from auditor.index import keras_splits
    try:
        if style == "keras-dataset":
            if seed is None:
                raise DatasetError(
                    "--validation-split with --split-style keras-dataset needs --seed",
                    "Pass the same seed you gave image_dataset_from_directory(seed=…).",
                )
            assignments, ignored = keras_splits.keras_dataset_split(root, validation_split, seed)
        else:
            assignments, ignored = keras_splits.keras_generator_split(root, validation_split)
    except ValueError as exc:
        raise DatasetError(str(exc), "Check --validation-split and --seed.") from None
    index = DatasetIndex(root=root, layout=f"classes+{style}", records=[])
    # The training subset's files, then the validation subset's, each in the order Keras lists them — the
    # order auditor.audit_keras(train, val) reads the user's own objects in, so that both give the same
    # records in the same order, hence the same seeded results (the generator lists val first per class).
    for a in sorted(assignments, key=lambda a: a.split != "train"):
        split = REFERENCE_SPLIT if a.split == "train" else "val"
        index.records.append(ImageRecord(a.path, root / a.path, split=split, label=a.label))
    for relpath in ignored:
        index.issues.append(WalkIssue(relpath, "ignored_by_keras", f"Keras ({style}) skips this file: not in its list of image extensions"))
    seed_text = f", seed={seed}" if style == "keras-dataset" else ""
    index.notes.append(f"Split reproduced as Keras makes it ({style}, validation_split={validation_split}{seed_text}).")
    return index


def read_manifest(root: Path, manifest: Path) -> DatasetIndex:
    """Read `path,label,split[,source]`. A bad row is a finding; a bad header is a DatasetError."""
    if not manifest.is_file():
        raise DatasetError(f"manifest {str(manifest)!r} does not exist", "Check the path given to --manifest.")
    base = root if root.is_dir() else manifest.parent
    index = DatasetIndex(root=base, layout="manifest", records=[])
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            columns = [c.strip().lower() for c in header] if header else []
            missing = [c for c in ("path", "label", "split") if c not in columns]
            if missing:
                raise DatasetError(
                    f"manifest {manifest.name} lacks column(s) {', '.join(missing)} (header: {','.join(columns) or 'empty'})",
                    "The first line must name the columns: path,label,split and optionally source.",
                )
            col = {name: columns.index(name) for name in ("path", "label", "split", "source") if name in columns}
            seen: set[str] = set()
            for line_number, row in enumerate(reader, start=2):
                if not row or all(not cell.strip() for cell in row):
                    continue
                where = f"{manifest.name}:{line_number}"
                if len(row) < len(columns):
                    index.issues.append(WalkIssue(where, "manifest_row", f"row has {len(row)} cells, header has {len(columns)}"))
                    continue
                path, label, split = (row[col[k]].strip() for k in ("path", "label", "split"))
                source = row[col["source"]].strip() if "source" in col else None
                if not path or not label or not split:
                    index.issues.append(WalkIssue(where, "manifest_row", "empty path, label or split"))
                    continue
                if path in seen:
                    index.issues.append(WalkIssue(path, "manifest_row", f"listed twice in the manifest (again at line {line_number})"))
                    continue
                seen.add(path)
                abspath = Path(path) if Path(path).is_absolute() else base / path
                index.records.append(ImageRecord(path, abspath, split=split, label=label, source=source or None))
    except UnicodeDecodeError:
        raise DatasetError(f"manifest {manifest.name} is not UTF-8 text", "Save it as UTF-8 CSV.") from None
    except csv.Error as exc:
        raise DatasetError(f"manifest {manifest.name} is not valid CSV: {exc}", "Check its quoting.") from None
    return index


def write_manifest(index: DatasetIndex, destination: Path) -> None:
    """Write the resolved `path,label,split[,source]` table (atomically)."""
    from auditor.atomic import atomic_write_text
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    has_source = any(r.source for r in index.records)
    writer.writerow(["path", "label", "split", *(["source"] if has_source else [])])
    for r in sorted(index.records, key=lambda r: (_split_sort_key(r.split), r.label, r.path)):
        writer.writerow([r.path, r.label, r.split, *([r.source or ""] if has_source else [])])
    atomic_write_text(destination, buffer.getvalue())


def _note_loose_files(root: Path, index: DatasetIndex) -> None:
    """Files beside the split folders (a README, a labels.csv) are not part of any split: noted, not audited."""
    try:
        loose = sorted(e.name for e in os.scandir(root) if not _ignored_name(e.name, is_dir=False) and e.is_file())
    except OSError:
        return
    for name in loose:
        index.issues.append(WalkIssue(name, "loose_file", "beside the split folders, not in any split; not audited"))


def _ignored_name(name: str, is_dir: bool) -> bool:
    lowered = name.lower()
    if name.startswith("."):
        return True
    return lowered in (IGNORED_DIR_NAMES if is_dir else IGNORED_FILE_NAMES)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


class _SafeWalker:
    """Walks folders in sorted order, following folder links: a link back to one of the folder's own
    ancestors (a loop) is reported, not followed. Only ancestors count: a real folder that a link
    elsewhere also reaches (say train/dog -> ../val/cat) is still walked in its own place."""

    def __init__(self, root: Path, issues: list[WalkIssue]):
        self.root = root
        self.issues = issues

    def _rel(self, path: Path) -> str:
        return PurePosixPath(*path.relative_to(self.root).parts).as_posix()

    def files(self, top: Path):
        stack: list[tuple[Path, frozenset[tuple[int, int]]]] = [(top, frozenset())]
        while stack:
            folder, ancestors = stack.pop()
            try:
                info = folder.stat()
            except OSError as exc:
                self.issues.append(WalkIssue(self._rel(folder), "unreadable_dir", f"cannot open folder: {exc.strerror or exc}"))
                continue
            key = (info.st_dev, info.st_ino)
            if key in ancestors:
                self.issues.append(WalkIssue(self._rel(folder), "symlink_loop", "folder link points back to a folder that contains it; not followed"))
                continue
            ancestors = ancestors | {key}
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                self.issues.append(WalkIssue(self._rel(folder), "unreadable_dir", f"cannot list folder: {exc.strerror or exc}"))
                continue
            subfolders = []
            for entry in entries:
                path = Path(entry.path)
                if entry.is_symlink() and not os.path.exists(entry.path):
                    self.issues.append(WalkIssue(self._rel(path), "broken_link", "symbolic link points nowhere"))
                    continue
                if _is_dir(entry):
                    if not _ignored_name(entry.name, is_dir=True):
                        subfolders.append(path)
                    continue
                if _ignored_name(entry.name, is_dir=False):
                    continue
                yield self._rel(path), path
            stack.extend((sub, ancestors) for sub in reversed(subfolders))
