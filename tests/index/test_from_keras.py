"""auditor.index.from_keras against the objects Keras itself makes (Keras imported only here).

The indexes must be the ones the command line builds for the same folder (`--validation-split … --seed …
--split-style …`): the same records, in the same order. Nothing is decoded, so tiny copies of real JPEGs do.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from auditor.config import AuditConfig
from auditor.errors import DatasetError
from auditor.index.dataset import load_dataset
from auditor.index.from_keras import index_from_keras
from tests.keras_group import KERAS

pytestmark = KERAS  # some tests here import Keras

HYMENOPTERA = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "hymenoptera_data" / "train"
SEED = 1337


def records(index) -> list[tuple[str, str, str]]:
    return [(r.path, r.split, r.label) for r in index.records]


@pytest.fixture(scope="module")
def keras_mod():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("keras")


@pytest.fixture(scope="module")
def generator_cls(keras_mod):
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    return ImageDataGenerator


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """3 classes of uneven size, one with a sub-folder: 9 + 7 + 4 real JPEGs."""
    if not HYMENOPTERA.is_dir():
        pytest.skip(f"real photos not found: {HYMENOPTERA}")
    jpegs = sorted(HYMENOPTERA.glob("*/*.jpg"))[:20]
    root = tmp_path_factory.mktemp("keras") / "data"
    layout = [("ants", 7), ("ants/sub", 2), ("bees", 7), ("wasps", 4)]
    used = 0
    for sub, count in layout:
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shutil.copyfile(jpegs[used], root / sub / f"{sub.replace('/', '_')}_{i}.jpg")
            used += 1
    return root


def dataset(keras, root: Path, **options):
    return keras.utils.image_dataset_from_directory(str(root), image_size=(8, 8), batch_size=4, verbose=False, **options)


def test_image_dataset_from_directory_gives_the_cli_index(keras_mod, folder):
    train, val = dataset(keras_mod, folder, validation_split=0.25, subset="both", seed=SEED)
    ours = index_from_keras({"train": train, "validation": val})
    cli = load_dataset(folder, AuditConfig(validation_split=0.25, seed=SEED, split_style="keras-dataset"))
    assert records(ours) == records(cli)
    assert ours.root == folder and ours.splits == ["train", "val"]
    assert all(r.abspath == folder / r.path for r in ours.records)
    assert any("image_dataset_from_directory" in n for n in ours.notes)


def test_flow_from_directory_gives_the_cli_index(generator_cls, folder):
    gen = generator_cls(validation_split=0.3)
    train = gen.flow_from_directory(str(folder), subset="training", target_size=(8, 8), seed=1)
    val = gen.flow_from_directory(str(folder), subset="validation", target_size=(8, 8), seed=1)
    ours = index_from_keras({"train": train, "validation": val})
    cli = load_dataset(folder, AuditConfig(validation_split=0.3, split_style="keras-generator"))
    assert records(ours) == records(cli)
    assert [r.split for r in cli.records] == sorted((r.split for r in cli.records), key=lambda s: s != "train")


def test_a_test_set_from_another_folder_and_relative_paths(keras_mod, folder, tmp_path, monkeypatch):
    """train/val from one folder, test from another: paths are relative to the folder above both."""
    test_root = tmp_path / "holdout"
    shutil.copytree(folder / "bees", test_root / "bees")
    shutil.copytree(folder / "wasps", test_root / "wasps")
    monkeypatch.chdir(folder.parent)  # Keras keeps the paths as given: relative ones stay relative
    train, val = dataset(keras_mod, Path(folder.name), validation_split=0.25, subset="both", seed=SEED)
    test = dataset(keras_mod, test_root, shuffle=False)
    index = index_from_keras({"train": train, "validation": val, "test": test})
    assert index.root == Path(os.path.commonpath([folder, test_root]))
    tests = [r for r in index.records if r.split == "test"]
    assert len(tests) == 11 and {r.label for r in tests} == {"bees", "wasps"}
    assert all(r.abspath == index.root / r.path and r.abspath.parent == test_root / r.label for r in tests)
    assert all(r.abspath.relative_to(folder.resolve()).parts[0] == r.label for r in index.records if r.split != "test")
    assert all(r.abspath.is_file() for r in index.records)
    assert index.splits == ["train", "val", "test"]


def test_a_subset_holding_one_class_only(keras_mod, folder):
    """One class's files only: their common folder is that class folder, so the root is its parent."""
    only = dataset(keras_mod, folder, class_names=["bees"])
    index = index_from_keras({"train": only})
    assert index.root == folder and {r.label for r in index.records} == {"bees"}
    assert all(r.path.startswith("bees/") for r in index.records)


