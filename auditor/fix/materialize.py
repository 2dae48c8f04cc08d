"""Lay a split out as `DEST/<split>/<class>/<file>`, the layout `keras.utils.image_dataset_from_directory`
and `ImageDataGenerator.flow_from_directory` read (point them at `DEST/train`, `DEST/val`, …).

Files are hard links to the originals (no space used); where a link is impossible (another filesystem, a
filesystem without links, a file we may not link) they are copied. The dataset is only read:
- DEST may not be the dataset folder, lie inside it, or contain it (or any input file);
- DEST must be new or empty; with `overwrite`, a DEST that an earlier `auditor split --materialize` wrote is
  replaced, and only if every file in it is one that run wrote (listed in DEST/.auditor-split.json);
- everything is built in a temporary sibling folder and renamed into place, so an interrupted run leaves
  no half DEST;
- labels, split names and file names are made safe folder and file names: a label like `../x` or `a/b`
  cannot leave DEST (`_..` `_x`… see `safe_name`); two labels that would share a folder (also when only
  their case differs) get distinct names; the mapping is returned.

Hard links share the file with the dataset: a program that rewrites a file in place under DEST changes the
original too. Pass `copy=True` (`--copy`) when something will edit DEST's files.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from auditor.errors import AuditorError

MARKER = ".auditor-split.json"
MAX_NAME_BYTES = 200  # below every common filesystem's 255-byte limit, with room for a suffix
# What Keras' image_dataset_from_directory reads; other files in a class folder are skipped silently.
KERAS_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
_LINK_IMPOSSIBLE = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES, getattr(errno, "ENOTSUP", 95),
                    getattr(errno, "EOPNOTSUPP", 95)}


class MaterializeError(AuditorError):
    """DEST cannot be written safely."""


@dataclass(frozen=True)
class Entry:
    source: Path  # the original file
    path: str  # its path relative to the dataset (names the file; disambiguates collisions)
    split: str
    label: str


@dataclass
class MaterializeResult:
    destination: Path
    files: list[str]  # written, relative to DEST (POSIX)
    linked: int
    copied: int
    class_folders: dict[str, str]  # label → folder name, for labels whose folder name differs
    split_folders: dict[str, str]  # split → folder name, where they differ
    not_read_by_keras: int  # files whose extension image_dataset_from_directory skips
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"destination": str(self.destination), "files": len(self.files), "hard_links": self.linked,
                "copies": self.copied, "renamed_class_folders": self.class_folders,
                "renamed_split_folders": self.split_folders, "not_read_by_keras": self.not_read_by_keras,
                "notes": self.notes}


def safe_name(name: str) -> str:
    """A single path component that means `name` as closely as possible and cannot escape its folder:
    separators, NUL and control characters become `_`; empty, `.`, `..` and hidden (leading dot) names
    get a leading `_`; at most MAX_NAME_BYTES bytes of UTF-8."""
    cleaned = "".join("_" if ch in "/\\" or ord(ch) < 32 or ord(ch) == 127 else ch for ch in name)
    if not cleaned or cleaned.startswith("."):
        cleaned = "_" + cleaned
    encoded = cleaned.encode("utf-8", errors="replace")
    if len(encoded) > MAX_NAME_BYTES:
        cleaned = encoded[:MAX_NAME_BYTES].decode("utf-8", errors="ignore")
    return cleaned


def _distinct(names: list[str]) -> dict[str, str]:
    """Folder name per name: safe, and distinct even on a case-insensitive filesystem."""
    result: dict[str, str] = {}
    taken: set[str] = set()
    for name in sorted(set(names)):
        folder = safe_name(name)
        if folder.casefold() in taken:
            folder = f"{safe_name(name)[:MAX_NAME_BYTES - 9]}~{_digest(name)}"
        taken.add(folder.casefold())
        result[name] = folder
    return result


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", errors="surrogatepass")).hexdigest()[:8]


def _file_name(path: str, taken: set[str]) -> str:
    """The file's own name; on a collision the whole relative path with `__` for `/`, then a digest."""
    candidates = [safe_name(PurePosixPath(path).name), safe_name(path.replace("/", "__").replace("\\", "__"))]
    for candidate in candidates:
        if candidate.casefold() not in taken:
            return candidate
    stem, suffix = os.path.splitext(candidates[0])
    return f"{stem[:MAX_NAME_BYTES - 20]}~{_digest(path)}{suffix[:10]}"


def layout(entries: list[Entry]) -> tuple[list[tuple[Entry, str]], dict[str, str], dict[str, str]]:
    """Where each entry goes, relative to DEST (`<split>/<class>/<file>`, safe names), and the split and class
    folder names. Pure: materialize writes exactly this, and verify audits exactly this."""
    split_folders = _distinct([e.split for e in entries])
    class_folders = _distinct([e.label for e in entries])
    taken: dict[tuple[str, str], set[str]] = {}
    placed = []
    for entry in sorted(entries, key=lambda e: (e.split, e.label, e.path)):
        folder = (split_folders[entry.split], class_folders[entry.label])
        names = taken.setdefault(folder, set())
        name = _file_name(entry.path, names)
        names.add(name.casefold())
        placed.append((entry, f"{folder[0]}/{folder[1]}/{name}"))
    return placed, split_folders, class_folders


