"""Turn a dataset on disk into a DatasetIndex: which file is which image, in which split, with which label.

Three layouts: `DIR/<split>/<class>/…`, `DIR/<class>/…` (optionally split the way Keras splits it),
and a CSV manifest `path,label,split[,source]`. Nothing here opens an image; problems found while
walking (symlink loops, links or manifest rows leading outside the dataset root, unreadable folders,
files outside a class folder, empty class folders, names with control characters) become WalkIssues
that the integrity check reports, and the walk goes on.

Nothing outside the dataset root is read unless `allow_outside_root` says so: a link whose target
leaves the root, and a manifest row whose path does (absolute, `..`, or through a link), are reported
and left out. A folder link back to a folder that contains it (the root included) is never followed.
Split names are case-insensitive: `Train/` is the reference split `train`.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from auditor.config import HELD_OUT_SPLIT_NAMES, REFERENCE_SPLIT, AuditConfig
from auditor.errors import DatasetError

# Files every OS sprinkles into folders; they are never dataset images.
IGNORED_FILE_NAMES = {"thumbs.db", "desktop.ini", "icon\r"}
IGNORED_DIR_NAMES = {"__macosx"}


@dataclass(frozen=True, slots=True)  # slots: no per-record __dict__ (10⁶ records)
class ImageRecord:
    """One image: `ImageRecord(path, abspath, split, label)`. The file's location is kept as text (`location`) and
    made a Path when `abspath` is read: a Path object and its parts cost ≈ 300 bytes a record (0.3 GB at 10⁶
    images), its text ≈ 100."""

    path: str  # POSIX path relative to the dataset root, or as written in the manifest
    location: str  # where the bytes are: a local path (given as a Path), or a URL ("s3://…")
    split: str
    label: str
    source: str | None = None

    def __post_init__(self):
        # One string object per distinct split and class, not one per record (each folder name is a new string).
        object.__setattr__(self, "split", sys.intern(self.split))
        object.__setattr__(self, "label", sys.intern(self.label))
        if not isinstance(self.location, str):
            object.__setattr__(self, "location", os.fspath(self.location))

    @property
    def abspath(self) -> Path | str:
        """The local file as a Path, or the URL as given (a URL is never a Path: pathlib folds "s3://" into "s3:/")."""
        from auditor.engines.urls import is_url

        return self.location if is_url(self.location) else Path(self.location)


@dataclass(frozen=True)
class WalkIssue:
    path: str
    kind: str  # symlink_loop, link_outside_root, path_outside_root, broken_link, empty_class_folder, …
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


def canonical_split(name: str) -> str:
    """Split names are compared without case: `Train`, `TRAIN` and `train` are all the reference split."""
    return name.lower()


def _split_sort_key(split: str) -> tuple[int, str]:
    order = (REFERENCE_SPLIT, *HELD_OUT_SPLIT_NAMES)
    return (order.index(split) if split in order else len(order), split)


def load_dataset(root: Path, config: AuditConfig) -> DatasetIndex:
    """Index the dataset the way the config says; raise DatasetError when nothing can be audited."""
    root = Path(root).expanduser()
    allow = config.allow_outside_root
    if config.manifest is not None:
        index = read_manifest(root, Path(config.manifest), allow_outside_root=allow)
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
            index = index_split_folders(root, allow_outside_root=allow)
        elif config.validation_split is not None:
            index = index_keras_split(root, config.validation_split, config.seed, config.split_style,
                                      allow_outside_root=allow)
        else:
            index = index_class_folders(root, split=REFERENCE_SPLIT, allow_outside_root=allow)
            index.notes.append("One pool of class folders: audited as a single split (no leakage check possible).")
        if config.source_depth:
            assign_sources(index, config.source_depth, class_level=1 if layout == "splits" else 0)
    index.issues.extend(name_issues(index))
    if not index.records:
        outside = sum(issue.kind in ("path_outside_root", "link_outside_root") for issue in index.issues)
        if outside:  # e.g. an --against manifest kept apart from the dataset, naming its files by absolute path
            raise DatasetError(
                f"no images found in {root}: {outside} manifest row(s) or link(s) lead outside it",
                "Manifest paths are read relative to the manifest's folder (with --against) or DIR, and nothing "
                "outside is read unless you pass --allow-outside-root.",
            )
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


def index_split_folders(root: Path, allow_outside_root: bool = False) -> DatasetIndex:
    index = DatasetIndex(root=root, layout="splits", records=[])
    walker = _SafeWalker(root, index.issues, allow_outside_root)
    folders_of: dict[str, list[str]] = {}
    for folder in _top_dirs(root):
        split = canonical_split(folder)
        folders_of.setdefault(split, []).append(folder)
        for relpath, abspath in walker.files(root / folder):
            parts = PurePosixPath(relpath).parts
            if len(parts) < 3:
                index.issues.append(
                    WalkIssue(relpath, "unlabelled_file", "file sits directly in a split folder, not in a class folder")
                )
                continue
            index.records.append(ImageRecord(relpath, abspath, split=split, label=parts[1]))
        walked = {issue.path for issue in index.issues}
        if folder not in walked:  # a refused link is reported as such, not as empty class folders
            index.issues.extend(_empty_class_folders(root / folder, folder, index.records, walked))
    for split, folders in folders_of.items():
        if len(folders) > 1:
            index.notes.append(f"Folders {', '.join(map(repr, folders))} are all read as split {split!r} "
                               "(split names are compared without case).")
    _note_loose_files(root, index)
    if REFERENCE_SPLIT not in index.splits and index.records:
        index.notes.append(f"No '{REFERENCE_SPLIT}' split: leakage shares are measured between all pairs of splits.")
    return index


def index_class_folders(root: Path, split: str, allow_outside_root: bool = False) -> DatasetIndex:
    index = DatasetIndex(root=root, layout="classes", records=[])
    walker = _SafeWalker(root, index.issues, allow_outside_root)
    for relpath, abspath in walker.files(root):
        parts = PurePosixPath(relpath).parts
        if len(parts) < 2:
            index.issues.append(WalkIssue(relpath, "unlabelled_file", "file sits at the top level, not in a class folder"))
            continue
        index.records.append(ImageRecord(relpath, abspath, split=split, label=parts[0]))
    index.issues.extend(_empty_class_folders(root, "", index.records, {issue.path for issue in index.issues}))
    return index


EMPTY_CLASS_MESSAGE = "class folder holds no images; Keras still counts it as a class (with 0 images)"


def _empty_class_folders(folder: Path, prefix: str, records: list[ImageRecord], reported: set[str]) -> list[WalkIssue]:
    """Class folders (the sub-folders of `folder`) in which no image was found. Keras makes each one a
    class with no examples: an extra output unit that is never trained. Folders already reported (a
    refused link, an unreadable folder) are not reported again."""
    filled = {PurePosixPath(r.path).parts[:len(PurePosixPath(prefix).parts) + 1] for r in records}
    issues = []
    for name in _top_dirs(folder):
        relpath = f"{prefix}/{name}" if prefix else name
        if relpath not in reported and PurePosixPath(relpath).parts not in filled:
            issues.append(WalkIssue(relpath, "empty_class_folder", EMPTY_CLASS_MESSAGE))
    return issues


def index_keras_split(root: Path, validation_split: float, seed: int | None, style: str,
                      allow_outside_root: bool = False) -> DatasetIndex:
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
    # Keras reads file links and linked class folders wherever they lead; auditor reads only what stays
    # inside the root (the split of every other file is unchanged: it was computed over Keras' full list).
    guard = _SafeWalker(root, index.issues, allow_outside_root)
    refused: set[str] = set()
    # The training subset's files, then the validation subset's, each in the order Keras lists them — the
    # order auditor.audit_keras(train, val) reads the user's own objects in, so that both give the same
    # records in the same order, hence the same seeded results (the generator lists val first per class).
    for a in sorted(assignments, key=lambda a: a.split != "train"):
        split = REFERENCE_SPLIT if a.split == "train" else "val"
        abspath = root / a.path
        class_link = root / a.label
        if a.label not in refused and class_link.is_symlink() and guard.refuse_link(class_link, is_dir=True):
            refused.add(a.label)
        if a.label in refused or (abspath.is_symlink() and guard.refuse_link(abspath, is_dir=False)):
            continue
        index.records.append(ImageRecord(a.path, abspath, split=split, label=a.label))
    for relpath in ignored:
        index.issues.append(WalkIssue(relpath, "ignored_by_keras", f"Keras ({style}) skips this file: not in its list of image extensions"))
    class_names = (keras_splits.dataset_class_names(root) if style == "keras-dataset"
                   else keras_splits.generator_class_names(root))
    filled = {a.label for a in assignments}
    for name in class_names:
        if name not in filled:
            index.issues.append(WalkIssue(name, "empty_class_folder",
                                          f"Keras ({style}) finds no image in this class folder and still counts it "
                                          "as a class (with 0 images)"))
    _note_loose_files(root, index, "unlabelled_file",
                      "file sits at the top level, not in a class folder; Keras leaves it out")
    seed_text = f", seed={seed}" if style == "keras-dataset" else ""
    index.notes.append(f"Split reproduced as Keras makes it ({style}, validation_split={validation_split}{seed_text}).")
    return index


def read_manifest(root: Path, manifest: Path, allow_outside_root: bool = False) -> DatasetIndex:
    """Read `path,label,split[,source]`. A bad row is a finding; a bad header is a DatasetError.

    Every row that is not blank ends as exactly one record or one finding naming its line: a short row,
    an empty cell, a path listed again (each repeat is named), a path that leaves the dataset root
    (absolute, `..`, or through a link; read only with `allow_outside_root`)."""
    if not manifest.exists():
        raise DatasetError(f"manifest {str(manifest)!r} does not exist", "Check the path given to --manifest.")
    if not manifest.is_file():
        raise DatasetError(f"manifest {str(manifest)!r} is not a regular file", "Pass a CSV file to --manifest.")
    base = root if root.is_dir() else manifest.parent
    real_base = os.path.realpath(base)
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
            first_line: dict[str, int] = {}
            line_number = reader.line_num + 1
            for row in reader:
                where = f"{manifest.name}:{line_number}"
                row_line, line_number = line_number, reader.line_num + 1  # a quoted cell may span lines
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) < len(columns):
                    index.issues.append(WalkIssue(where, "manifest_row", f"row has {len(row)} cells, header has {len(columns)}"))
                    continue
                path, label, split = (row[col[k]].strip() for k in ("path", "label", "split"))
                source = row[col["source"]].strip() if "source" in col else None
                if not path or not label or not split:
                    index.issues.append(WalkIssue(where, "manifest_row", "empty path, label or split"))
                    continue
                if "\0" in path:
                    index.issues.append(WalkIssue(where, "manifest_row", "path contains a NUL character; no file has that name"))
                    continue
                abspath = Path(path) if Path(path).is_absolute() else base / path
                outside = None if allow_outside_root else _outside_reason(path, abspath, base, real_base)
                if outside:
                    index.issues.append(WalkIssue(where, "path_outside_root",
                                                  f"{path} {outside}; not audited (pass --allow-outside-root to "
                                                  "audit files outside the dataset folder)"))
                    continue
                key = os.path.normpath(abspath)  # `a/./b.jpg` and `a/b.jpg` are one file
                if key in first_line:
                    index.issues.append(WalkIssue(where, "duplicate_manifest_row",
                                                  f"{path} is listed again (first at line {first_line[key]}); "
                                                  "this row is not audited"))
                    continue
                first_line[key] = row_line
                index.records.append(ImageRecord(path, abspath, split=canonical_split(split), label=label,
                                                 source=source or None))
    except UnicodeDecodeError:
        raise DatasetError(f"manifest {manifest.name} is not UTF-8 text", "Save it as UTF-8 CSV.") from None
    except csv.Error as exc:
        raise DatasetError(f"manifest {manifest.name} is not valid CSV: {exc}", "Check its quoting.") from None
    return index


def _inside(real_path: str, real_root: str) -> bool:
    return real_path == real_root or real_path.startswith(real_root.rstrip(os.sep) + os.sep)


def _outside_reason(written: str, abspath: Path, base: Path, real_base: str) -> str | None:
    """Why a manifest path leads outside the dataset root, or None when it stays inside."""
    if _inside(os.path.realpath(abspath), real_base):
        return None
    if Path(written).is_absolute():
        return "is an absolute path outside the dataset root"
    if not _inside(os.path.abspath(abspath), os.path.abspath(base)):
        return "goes above the dataset root ('..')"
    return "leads outside the dataset root through a link"


def write_manifest(index: DatasetIndex, destination: Path) -> list[str]:
    """Write the resolved `path,label,split[,source]` table (atomically). A manifest is UTF-8 text, so a
    file whose name is not UTF-8 cannot be listed in it: such files are left out and returned."""
    from auditor.atomic import atomic_write_text
    from auditor.text import is_undecodable
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    has_source = any(r.source for r in index.records)
    writer.writerow(["path", "label", "split", *(["source"] if has_source else [])])
    left_out = []
    for r in sorted(index.records, key=lambda r: (_split_sort_key(r.split), r.label, r.path)):
        if is_undecodable(r.path):
            left_out.append(r.path)
            continue
        writer.writerow([r.path, r.label, r.split, *([r.source or ""] if has_source else [])])
    atomic_write_text(destination, buffer.getvalue())
    return left_out


def _note_loose_files(root: Path, index: DatasetIndex, kind: str = "loose_file",
                      message: str = "beside the split folders, not in any split; not audited") -> None:
    """Files beside the split folders (a README, a labels.csv) are not part of any split: noted, not audited.
    (Beside the class folders of a Keras split: `unlabelled_file`, as in a pool of class folders.)"""
    try:
        loose = sorted(e.name for e in os.scandir(root) if not _ignored_name(e.name, is_dir=False) and e.is_file())
    except OSError:
        return
    for name in loose:
        index.issues.append(WalkIssue(name, kind, message))


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
    """Walks folders in sorted order. Links are followed only when what they point at stays inside the
    dataset root (or `allow_outside_root`) and is not a folder that contains the link (a loop: the dataset
    root, the split folder, the link's own folder, …); other links are reported and not followed. A real
    folder that a link elsewhere also reaches (say train/dog -> ../val/cat) is still walked in its own
    place. Files are listed, never opened: what is not a regular file is found when it is read."""

    def __init__(self, root: Path, issues: list[WalkIssue], allow_outside_root: bool = False):
        self.root = root
        self.real_root = os.path.realpath(root)
        self.issues = issues
        self.allow_outside_root = allow_outside_root

    def _rel(self, path: Path) -> str:
        return PurePosixPath(*path.relative_to(self.root).parts).as_posix()

    def refuse_link(self, link: Path, is_dir: bool) -> bool:
        """Report and refuse a link that loops or leaves the root; False when it may be followed."""
        target = os.path.realpath(link)
        where = os.path.realpath(link.parent)
        try:
            written = os.readlink(link)
        except OSError:
            written = target
        if is_dir and _inside(where, target):
            which = "the dataset root" if target == self.real_root else "a folder that contains it"
            self.issues.append(WalkIssue(self._rel(link), "symlink_loop",
                                         f"folder link points back to {which} ({written}); not followed"))
            return True
        if not self.allow_outside_root and not _inside(target, self.real_root):
            self.issues.append(WalkIssue(self._rel(link), "link_outside_root",
                                         f"link leads outside the dataset root (to {written}); not followed "
                                         "(pass --allow-outside-root to audit what it points at)"))
            return True
        return False

    def files(self, top: Path):
        if top != self.root and top.is_symlink() and self.refuse_link(top, is_dir=True):
            return
        stack: list[tuple[Path, frozenset[tuple[int, int]]]] = [(top, frozenset())]
        while stack:
            folder, ancestors = stack.pop()
            try:
                info = folder.stat()
            except OSError as exc:
                self.issues.append(WalkIssue(self._rel(folder), "unreadable_dir", f"cannot open folder: {exc.strerror or exc}"))
                continue
            key = (info.st_dev, info.st_ino)
            if key in ancestors:  # a loop made of several links, each harmless on its own
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
                is_dir = _is_dir(entry)
                if _ignored_name(entry.name, is_dir=is_dir):
                    continue
                if _is_link(entry):
                    if not os.path.exists(entry.path):
                        self.issues.append(WalkIssue(self._rel(path), "broken_link", "symbolic link points nowhere"))
                        continue
                    if self.refuse_link(path, is_dir):
                        continue
                if is_dir:
                    subfolders.append(path)
                    continue
                yield self._rel(path), path
            stack.extend((sub, ancestors) for sub in reversed(subfolders))


def _is_link(entry: os.DirEntry) -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return False


def name_issues(index: DatasetIndex) -> list[WalkIssue]:
    """Names that are not UTF-8, or that hold control characters (an ANSI escape, CR, LF, a bidi
    override): one finding per offending file or folder name (a folder's files are not each reported).
    They are still audited; every report shows such names escaped (auditor.text.printable)."""
    from auditor.text import has_control_characters, is_undecodable

    issues: list[WalkIssue] = []
    seen: set[tuple[str, str]] = set()

    def check(text: str, where: str, what: str) -> None:
        if (what, text if what in ("label", "split name") else where) in seen:
            return
        if is_undecodable(text):
            kind, shown = "non_utf8_name", "is not valid UTF-8; reports show each byte that is not as \\xNN"
        elif has_control_characters(text):
            kind, shown = "control_characters_in_name", "holds control characters; reports show them escaped (\\x1b, \\x0a, …)"
        else:
            return
        seen.add((what, text if what in ("label", "split name") else where))
        issues.append(WalkIssue(where, kind, f"{what} {shown}"))

    for record in index.records:
        # Almost every path is clean as a whole: only a path that is not needs its parts told apart.
        clean_path = not is_undecodable(record.path) and not has_control_characters(record.path)
        parts = () if clean_path else PurePosixPath(record.path).parts
        for depth in range(1, len(parts) + 1):
            check(parts[depth - 1], PurePosixPath(*parts[:depth]).as_posix(),
                  "file name" if depth == len(parts) else "folder name")
        if index.layout == "manifest":
            check(record.label, record.path, "label")
            check(record.split, record.path, "split name")
    return issues