def test_a_mapped_dataset_has_no_file_paths_and_the_error_says_what_to_pass(keras_mod, folder):
    train = dataset(keras_mod, folder, validation_split=0.25, subset="training", seed=SEED)
    for transformed in (train.map(lambda x, y: (x / 255.0, y)), train.unbatch(), train.prefetch(2)):
        with pytest.raises(DatasetError, match="carries no file paths") as caught:
            index_from_keras({"train": transformed})
        assert "before .map" in caught.value.tip and "auditor.audit(DIR" in caught.value.tip


def test_datasets_without_folder_labels_are_refused(keras_mod, folder):
    with pytest.raises(DatasetError, match=r"carries no labels \(made with labels=None\)"):
        index_from_keras({"train": dataset(keras_mod, folder, labels=None)})
    count = len(list(folder.rglob("*.jpg")))
    listed = dataset(keras_mod, folder, labels=[i % 2 for i in range(count)])
    with pytest.raises(DatasetError, match="labels are not its folder names") as caught:
        index_from_keras({"train": listed})
    assert "manifest" in caught.value.tip


def test_arrays_and_other_objects_are_refused(keras_mod, generator_cls):
    import numpy as np

    arrays = generator_cls().flow(np.zeros((4, 8, 8, 3)), np.arange(4))
    with pytest.raises(DatasetError, match="NumpyArrayIterator is not a Keras dataset of image files"):
        index_from_keras({"train": arrays})
    with pytest.raises(DatasetError, match="needs the training data"):
        index_from_keras({"train": None})


def test_flow_from_dataframe_attributes(tmp_path):
    """flow_from_dataframe needs pandas (not installed here): a stand-in with the attributes Keras 3.15.1's
    DataFrameIterator sets (directory, filenames joined into filepaths, class_indices, classes)."""
    for name in ("a.jpg", "b.jpg", "c.jpg", "sub/d.jpg"):
        (tmp_path / "imgs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "imgs" / name).write_bytes(b"\xff\xd8")

    class DataFrameIterator(SimpleNamespace):
        pass

    files = ["a.jpg", "b.jpg", "sub/d.jpg", "a.jpg"]
    frame = DataFrameIterator(directory=str(tmp_path / "imgs"), filenames=files, class_mode="categorical",
                              filepaths=[os.path.join(tmp_path / "imgs", f) for f in files],
                              class_indices={"cat": 0, "dog": 1}, classes=[1, 0, 1, 1])
    index = index_from_keras({"train": frame})
    assert records(index) == [("a.jpg", "train", "dog"), ("b.jpg", "train", "cat"), ("sub/d.jpg", "train", "dog")]
    assert [(i.path, i.kind) for i in index.issues] == [("a.jpg", "listed_twice")]
    assert any("flow_from_dataframe" in n for n in index.notes)

    raw = DataFrameIterator(directory="", filenames=files, filepaths=files, class_mode="raw", class_indices=None)
    with pytest.raises(DatasetError, match=r"carries no class labels \(class_mode='raw'\)"):
        index_from_keras({"train": raw})
    multi = DataFrameIterator(directory=str(tmp_path), filenames=["a"], filepaths=[str(tmp_path / "a")],
                              class_mode="categorical", class_indices={"x": 0, "y": 1}, classes=[[0, 1]])
    with pytest.raises(DatasetError, match="multi-label"):
        index_from_keras({"train": multi})


def test_the_same_file_in_two_splits_stays_in_both(keras_mod, folder):
    """Passing one dataset as train and as validation is the plainest leak: both copies are audited."""
    whole = dataset(keras_mod, folder, shuffle=False)
    index = index_from_keras({"train": whole, "validation": whole})
    assert len(index.records) == 2 * len(whole.file_paths) and index.issues == []


def test_no_keras_import():
    import subprocess
    import sys

    code = ("import sys, auditor.index.from_keras; "
            "bad = [m for m in ('keras', 'tensorflow') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], check=True)