def check_destination(destination: Path, dataset_root: Path, sources: list[Path], overwrite: bool) -> list[str]:
    """Refuse a DEST that could touch the dataset, or hold files we did not write; returns the files an earlier
    run wrote that `overwrite` will remove."""
    dest = Path(destination).expanduser().resolve()
    root = Path(dataset_root).expanduser().resolve()
    tip = "Choose a new folder outside the dataset, e.g. --materialize ../my-dataset-split."
    if dest == root or dest.is_relative_to(root):
        raise MaterializeError(f"--materialize {str(destination)!r} is inside the dataset {str(dataset_root)!r}; "
                               "auditor never writes into the dataset", tip)
    if root.is_relative_to(dest):
        raise MaterializeError(f"--materialize {str(destination)!r} contains the dataset {str(dataset_root)!r}", tip)
    folders: set[Path] = set()
    for source in sources:
        resolved = source.resolve()
        if resolved.is_relative_to(dest):
            raise MaterializeError(f"--materialize {str(destination)!r} contains the input file {str(source)!r}", tip)
        folders.add(resolved.parent)
    for folder in folders:  # e.g. a split folder that is a link to elsewhere: DEST may not go below it either
        if dest.is_relative_to(folder):
            raise MaterializeError(f"--materialize {str(destination)!r} is inside {str(folder)!r}, which holds "
                                   "input files; auditor never writes among the dataset's files", tip)
    if dest.exists() and not dest.is_dir():
        raise MaterializeError(f"--materialize {str(destination)!r} exists and is not a folder", tip)
    if not dest.exists():
        return []
    present = _entries(dest)
    if not present:
        return []
    if not overwrite:
        raise MaterializeError(f"--materialize {str(destination)!r} is not empty ({len(present)} files)",
                               "Choose an empty or new folder, or pass --overwrite to replace a folder an earlier "
                               "`auditor split --materialize` wrote.")
    written = _written_before(dest)
    if written is None:
        raise MaterializeError(f"--materialize {str(destination)!r} was not written by auditor split "
                               f"(no {MARKER}); auditor does not delete files it did not write", tip)
    foreign = [p for p in present if p != MARKER and p not in written]
    if foreign:
        raise MaterializeError(f"--materialize {str(destination)!r} holds {len(foreign)} file(s) auditor split did "
                               f"not write, e.g. {foreign[0]!r}; auditor does not delete them",
                               "Move them out, or choose another folder.")
    return [p for p in present if p != MARKER]


def _entries(dest: Path) -> list[str]:
    """Everything in DEST that is not a real folder (files, and links of any kind), relative, sorted."""
    found = []
    for folder, dirs, names in os.walk(dest, followlinks=False):
        base = Path(folder)
        found += [(base / n).relative_to(dest).as_posix() for n in names]
        found += [(base / d).relative_to(dest).as_posix() for d in dirs if (base / d).is_symlink()]
    return sorted(found)


def _written_before(dest: Path) -> set[str] | None:
    marker = dest / MARKER
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        return {str(p) for p in data["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def materialize(entries: list[Entry], dataset_root: Path, destination: Path, overwrite: bool = False,
                copy: bool = False, about: dict | None = None) -> MaterializeResult:
    """Write DEST/<split>/<class>/<file> for every entry (hard links, or copies); never touches the dataset."""
    sources = [e.source for e in entries]
    stale = check_destination(destination, dataset_root, sources, overwrite)
    dest = Path(destination).expanduser().resolve()
    placed, split_folders, class_folders = layout(entries)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    files: list[str] = []
    linked = copied = 0
    try:
        for entry, relative in placed:
            target = staging / relative
            if not target.resolve().is_relative_to(staging.resolve()):  # safe_name makes this impossible; belt and braces
                raise MaterializeError(f"refusing to write {relative!r} outside {str(destination)!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            if _place(entry.source, target, copy):
                linked += 1
            else:
                copied += 1
            files.append(relative)
        marker = {"tool": "auditor split", "dataset": str(Path(dataset_root).expanduser().resolve()),
                  "files": files, **(about or {})}
        (staging / MARKER).write_text(json.dumps(marker, indent=1, ensure_ascii=False), encoding="utf-8")
        if dest.exists():
            _remove_written(dest, stale)
            dest.rmdir()
        os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # our own staging folder: links and copies only
        raise
    not_keras = sum(1 for f in files if os.path.splitext(f)[1].lower() not in KERAS_EXTENSIONS)
    notes = []
    if linked and not copy:
        notes.append("files are hard links to the originals: a program that rewrites a file in place under the "
                     "destination changes the original too (use --copy when something will edit them)")
    if not_keras:
        notes.append(f"{not_keras} file(s) have an extension image_dataset_from_directory skips "
                     f"(it reads {' '.join(KERAS_EXTENSIONS)})")
    return MaterializeResult(
        destination=dest, files=files, linked=linked, copied=copied,
        class_folders={k: v for k, v in class_folders.items() if k != v},
        split_folders={k: v for k, v in split_folders.items() if k != v},
        not_read_by_keras=not_keras, notes=notes)


def _place(source: Path, target: Path, copy: bool) -> bool:
    """Hard-link source at target (True), or copy it where a link is impossible (False)."""
    if not copy:
        try:
            os.link(source, target)
            return True
        except OSError as exc:
            if exc.errno not in _LINK_IMPOSSIBLE:
                raise _unreadable(source, exc) from None
    try:
        shutil.copy2(source, target)
    except OSError as exc:
        raise _unreadable(source, exc) from None
    return False


def _unreadable(source: Path, exc: OSError) -> MaterializeError:
    return MaterializeError(f"cannot link or copy {str(source)!r}: {exc.strerror or exc}",
                            "Check that the dataset did not change since the audit, and run again.")


def _remove_written(dest: Path, written: list[str]) -> None:
    """Remove the files an earlier run wrote (check_destination proved there are no others), then its folders."""
    for relative in written:
        (dest / relative).unlink(missing_ok=True)
    (dest / MARKER).unlink(missing_ok=True)
    for folder, _dirs, _names in os.walk(dest, topdown=False, followlinks=False):
        if Path(folder) != dest:
            Path(folder).rmdir()
