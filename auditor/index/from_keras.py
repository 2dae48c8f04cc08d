"""Build a DatasetIndex from the user's own Keras objects: exactly the files behind them, in their split,
with the labels Keras gives them.

Two kinds of object carry their files, and both are read through plain attributes (nothing here imports
TensorFlow or Keras, and no image is decoded):

* a `tf.data.Dataset` from `keras.utils.image_dataset_from_directory`: `file_paths` (in the order Keras
  lists them) and `class_names`. The label of each file is the class folder it lies in, below the folder
  Keras was given; that folder is found as the one whose sub-folders are the class names.
* an iterator from `ImageDataGenerator().flow_from_directory` / `flow_from_dataframe`: `filepaths`,
  `classes` (one class index per file) and `class_indices` (name -> index).

Anything else (a dataset after `.map`/`.unbatch`/`.shuffle`, which keeps no file list; NumPy arrays; a
dataset with `labels=None` or a list of labels) is a DatasetError that says what to pass instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from auditor.errors import DatasetError
from auditor.index.dataset import DatasetIndex, ImageRecord, WalkIssue

# The split each argument of audit_keras becomes: the names the command line gives a Keras split
# (`--validation-split` makes `train` and `val`), so that both give the same report, the same finding ids
# (some name their split) and baselines that carry over.
SPLIT_NAMES = {"train": "train", "validation": "val", "test": "test"}

KEEP_FILES_TIP = ("Pass the object image_dataset_from_directory returned, before .map/.unbatch/.shuffle/.cache "
                  "(keep a reference: raw = image_dataset_from_directory(...); train = raw.map(...); "
                  "auditor.audit_keras(raw, ...)), or audit the folder itself: auditor.audit(DIR, "
                  "validation_split=..., seed=...).")


@dataclass(frozen=True)
class KerasFiles:
    """What one Keras object says about its files: absolute paths, one label each, and the folder they hang from."""

    paths: list[Path]
    labels: list[str]
    root: Path  # the folder Keras was given (or the files' common folder)
    kind: str  # image_dataset_from_directory, flow_from_directory or flow_from_dataframe


def keras_files(obj: Any, argument: str) -> KerasFiles:
    """The files, labels and root folder behind one Keras object; DatasetError when it carries none."""
    if _has(obj, "file_paths"):
        return _dataset_files(obj, argument)
    if _has(obj, "filepaths") and _has(obj, "class_indices"):
        return _iterator_files(obj, argument)
    raise _no_files(obj, argument)


def index_from_keras(splits: dict[str, Any]) -> DatasetIndex:
    """One DatasetIndex over every object given: {"train": obj, "validation": obj, "test": obj} (None skipped).

    Records come split by split in the order given, each in the order Keras lists its files; paths are
    relative to the folder that holds all the objects' roots. A file listed twice in one object is audited
    once (an integrity finding says so); a file in two splits stays in both, where leakage reports it."""
    given = {name: obj for name, obj in splits.items() if obj is not None}
    if "train" not in given:
        raise DatasetError("audit_keras needs the training data", "Call auditor.audit_keras(train, validation, test).")
    files = {name: keras_files(obj, name) for name, obj in given.items()}
    try:
        root = Path(os.path.commonpath([str(f.root) for f in files.values()]))
    except ValueError:  # Windows: folders on different drives have no common folder
        raise DatasetError("the Keras objects' files share no common folder (different drives)",
                           "Keep the splits' folders on one drive.") from None
    index = DatasetIndex(root=root, layout="keras-objects", records=[])
    for name, found in files.items():
        split = SPLIT_NAMES[name]
        seen: set[str] = set()
        for path, label in zip(found.paths, found.labels):
            relpath = PurePosixPath(*path.relative_to(root).parts).as_posix()
            if relpath in seen:
                index.issues.append(WalkIssue(relpath, "listed_twice", f"listed twice in the {name} data"))
                continue
            seen.add(relpath)
            index.records.append(ImageRecord(relpath, path, split=split, label=label))
    if not index.records:
        raise DatasetError("the Keras objects list no image files", "Check that the folder they were made from has images.")
    kinds = sorted({f.kind for f in files.values()})
    index.notes.append(f"Files and labels read from your Keras objects ({', '.join(kinds)}): "
                       + ", ".join(f"{SPLIT_NAMES[n]} {len(f.paths)}" for n, f in files.items()) + " files.")
    return index


# --- image_dataset_from_directory -----------------------------------------------------------------


def _dataset_files(obj: Any, argument: str) -> KerasFiles:
    paths = [_absolute(p, argument) for p in _sequence(getattr(obj, "file_paths"), f"{argument}.file_paths")]
    if not paths:
        raise DatasetError(f"{argument}: the dataset lists no files", "Check the folder it was made from.")
    class_names = getattr(obj, "class_names", None)
    if not class_names:
        raise DatasetError(f"{argument}: the dataset carries no labels (made with labels=None)",
                           "Make it with labels='inferred' (the default), so each class is a folder.")
    class_names = [str(c) for c in class_names]
    root = _class_root(paths, set(class_names))
    if root is None:
        raise DatasetError(
            f"{argument}: its labels are not its folder names (made with labels=[...])",
            "auditor reads each file's label from its class folder. Write a manifest CSV (path,label,split) and "
            "call auditor.audit(ROOT, manifest='labels.csv').")
    labels = [path.relative_to(root).parts[0] for path in paths]
    return KerasFiles(paths, labels, root, "image_dataset_from_directory")


def _class_root(paths: list[Path], class_names: set[str]) -> Path | None:
    """The folder Keras was given: every file lies in one of its sub-folders named like a class.

    Start at the files' common folder; when it is itself a class folder (one class only among these files),
    its parent is the root."""
    if not paths:
        return None
    common = Path(os.path.commonpath([str(p.parent) for p in paths]))
    for candidate in (common, common.parent):
        if all(len(rel := p.relative_to(candidate).parts) >= 2 and rel[0] in class_names for p in paths):
            return candidate
        if candidate.name not in class_names:
            break
    return None


# --- ImageDataGenerator iterators -----------------------------------------------------------------


def _iterator_files(obj: Any, argument: str) -> KerasFiles:
    kind = "flow_from_dataframe" if type(obj).__name__ == "DataFrameIterator" else "flow_from_directory"
    paths = [_absolute(p, argument) for p in _sequence(getattr(obj, "filepaths"), f"{argument}.filepaths")]
    class_indices = getattr(obj, "class_indices", None)
    classes = getattr(obj, "classes", None) if _has(obj, "classes") else None
    if not isinstance(class_indices, dict) or not class_indices or classes is None:
        mode = getattr(obj, "class_mode", None)
        raise DatasetError(f"{argument}: the iterator carries no class labels (class_mode={mode!r})",
                           "Make it with class_mode='categorical', 'sparse' or 'binary', one class per image.")
    names = {int(index): str(name) for name, index in class_indices.items()}
    indices = list(classes.tolist() if hasattr(classes, "tolist") else classes)
    if len(indices) != len(paths):
        raise DatasetError(f"{argument}: {len(indices)} classes for {len(paths)} files",
                           "Pass the iterator as flow_from_directory/flow_from_dataframe made it.")
    labels = []
    for index in indices:
        if isinstance(index, (list, tuple)):
            raise DatasetError(f"{argument}: an image has several classes (multi-label)",
                               "auditor audits single-label classification: one class per image.")
        labels.append(names[int(index)])
    directory = getattr(obj, "directory", "") or ""
    if directory and kind == "flow_from_directory":
        root = Path(os.path.abspath(os.fspath(directory)))
    else:
        root = Path(os.path.commonpath([str(p.parent) for p in paths])) if paths else Path.cwd()
    return KerasFiles(paths, labels, root, kind)


# --- shared ---------------------------------------------------------------------------------------


def _has(obj: Any, name: str) -> bool:
    """Whether `obj` has the attribute, without letting a property that raises (Keras' base Iterator) escape."""
    try:
        getattr(obj, name)
    except Exception:
        return False
    return True


def _sequence(value: Any, where: str) -> list:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise DatasetError(f"{where} is not a list of file paths", KEEP_FILES_TIP)
    return list(value)


def _absolute(path: Any, argument: str) -> Path:
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise DatasetError(f"{argument}: a file path is not text: {path!r}", KEEP_FILES_TIP)
    return Path(os.path.abspath(os.fspath(path)))


def _no_files(obj: Any, argument: str) -> DatasetError:
    kind = type(obj).__name__
    module = type(obj).__module__ or ""
    if "Dataset" in kind or module.startswith(("tensorflow", "grain")):
        return DatasetError(
            f"{argument}: this {kind} carries no file paths (image_dataset_from_directory's file_paths is lost "
            "after .map, .unbatch, .batch, .shuffle, .cache, .prefetch and the like)", KEEP_FILES_TIP)
    return DatasetError(
        f"{argument}: a {kind} is not a Keras dataset of image files (auditor audits files, not arrays in memory)",
        "Pass what image_dataset_from_directory or ImageDataGenerator.flow_from_directory/flow_from_dataframe "
        "returned, or audit a folder with auditor.audit(DIR).")
