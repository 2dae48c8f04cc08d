"""Check auditor.index.keras_splits against Keras itself, on real JPEG files.

Keras and TensorFlow are imported only inside these tests, never by the
product code. The trees are built in ``tmp_path`` from JPEGs in
``<repo>/../shared/datasets/hymenoptera_data``. Keras does not decode
anything while indexing, so renamed copies (``.gif``, ``.PNG``, ``_png``)
are fine for the path comparisons.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from auditor.index.keras_splits import (
    DATASET_FORMATS,
    GENERATOR_FORMATS,
    KerasWouldRaiseError,
    SplitAssignment,
    dataset_class_names,
    generator_class_names,
    keras_dataset_split,
    keras_generator_split,
)
from tests.keras_group import KERAS

pytestmark = KERAS  # some tests here import Keras

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
HYMENOPTERA = DATASETS / "hymenoptera_data"

# (validation_split, seed) pairs. The main tree holds 32 dataset files, so
# int(v * n) >= 1 for every pair.
PAIRS = [(0.2, 1337), (0.25, 0), (0.5, 123), (0.29, 99), (0.1, 7), (0.75, 2**32 - 1)]
GEN_SPLITS = [0.2, 0.25, 0.5, 0.29, 0.1, 0.75, 0.34]


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def jpegs() -> list[Path]:
    src = HYMENOPTERA / "train"
    if not src.is_dir():
        pytest.skip(f"real JPEGs not available: {src} is missing")
    files = sorted(src.glob("*/*.jpg"), key=lambda p: (p.stat().st_size, p.name))
    if len(files) < 40:
        pytest.skip(f"need at least 40 JPEGs under {src}, found {len(files)}")
    return files[:40]  # the smallest ones keep copying cheap


def _put(jpegs: list[Path], counter: list[int], dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(jpegs[counter[0] % len(jpegs)], dest)
    counter[0] += 1


@pytest.fixture(scope="module")
def main_tree(tmp_path_factory, jpegs) -> Path:
    """A messy tree: nested folders, odd extensions, hidden entries, uneven sizes.

    It also holds a symlink loop and a symlinked class. No file in it is
    unreadable, so Keras can decode every one of them.
    """
    root = tmp_path_factory.mktemp("main") / "data"
    c = [0]
    # ants: 15 loadable files for both APIs, several of them nested
    for i in range(6):
        _put(jpegs, c, root / "ants" / f"a{i:02d}.jpg")
    for i in range(3):
        _put(jpegs, c, root / "ants" / "sub" / f"s{i}.jpg")
    for i in range(2):
        _put(jpegs, c, root / "ants" / "sub" / "deeper" / f"d{i}.jpg")
    for i in range(2):  # "sub-b" sorts between "sub" and "sub/deeper"
        _put(jpegs, c, root / "ants" / "sub-b" / f"x{i}.jpg")
    _put(jpegs, c, root / "ants" / ".cache" / "hidden_sub.jpg")
    _put(jpegs, c, root / "ants" / "._appledouble.jpg")
    (root / "ants" / "notes.txt").write_text("not an image\n")
    (root / "ants" / "sub" / "labels.csv").write_text("a,b\n")
    # bees: upper-case extensions and format differences between the APIs
    for i in range(7):
        _put(jpegs, c, root / "bees" / f"b{i:02d}.jpg")
    _put(jpegs, c, root / "bees" / "UPPER.JPG")
    _put(jpegs, c, root / "bees" / "photo.jpeg")
    _put(jpegs, c, root / "bees" / "shot.PNG")
    _put(jpegs, c, root / "bees" / "anim.gif")  # dataset: yes, generator: no
    _put(jpegs, c, root / "bees" / "scan.tif")  # dataset: no, generator: yes
    _put(jpegs, c, root / "bees" / "scan_png")  # no dot: generator only
    (root / "bees" / "readme.txt").write_text("x\n")
    # wasps: a small class
    for i in range(3):
        _put(jpegs, c, root / "wasps" / f"w{i}.jpg")
    # an empty class, a hidden "class", and a file at the top level
    (root / "empty").mkdir()
    _put(jpegs, c, root / ".ipynb_checkpoints" / "h.jpg")
    _put(jpegs, c, root / "top_level.jpg")
    # symlinks: a loop inside a class (never followed) and a symlinked class
    os.symlink("..", root / "wasps" / "loop")
    os.symlink("wasps", root / "wasps_link")
    return root


@pytest.fixture(scope="module")
def keras_mod():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("keras")


@pytest.fixture(scope="module")
def image_data_generator(keras_mod):
    try:  # Keras 3: legacy code, not exported under keras.preprocessing.image
        from keras.src.legacy.preprocessing.image import ImageDataGenerator
    except ImportError:  # pragma: no cover - other Keras layouts
        tf = pytest.importorskip("tensorflow")
        ImageDataGenerator = tf.keras.preprocessing.image.ImageDataGenerator
    return ImageDataGenerator


def _rel(paths, root: Path) -> list[str]:
    return [Path(os.path.relpath(p, root)).as_posix() for p in paths]


def _ours(assignments: list[SplitAssignment], split: str) -> list[str]:
    return [a.path for a in assignments if a.split == split]


def _keras_ds(keras, root: Path, v: float, seed: int, subset: str):
    return keras.utils.image_dataset_from_directory(
        str(root), validation_split=v, subset=subset, seed=seed,
        image_size=(8, 8), batch_size=64, verbose=False,
    )


# --------------------------------------------------------------------------
# (a) image_dataset_from_directory
# --------------------------------------------------------------------------

@pytest.mark.parametrize("v,seed", PAIRS)
def test_dataset_split_matches_keras(main_tree, keras_mod, v, seed):
    ours, ignored = keras_dataset_split(main_tree, v, seed)
    train = _keras_ds(keras_mod, main_tree, v, seed, "training")
    val = _keras_ds(keras_mod, main_tree, v, seed, "validation")
    assert hasattr(train, "file_paths") and hasattr(val, "file_paths")
    # same files, in the same order
    assert _ours(ours, "train") == _rel(train.file_paths, main_tree)
    assert _ours(ours, "val") == _rel(val.file_paths, main_tree)
    assert train.class_names == val.class_names == dataset_class_names(main_tree)
    assert all(a.label == a.path.split("/")[0] for a in ours)
    assert len(ours) == 32
    assert len(_ours(ours, "val")) == int(v * 32)


def test_dataset_subset_both_and_labels(main_tree, keras_mod):
    """subset="both" gives the same lists. The label Keras yields for each
    file is the class we report."""
    v, seed = 0.3, 2024
    ours, _ = keras_dataset_split(main_tree, v, seed)
    train, val = _keras_ds(keras_mod, main_tree, v, seed, "both")
    assert _ours(ours, "train") == _rel(train.file_paths, main_tree)
    assert _ours(ours, "val") == _rel(val.file_paths, main_tree)
    # The validation dataset is not shuffled, so its label order follows
    # file_paths (decodes only about 9 tiny images).
    keras_labels = [int(y) for _, ys in val for y in ys.numpy()]
    names = val.class_names
    assert [names[i] for i in keras_labels] == [
        a.label for a in ours if a.split == "val"
    ]


def test_dataset_walk_rules(main_tree):
    ours, ignored = keras_dataset_split(main_tree, 0.2, 1)
    paths = {a.path for a in ours}
    assert dataset_class_names(main_tree) == ["ants", "bees", "empty", "wasps", "wasps_link"]
    assert "ants/sub/deeper/d0.jpg" in paths           # nested folders are walked
    assert "ants/.cache/hidden_sub.jpg" in paths       # hidden sub-folder inside a class
    assert "ants/._appledouble.jpg" in paths           # hidden file
    assert "bees/UPPER.JPG" in paths and "bees/shot.PNG" in paths
    assert "bees/anim.gif" in paths
    assert "bees/scan.tif" not in paths and "bees/scan_png" not in paths
    assert "wasps_link/w0.jpg" in paths                # symlinked class folder
    assert not any(p.startswith(".ipynb_checkpoints") for p in paths)
    assert not any("loop" in p for p in paths)
    assert sorted(ignored) == sorted([
        "ants/notes.txt", "ants/sub/labels.csv", "bees/readme.txt",
        "bees/scan.tif", "bees/scan_png", "wasps/loop/", "wasps_link/loop/",
    ])


def test_dataset_float_rounding_and_degenerate(tmp_path, jpegs, keras_mod):
    """Keras uses int(v * n) as is: int(0.29 * 100) == 28 and
    int(0.57 * 100) == 56. When int(v * n) == 0, the training subset is
    empty and Keras raises."""
    root = tmp_path / "hundred"
    for i in range(100):
        dest = root / ("a" if i < 60 else "b") / f"f{i:03d}.jpg"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.link(jpegs[i % len(jpegs)], dest)  # hard links: cheap, real files
    for v, seed, expected_val in [(0.29, 5, 28), (0.57, 11, 56)]:
        ours, _ = keras_dataset_split(root, v, seed)
        train = _keras_ds(keras_mod, root, v, seed, "training")
        val = _keras_ds(keras_mod, root, v, seed, "validation")
        assert len(_ours(ours, "val")) == expected_val == len(val.file_paths)
        assert _ours(ours, "train") == _rel(train.file_paths, root)
        assert _ours(ours, "val") == _rel(val.file_paths, root)

    tiny = tmp_path / "tiny"
    for i in range(3):
        dest = tiny / "only" / f"t{i}.jpg"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(jpegs[i], dest)
    with pytest.raises(KerasWouldRaiseError, match="training"):
        keras_dataset_split(tiny, 0.2, 1)  # int(0.6) == 0
    with pytest.raises(ValueError):
        _keras_ds(keras_mod, tiny, 0.2, 1, "training")
    # Keras' "validation" subset silently takes every file in this case.
    assert len(_keras_ds(keras_mod, tiny, 0.2, 1, "validation").file_paths) == 3


def test_dataset_symlink_edge_cases(tmp_path, jpegs, keras_mod):
    """Keras keeps symlinked files and broken symlinks with an image
    extension. It does not follow symlinked directories, loops included."""
    root = tmp_path / "links"
    for i in range(5):
        dest = root / "cls" / f"c{i}.jpg"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(jpegs[i], dest)
    (root / "outside").mkdir()
    shutil.copyfile(jpegs[5], root / "outside" / "o.jpg")
    os.symlink(root / "outside" / "o.jpg", root / "cls" / "file_link.jpg")
    os.symlink(root / "nowhere.jpg", root / "cls" / "broken.jpg")
    os.symlink(root / "outside", root / "cls" / "dir_link")
    os.symlink(root, root / "cls" / "loop_to_root")
    ours, ignored = keras_dataset_split(root, 0.4, 3)
    train = _keras_ds(keras_mod, root, 0.4, 3, "training")
    val = _keras_ds(keras_mod, root, 0.4, 3, "validation")
    assert _ours(ours, "train") == _rel(train.file_paths, root)
    assert _ours(ours, "val") == _rel(val.file_paths, root)
    assert {"cls/file_link.jpg", "cls/broken.jpg"} <= {a.path for a in ours}
    assert ignored == ["cls/dir_link/", "cls/loop_to_root/"]


# --------------------------------------------------------------------------
# (b) ImageDataGenerator.flow_from_directory
# --------------------------------------------------------------------------

def _keras_flow(gen_cls, root: Path, v: float, subset: str):
    return gen_cls(validation_split=v).flow_from_directory(
        str(root), subset=subset, target_size=(8, 8), batch_size=4, seed=1,
    )


@pytest.mark.parametrize("v", GEN_SPLITS)
def test_generator_split_matches_keras(main_tree, image_data_generator, v):
    ours, _ = keras_generator_split(main_tree, v)
    train = _keras_flow(image_data_generator, main_tree, v, "training")
    val = _keras_flow(image_data_generator, main_tree, v, "validation")
    for it, split in [(train, "train"), (val, "val")]:
        assert _ours(ours, split) == [Path(f).as_posix() for f in it.filenames]
        assert _ours(ours, split) == _rel(it.filepaths, main_tree)
        inv = {i: name for name, i in it.class_indices.items()}
        assert [a.label for a in ours if a.split == split] == [inv[int(k)] for k in it.classes]
        assert list(it.class_indices) == generator_class_names(main_tree)


def test_generator_walk_rules(main_tree):
    ours, ignored = keras_generator_split(main_tree, 0.25)
    paths = {a.path for a in ours}
    assert generator_class_names(main_tree) == [
        ".ipynb_checkpoints", "ants", "bees", "empty", "wasps", "wasps_link",
    ]
    assert ".ipynb_checkpoints/h.jpg" in paths         # hidden folder is a class here
    assert {"bees/scan.tif", "bees/scan_png", "bees/UPPER.JPG"} <= paths
    assert "bees/anim.gif" not in paths and "bees/anim.gif" in ignored
    # per-class split: first int(v*m) files of each class in walk order are val
    ants = [a for a in ours if a.label == "ants"]
    assert len(ants) == 15
    assert [a.split for a in ants] == ["val"] * 3 + ["train"] * 12
    assert ants[0].path == "ants/._appledouble.jpg"     # walk order: root first
    assert [a.path for a in ants][-4:] == [              # "sub-b" < "sub/deeper"
        "ants/sub-b/x0.jpg", "ants/sub-b/x1.jpg",
        "ants/sub/deeper/d0.jpg", "ants/sub/deeper/d1.jpg",
    ]
    wasps = [a for a in ours if a.label == "wasps"]
    assert [a.split for a in wasps] == ["train"] * 3    # int(0.75) == 0 -> no val


def test_generator_float_rounding(tmp_path, jpegs, image_data_generator):
    root = tmp_path / "hundred"
    for i in range(100):
        dest = root / "a" / f"f{i:03d}.jpg"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.link(jpegs[i % len(jpegs)], dest)
    ours, _ = keras_generator_split(root, 0.29)
    val = _keras_flow(image_data_generator, root, 0.29, "validation")
    assert len(val.filenames) == 28 == len(_ours(ours, "val"))
    assert _ours(ours, "val") == list(val.filenames)


def test_generator_empty_directory(tmp_path):
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "x.txt").write_text("x")
    assert keras_generator_split(tmp_path, 0.5) == ([], ["cls/x.txt"])
    with pytest.raises(KerasWouldRaiseError):
        keras_dataset_split(tmp_path, 0.5, 1)


# --------------------------------------------------------------------------
# argument validation and import hygiene (no Keras needed)
# --------------------------------------------------------------------------

@pytest.fixture
def ten_files(tmp_path) -> Path:
    """Ten dummy image files in one class. Nothing here is decoded."""
    root = tmp_path / "ten"
    (root / "c").mkdir(parents=True)
    for i in range(10):
        (root / "c" / f"x{i}.jpg").write_bytes(b"\xff\xd8")
    return root

@pytest.mark.parametrize("v", [0, 1, 0.0, 1.0, -0.1, 1.5, float("nan"), None, "0.2", True])
def test_bad_validation_split(ten_files, v):
    with pytest.raises(ValueError, match="^validation_split must be"):
        keras_dataset_split(ten_files, v, 1)
    with pytest.raises(ValueError, match="^validation_split must be"):
        keras_generator_split(ten_files, v)


@pytest.mark.parametrize("seed", [None, 1.0, "1", True, -1, 2**32])
def test_bad_seed(ten_files, seed):
    with pytest.raises(ValueError, match="^seed (must|is required)"):
        keras_dataset_split(ten_files, 0.2, seed)


def test_valid_arguments_accepted(ten_files):
    """These are the same files the rejection tests use, so those tests can
    only fail on the argument being checked."""
    import numpy as np

    for seed in (0, 1, 2**32 - 1, np.int64(5)):
        ours, ignored = keras_dataset_split(ten_files, 0.3, seed)
        assert len(ours) == 10 and ignored == []
        assert sum(a.split == "val" for a in ours) == 3
    assert len(keras_generator_split(str(ten_files), 0.3)[0]) == 10


def test_bad_root(tmp_path):
    with pytest.raises(ValueError, match="not an existing directory"):
        keras_dataset_split(tmp_path / "missing", 0.2, 1)
    with pytest.raises(ValueError, match="not an existing directory"):
        keras_generator_split(tmp_path / "missing", 0.2)


def test_formats_constants():
    assert DATASET_FORMATS == (".bmp", ".gif", ".jpeg", ".jpg", ".png")
    assert GENERATOR_FORMATS == ("png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff")


def test_constants_match_installed_keras(keras_mod):
    from keras.src.legacy.preprocessing.image import Iterator
    from keras.src.utils.image_dataset_utils import ALLOWLIST_FORMATS

    assert tuple(ALLOWLIST_FORMATS) == DATASET_FORMATS
    assert tuple(Iterator.white_list_formats) == GENERATOR_FORMATS


def test_module_does_not_import_keras_or_tensorflow():
    repo = Path(__file__).resolve().parents[2]
    code = (
        "import sys, auditor.index.keras_splits; "
        "bad = [m for m in ('keras', 'tensorflow') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=repo, check=True)
