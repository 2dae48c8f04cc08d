"""Reproduce which files Keras puts in its training and validation subsets.

Nothing here imports TensorFlow or Keras. The rules were read from the
installed source of **Keras 3.15.1** (with TensorFlow 2.21.0, NumPy 2.4.6),
and ``tests/test_keras_splits.py`` compares the results with Keras itself:

* ``keras.utils.image_dataset_from_directory`` →
  ``keras/src/utils/image_dataset_utils.py`` plus ``index_directory``,
  ``index_subdirectory``, ``iter_valid_files`` and
  ``get_training_or_validation_split`` in ``keras/src/utils/dataset_utils.py``.
  Mirrored by :func:`keras_dataset_split`.
* ``ImageDataGenerator(validation_split=v).flow_from_directory(...)`` →
  ``keras/src/legacy/preprocessing/image.py`` (``DirectoryIterator``,
  ``_list_valid_filenames_in_directory``, ``_iter_valid_files``). In
  Keras 3.15.1 the public ``keras.preprocessing.image`` module does **not**
  export ``ImageDataGenerator``. You can reach it through
  ``tf.keras.preprocessing.image`` or ``keras.src.legacy.preprocessing.image``.
  Mirrored by :func:`keras_generator_split`.

Only the Keras defaults that matter here are mirrored: ``labels="inferred"``,
``class_names=None`` / ``classes=None`` (every qualifying sub-folder is a
class, in sorted order), ``shuffle=True`` for the dataset utility, and
``follow_links=False`` for both APIs. Because no symlinked directory is ever
entered, a symlink loop cannot make these functions hang. Keras would not
hang on one either, because it uses the same default.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "KERAS_VERSION_READ",
    "DATASET_FORMATS",
    "GENERATOR_FORMATS",
    "SplitAssignment",
    "KerasWouldRaiseError",
    "dataset_class_names",
    "generator_class_names",
    "keras_dataset_split",
    "keras_generator_split",
]

#: Keras version whose source these rules were read from and tested against.
KERAS_VERSION_READ = "3.15.1"

#: ``keras.src.utils.image_dataset_utils.ALLOWLIST_FORMATS``. The test is
#: ``fname.lower().endswith(DATASET_FORMATS)``, so it ignores case.
DATASET_FORMATS: tuple[str, ...] = (".bmp", ".gif", ".jpeg", ".jpg", ".png")

#: ``keras.src.legacy.preprocessing.image.Iterator.white_list_formats``. The
#: test is ``fname.lower().endswith(GENERATOR_FORMATS)``. These suffixes have
#: no dot, so a name like ``"scan_png"`` is accepted as well. ``.gif`` is not
#: on this list.
GENERATOR_FORMATS: tuple[str, ...] = (
    "png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff",
)


@dataclass(frozen=True)
class SplitAssignment:
    """One file that Keras would load, and the subset it goes to."""

    path: str   # POSIX path relative to the dataset root, e.g. "cats/sub/1.jpg"
    label: str  # class folder name (first component of ``path``)
    split: str  # "train" or "val"


class KerasWouldRaiseError(ValueError):
    """The arguments are valid, but Keras itself would fail on this directory.

    For example, no image is found, or ``int(validation_split * n) == 0``,
    which leaves the training subset of ``image_dataset_from_directory``
    empty.
    """


# --------------------------------------------------------------------------
# argument validation
# --------------------------------------------------------------------------

def _check_root(root: os.PathLike | str) -> str:
    try:
        root_s = os.fspath(root)
    except TypeError:
        raise ValueError(
            f"root must be a path (str or os.PathLike), got {type(root).__name__}"
        ) from None
    if isinstance(root_s, bytes):
        raise ValueError("root must be a str path, not bytes")
    if not os.path.isdir(root_s):
        raise ValueError(f"root {root_s!r} is not an existing directory")
    return root_s


def _check_validation_split(validation_split) -> None:
    if isinstance(validation_split, bool) or not isinstance(
        validation_split, numbers.Real
    ):
        raise ValueError(
            "validation_split must be a real number strictly between 0 and 1, "
            f"got {validation_split!r} ({type(validation_split).__name__})"
        )
    # ``not (0 < v < 1)`` also rejects NaN.
    if not 0 < validation_split < 1:
        raise ValueError(
            "validation_split must be strictly between 0 and 1, "
            f"got {validation_split!r}"
        )


def _check_seed(seed) -> None:
    if seed is None:
        raise ValueError(
            "seed is required: Keras' image_dataset_from_directory refuses "
            "validation_split with shuffle=True and seed=None, and an unseeded "
            "split cannot be reproduced"
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(
            f"seed must be an int, got {seed!r} ({type(seed).__name__})"
        )
    if not 0 <= int(seed) <= 2**32 - 1:
        # np.random.RandomState (which Keras uses) rejects anything else.
        raise ValueError(
            f"seed must be between 0 and 2**32 - 1 (numpy RandomState), got {seed}"
        )


# --------------------------------------------------------------------------
# directory walking (shared by both APIs)
# --------------------------------------------------------------------------

def _walk_class_dir(
    class_dir: str, label: str, formats: tuple[str, ...]
) -> tuple[list[str], list[str]]:
    """Walk one class folder the way Keras does with ``follow_links=False``.

    Keras sorts the ``os.walk`` triples by their ``root`` string (so
    ``"c/a"`` < ``"c/a-b"`` < ``"c/a/x"``). Inside each root it sorts the
    file names and keeps those with ``name.lower().endswith(formats)``.
    ``os.walk`` lists symlinks to files, and broken symlinks, among the files.
    It lists symlinks to directories among the directories but does not
    enter them, and it skips unreadable directories without a word.

    Returns ``(kept, ignored)`` as POSIX paths relative to the dataset root,
    both in Keras' walk order. ``ignored`` also names each symlinked
    directory that is not entered, once, with a trailing ``"/"``.
    """
    kept: list[str] = []
    ignored: list[str] = []

    def rel(path: str) -> str:
        parts = os.path.relpath(path, class_dir).split(os.sep)
        parts = [p for p in parts if p not in ("", ".")]
        return "/".join([label, *parts])

    walk = sorted(os.walk(class_dir, followlinks=False), key=lambda x: x[0])
    for dirpath, dirnames, filenames in walk:
        for fname in sorted(filenames):
            relpath = rel(os.path.join(dirpath, fname))
            if fname.lower().endswith(formats):
                kept.append(relpath)
            else:
                ignored.append(relpath)
        for dname in sorted(dirnames):
            full = os.path.join(dirpath, dname)
            if os.path.islink(full):
                ignored.append(rel(full) + "/")
    return kept, ignored


def dataset_class_names(root: os.PathLike | str) -> list[str]:
    """Give the ``class_names`` that ``image_dataset_from_directory`` infers.

    These are the entries of ``sorted(os.listdir(root))`` that are
    directories (symlinks to directories count) and whose names do **not**
    start with ``"."``. Empty folders still count as classes.
    """
    root_s = _check_root(root)
    return [
        name
        for name in sorted(os.listdir(root_s))
        if os.path.isdir(os.path.join(root_s, name)) and not name.startswith(".")
    ]


def generator_class_names(root: os.PathLike | str) -> list[str]:
    """Give the class order that ``flow_from_directory`` infers (``class_indices``).

    These are the entries of ``sorted(os.listdir(root))`` that are
    directories (symlinks to directories count). Unlike the dataset utility,
    hidden folders such as ``.ipynb_checkpoints`` **are** classes here.
    """
    root_s = _check_root(root)
    return [
        name
        for name in sorted(os.listdir(root_s))
        if os.path.isdir(os.path.join(root_s, name))
    ]


# --------------------------------------------------------------------------
# (a) keras.utils.image_dataset_from_directory
# --------------------------------------------------------------------------

def keras_dataset_split(
    root: Path, validation_split: float, seed: int
) -> tuple[list[SplitAssignment], list[str]]:
    """Mirror ``keras.utils.image_dataset_from_directory(root,
    validation_split=validation_split, subset=..., seed=seed)`` (Keras 3.15.1).

    Keras 3.15.1 does the following:

    1. Classes are the sorted sub-directories of ``root``, skipping names
       that start with ``"."`` (see :func:`dataset_class_names`).
    2. Each class folder is walked recursively with ``os.walk(...,
       followlinks=False)``. Roots are sorted by path string and file names
       are sorted inside each root. A file is kept when
       ``name.lower().endswith((".bmp", ".gif", ".jpeg", ".jpg", ".png"))``,
       so upper-case extensions count. Hidden files and hidden
       *sub*-folders inside a class are included.
    3. All files are concatenated class by class, and the list is shuffled
       with ``np.random.RandomState(seed).shuffle``. The labels are shuffled
       with a fresh ``RandomState(seed)``, which gives the same permutation.
    4. ``num_val = int(validation_split * n)``. Training is
       ``paths[:-num_val]`` and validation is ``paths[-num_val:]``, so
       validation is the **end** of the shuffled list. The split is global,
       not per class. ``subset="both"`` yields the same two lists.

    Returns ``(assignments, ignored)``. ``assignments`` holds every file
    Keras loads, in Keras' own order: the training files in the order of
    ``train_ds.file_paths``, then the validation files in the order of
    ``val_ds.file_paths``. ``ignored`` lists the files inside the class
    folders that fail the extension test, plus each symlinked directory that
    is not followed (with a trailing ``"/"``). Files directly in ``root`` and
    files in hidden top-level folders are not listed.

    Raises ``ValueError`` for a bad ``root``, ``validation_split`` or
    ``seed``. Raises :class:`KerasWouldRaiseError` (a ``ValueError``) when
    Keras itself would fail: no image is found, or ``int(validation_split *
    n) == 0``. In that second case Keras' ``paths[:-0]`` is empty, so
    ``subset="training"`` and ``subset="both"`` raise "No ... images found",
    and ``subset="validation"`` would silently return every file.
    """
    root_s = _check_root(root)
    _check_validation_split(validation_split)
    _check_seed(seed)

    paths: list[str] = []
    labels: list[str] = []
    ignored: list[str] = []
    for cls in dataset_class_names(root_s):
        kept, ign = _walk_class_dir(os.path.join(root_s, cls), cls, DATASET_FORMATS)
        paths += kept
        labels += [cls] * len(kept)
        ignored += ign

    n = len(paths)
    if n == 0:
        raise KerasWouldRaiseError(
            f"Keras would raise: no images found in {root_s!r} "
            f"(allowed formats: {DATASET_FORMATS})"
        )

    # Keras shuffles the Python list of paths in place. RandomState.shuffle
    # treats any list the same way, so a list of indices gets the same
    # permutation.
    order = list(range(n))
    np.random.RandomState(int(seed)).shuffle(order)

    # Same expression as Keras, so float rounding matches
    # (e.g. int(0.29 * 100) == 28).
    num_val = int(validation_split * n)
    train_idx = order[:-num_val]
    val_idx = order[-num_val:]
    if not train_idx or not val_idx:
        raise KerasWouldRaiseError(
            f"Keras would raise for subset='training'/'both': "
            f"int({validation_split!r} * {n}) = {num_val} validation files, "
            f"which leaves {len(train_idx)} training files "
            "(Keras slices paths[:-num_val], and paths[:-0] is empty)"
        )

    assignments = [SplitAssignment(paths[i], labels[i], "train") for i in train_idx]
    assignments += [SplitAssignment(paths[i], labels[i], "val") for i in val_idx]
    return assignments, ignored


# --------------------------------------------------------------------------
# (b) ImageDataGenerator(validation_split=v).flow_from_directory
# --------------------------------------------------------------------------

def keras_generator_split(
    root: Path, validation_split: float
) -> tuple[list[SplitAssignment], list[str]]:
    """Mirror ``ImageDataGenerator(validation_split=validation_split)
    .flow_from_directory(root, subset=...)`` (Keras 3.15.1 legacy code in
    ``keras/src/legacy/preprocessing/image.py``).

    Keras 3.15.1 does the following:

    1. Classes are the sorted sub-directories of ``root``, **including**
       hidden ones (see :func:`generator_class_names`).
    2. Each class folder is walked with ``os.walk(...,
       followlinks=False)``, which is the ``follow_links`` default of
       ``flow_from_directory``. Roots are sorted by path string and file
       names are sorted inside each root. A file is kept when
       ``name.lower().endswith(("png", "jpg", "jpeg", "bmp", "ppm", "tif",
       "tiff"))``. There is no dot in these suffixes and ``.gif`` is absent.
    3. There is no shuffling before the split, and the split is done **per
       class**. With ``m`` files in a class, validation is the first
       ``int(validation_split * m)`` files in walk order and training is the
       rest. A class with ``int(validation_split * m) == 0`` therefore has
       no validation files. The ``seed`` argument of ``flow_from_directory``
       only affects the batch order, never the split.

    Returns ``(assignments, ignored)``. ``assignments`` is in Keras'
    ``.filenames`` order: class by class and in walk order, so within each
    class the ``"val"`` files come first. Filtering it by split gives the
    ``.filenames`` of each subset, in order. ``ignored`` is defined as in
    :func:`keras_dataset_split`.

    Raises ``ValueError`` for a bad ``root`` or ``validation_split``. A
    directory without images is not an error, because Keras only prints
    "Found 0 images"; the result is then ``([], ignored)``.
    """
    root_s = _check_root(root)
    _check_validation_split(validation_split)

    assignments: list[SplitAssignment] = []
    ignored: list[str] = []
    for cls in generator_class_names(root_s):
        kept, ign = _walk_class_dir(
            os.path.join(root_s, cls), cls, GENERATOR_FORMATS
        )
        ignored += ign
        m = len(kept)
        # Keras: subset="validation" -> split=(0, v); "training" -> (v, 1).
        cut = int(validation_split * m)
        assignments += [SplitAssignment(p, cls, "val") for p in kept[0:cut]]
        assignments += [SplitAssignment(p, cls, "train") for p in kept[cut:int(1 * m)]]
    return assignments, ignored
