"""Unit tests for auditor/dataset.py: layouts, the safe walk, manifests."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from auditor.config import AuditConfig
from auditor.index.dataset import (
    DatasetIndex,
    ImageRecord,
    detect_layout,
    load_dataset,
    read_manifest,
    write_manifest,
)
from auditor.errors import DatasetError


def make_image(path: Path, seed: int = 0, fmt: str = "PNG") -> Path:
    """A small real image file (the walk never decodes it, but the dataset should still be real)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path, fmt)
    return path


def split_tree(root: Path) -> Path:
    make_image(root / "train" / "cat" / "c1.png", 1)
    make_image(root / "train" / "cat" / "c2.png", 2)
    make_image(root / "train" / "dog" / "d1.png", 3)
    make_image(root / "val" / "cat" / "c3.png", 4)
    make_image(root / "val" / "dog" / "d2.png", 5)
    return root


def triples(index: DatasetIndex) -> set[tuple[str, str, str]]:
    return {(r.path, r.split, r.label) for r in index.records}


def issues_by_path(index: DatasetIndex) -> dict[str, str]:
    return {i.path: i.kind for i in index.issues}


# Layouts ------------------------------------------------------------------------------------

def test_split_layout_is_detected_and_indexed(tmp_path):
    root = split_tree(tmp_path / "data")
    assert detect_layout(root) == "splits"
    index = load_dataset(root, AuditConfig())
    assert index.layout == "splits"
    assert triples(index) == {
        ("train/cat/c1.png", "train", "cat"),
        ("train/cat/c2.png", "train", "cat"),
        ("train/dog/d1.png", "train", "dog"),
        ("val/cat/c3.png", "val", "cat"),
        ("val/dog/d2.png", "val", "dog"),
    }
    assert all(r.abspath == root / r.path for r in index.records)
    assert index.splits == ["train", "val"]
    assert index.reference_split == "train" and index.held_out_splits == ["val"]
    assert index.classes == ["cat", "dog"]
    assert index.issues == []
    assert index.summary()["splits"]["train"] == {"images": 3, "classes": {"cat": 2, "dog": 1}}


def test_class_layout_is_one_train_split(tmp_path):
    root = tmp_path / "data"
    make_image(root / "cat" / "a.png", 1)
    make_image(root / "dog" / "b.png", 2)
    assert detect_layout(root) == "classes"
    index = load_dataset(root, AuditConfig())
    assert index.layout == "classes"
    assert triples(index) == {("cat/a.png", "train", "cat"), ("dog/b.png", "train", "dog")}
    assert index.held_out_splits == []
    assert any("single split" in n for n in index.notes)


def test_nested_folders_below_a_class_belong_to_that_class(tmp_path):
    root = tmp_path / "data"
    make_image(root / "train" / "cat" / "indoor" / "night" / "n.png", 1)
    make_image(root / "val" / "dog" / "x" / "y.png", 2)
    make_image(root / "other" / "bird" / "deep" / "er" / "z.png", 3)  # class layout, nested
    index = load_dataset(root / "other", AuditConfig())
    assert triples(index) == {("bird/deep/er/z.png", "train", "bird")}
    (root / "other").rename(tmp_path / "other")
    index = load_dataset(root, AuditConfig())
    assert triples(index) == {
        ("train/cat/indoor/night/n.png", "train", "cat"),
        ("val/dog/x/y.png", "val", "dog"),
    }


def test_any_split_name_is_a_split(tmp_path):
    root = split_tree(tmp_path / "data")
    make_image(root / "holdout" / "cat" / "h.png", 9)
    index = load_dataset(root, AuditConfig())
    assert index.splits == ["train", "val", "holdout"]  # known names first, then the rest
    assert ("holdout/cat/h.png", "holdout", "cat") in triples(index)
    assert index.held_out_splits == ["val", "holdout"]


def test_forced_split_layout_without_train(tmp_path):
    root = tmp_path / "data"
    make_image(root / "holdout" / "cat" / "h.png", 1)
    make_image(root / "extra" / "dog" / "e.png", 2)
    assert detect_layout(root) == "classes"  # no split-like name: auto reads these as classes
    index = load_dataset(root, AuditConfig(layout="splits"))
    assert triples(index) == {("holdout/cat/h.png", "holdout", "cat"), ("extra/dog/e.png", "extra", "dog")}
    assert index.reference_split is None
    assert any("No 'train' split" in n for n in index.notes)


def test_file_directly_in_a_split_folder_is_unlabelled(tmp_path):
    root = split_tree(tmp_path / "data")
    make_image(root / "train" / "stray.png", 7)
    index = load_dataset(root, AuditConfig())
    assert issues_by_path(index) == {"train/stray.png": "unlabelled_file"}
    assert "train/stray.png" not in {r.path for r in index.records}
    assert len(index.records) == 5


def test_file_at_top_of_class_layout_is_unlabelled(tmp_path):
    root = tmp_path / "data"
    make_image(root / "cat" / "a.png", 1)
    make_image(root / "top.png", 2)
    index = load_dataset(root, AuditConfig())
    assert issues_by_path(index) == {"top.png": "unlabelled_file"}
    assert triples(index) == {("cat/a.png", "train", "cat")}


@pytest.mark.parametrize("style", ["keras-dataset", "keras-generator"])
def test_a_file_at_the_top_of_a_keras_split_is_unlabelled_too(tmp_path, style):
    root = tmp_path / "data"
    make_image(root / "cat" / "a.png", 1)
    make_image(root / "dog" / "b.png", 3)
    make_image(root / "top.png", 2)
    (root / "notes.txt").write_text("how these were collected")
    (root / ".hidden").write_text("")
    index = load_dataset(root, AuditConfig(validation_split=0.5, seed=1, split_style=style))
    assert issues_by_path(index) == {"notes.txt": "unlabelled_file", "top.png": "unlabelled_file"}
    assert {r.path for r in index.records} == {"cat/a.png", "dog/b.png"}


def test_loose_files_at_root_are_noted(tmp_path):
    root = split_tree(tmp_path / "data")
    (root / "README.md").write_text("about this dataset")
    make_image(root / "stray.png", 8)
    index = load_dataset(root, AuditConfig())
    assert issues_by_path(index) == {"README.md": "loose_file", "stray.png": "loose_file"}
    assert len(index.records) == 5


def test_hidden_and_os_files_are_ignored(tmp_path):
    root = split_tree(tmp_path / "data")
    for junk in (".DS_Store", "Thumbs.db", "desktop.ini"):
        (root / junk).write_bytes(b"\x00junk")
        (root / "train" / junk).write_bytes(b"\x00junk")
        (root / "train" / "cat" / junk).write_bytes(b"\x00junk")
    (root / "train" / "cat" / "THUMBS.DB").write_bytes(b"\x00junk")
    make_image(root / "train" / "cat" / ".hidden.png", 10)
    make_image(root / "train" / "cat" / ".ipynb_checkpoints" / "c1-checkpoint.png", 11)
    make_image(root / "train" / "__MACOSX" / "cat" / "._c1.png", 12)
    make_image(root / ".git" / "cat" / "x.png", 13)
    index = load_dataset(root, AuditConfig())
    assert index.issues == []
    assert len(index.records) == 5
    assert index.splits == ["train", "val"]


def test_symlink_loop_is_reported_and_the_walk_ends(tmp_path):
    root = split_tree(tmp_path / "data")
    os.symlink(root / "train" / "cat", root / "train" / "cat" / "loop")  # a class subfolder → its parent
    result: dict = {}
    walker = threading.Thread(target=lambda: result.setdefault("index", load_dataset(root, AuditConfig())), daemon=True)
    walker.start()
    walker.join(timeout=10)
    assert not walker.is_alive(), "the walk did not end"
    index = result["index"]
    assert issues_by_path(index) == {"train/cat/loop": "symlink_loop"}
    assert len(index.records) == 5  # nothing is counted twice through the loop


def test_link_to_a_folder_of_another_split_does_not_hide_that_folder(tmp_path):
    root = split_tree(tmp_path / "data")
    os.symlink(root / "val" / "cat", root / "train" / "bird")  # shares val/cat's images with train: a leak
    index = load_dataset(root, AuditConfig())
    assert index.issues == []
    found = triples(index)
    assert ("train/bird/c3.png", "train", "bird") in found
    assert ("val/cat/c3.png", "val", "cat") in found  # the real folder is still audited in its own split


def test_broken_symlink_is_reported(tmp_path):
    root = split_tree(tmp_path / "data")
    os.symlink(tmp_path / "nowhere.png", root / "train" / "cat" / "gone.png")
    os.symlink(tmp_path / "no-folder", root / "val" / "ghost")
    index = load_dataset(root, AuditConfig())
    assert issues_by_path(index) == {"train/cat/gone.png": "broken_link", "val/ghost": "broken_link"}
    assert len(index.records) == 5


def test_unreadable_folder_is_reported(tmp_path):
    root = split_tree(tmp_path / "data")
    locked = root / "train" / "dog"
    locked.chmod(0)
    try:
        try:
            os.listdir(locked)
        except PermissionError:
            pass
        else:
            pytest.skip("this user (e.g. root) can list a chmod 000 folder, so it cannot be unreadable here")
        index = load_dataset(root, AuditConfig())
        assert issues_by_path(index) == {"train/dog": "unreadable_dir"}
        assert {r.path for r in index.records} == {"train/cat/c1.png", "train/cat/c2.png", "val/cat/c3.png", "val/dog/d2.png"}
    finally:
        locked.chmod(0o755)


# Nothing to audit ---------------------------------------------------------------------------

def test_missing_directory_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "absent", AuditConfig())


def test_file_instead_of_directory_is_a_dataset_error(tmp_path):
    image = make_image(tmp_path / "one.png")
    with pytest.raises(DatasetError, match="not a directory"):
        load_dataset(image, AuditConfig())


@pytest.mark.parametrize("contents", ["empty", "only-junk", "empty-classes"])
def test_empty_dataset_is_a_dataset_error(tmp_path, contents):
    root = tmp_path / "data"
    root.mkdir()
    if contents == "only-junk":
        (root / ".DS_Store").write_bytes(b"junk")
        (root / "cat").mkdir()
        (root / "cat" / "Thumbs.db").write_bytes(b"junk")
    elif contents == "empty-classes":
        (root / "train" / "cat").mkdir(parents=True)
        (root / "val" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images found") as raised:
        load_dataset(root, AuditConfig())
    assert raised.value.tip  # errors for people carry a tip


# Manifests ----------------------------------------------------------------------------------

def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_manifest_is_read(tmp_path):
    make_image(tmp_path / "imgs" / "a.png", 1)
    manifest = write_csv(
        tmp_path / "list.csv",
        "\ufeffPath, Label ,SPLIT,source\nimgs/a.png,cat,train,camera1\nimgs/b.png,dog,val,\n/abs/c.png,dog,test,web\n",
    )
    index = load_dataset(tmp_path, AuditConfig(manifest=manifest, allow_outside_root=True))
    assert index.layout == "manifest"
    assert index.issues == []
    assert index.records == [
        ImageRecord("imgs/a.png", tmp_path / "imgs" / "a.png", split="train", label="cat", source="camera1"),
        ImageRecord("imgs/b.png", tmp_path / "imgs" / "b.png", split="val", label="dog", source=None),
        ImageRecord("/abs/c.png", Path("/abs/c.png"), split="test", label="dog", source="web"),
    ]
    # Without --allow-outside-root the absolute path outside the dataset folder is refused, by line.
    refused = load_dataset(tmp_path, AuditConfig(manifest=manifest))
    assert [(i.path, i.kind) for i in refused.issues] == [("list.csv:4", "path_outside_root")]
    assert [r.path for r in refused.records] == ["imgs/a.png", "imgs/b.png"]


def test_manifest_columns_can_come_in_any_order(tmp_path):
    manifest = write_csv(tmp_path / "m.csv", "split,label,path\nval,cat,x.png\n")
    index = read_manifest(tmp_path, manifest)
    assert triples(index) == {("x.png", "val", "cat")}


def test_manifest_missing_column_is_a_dataset_error(tmp_path):
    manifest = write_csv(tmp_path / "m.csv", "path,label\na.png,cat\n")
    with pytest.raises(DatasetError, match="lacks column.*split"):
        read_manifest(tmp_path, manifest)
    empty = write_csv(tmp_path / "empty.csv", "")
    with pytest.raises(DatasetError, match="lacks column"):
        read_manifest(tmp_path, empty)


def test_missing_manifest_file_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_manifest(tmp_path, tmp_path / "absent.csv")


def test_bad_manifest_rows_are_issues_and_the_rest_loads(tmp_path):
    manifest = write_csv(
        tmp_path / "m.csv",
        "path,label,split\n"
        "good1.png,cat,train\n"  # line 2
        "short.png,cat\n"  # line 3: short row
        ",cat,train\n"  # line 4: empty path
        "nolabel.png,  ,val\n"  # line 5: blank label
        "good1.png,dog,val\n"  # line 6: listed twice
        "\n"  # line 7: blank lines are skipped silently
        "good2.png,dog,val\n",  # line 8
    )
    index = read_manifest(tmp_path, manifest)
    assert triples(index) == {("good1.png", "train", "cat"), ("good2.png", "val", "dog")}
    assert [(i.path, i.kind) for i in index.issues] == [
        ("m.csv:3", "manifest_row"),
        ("m.csv:4", "manifest_row"),
        ("m.csv:5", "manifest_row"),
        ("m.csv:6", "duplicate_manifest_row"),
    ]
    assert "good1.png" in index.issues[-1].message and "first at line 2" in index.issues[-1].message


def test_non_utf8_manifest_is_a_dataset_error(tmp_path):
    manifest = write_csv(tmp_path / "m.csv", "path,label,split\ncafé.png,chat,train\n", encoding="latin-1")
    with pytest.raises(DatasetError, match="not UTF-8"):
        read_manifest(tmp_path, manifest)


def test_write_manifest_round_trips(tmp_path):
    records = [
        ImageRecord('odd, "name".png', tmp_path / "x", split="val", label="cat, tabby", source="cam 1"),
        ImageRecord("b/é.png", tmp_path / "y", split="train", label="dog", source=None),
        ImageRecord("a.png", tmp_path / "z", split="holdout", label="dog", source="web"),
    ]
    index = DatasetIndex(root=tmp_path, layout="splits", records=records)
    destination = tmp_path / "out" / "manifest.csv"
    write_manifest(index, destination)
    assert destination.read_text(encoding="utf-8").splitlines()[0] == "path,label,split,source"
    back = read_manifest(tmp_path, destination)
    assert back.issues == []
    assert {(r.path, r.label, r.split, r.source) for r in back.records} == {
        (r.path, r.label, r.split, r.source) for r in records
    }
    assert [r.split for r in back.records] == ["train", "val", "holdout"]  # written in split order


def test_write_manifest_of_a_walked_dataset_round_trips(tmp_path):
    root = split_tree(tmp_path / "data")
    index = load_dataset(root, AuditConfig())
    destination = tmp_path / "manifest.csv"
    write_manifest(index, destination)
    assert destination.read_text().splitlines()[0] == "path,label,split"  # no source column when none is set
    back = load_dataset(root, AuditConfig(manifest=destination))
    assert triples(back) == triples(index)
    assert {r.abspath for r in back.records} == {r.abspath for r in index.records}


# Keras validation_split ---------------------------------------------------------------------

def class_tree(root: Path, per_class: int = 5) -> Path:
    for c, label in enumerate(("cat", "dog")):
        for i in range(per_class):
            make_image(root / label / f"{label}{i}.png", 10 * c + i)
    return root


def test_validation_split_reproduces_keras_split(tmp_path):
    from auditor.index import keras_splits
    root = class_tree(tmp_path / "data")
    index = load_dataset(root, AuditConfig(validation_split=0.2, seed=1))
    assert index.layout == "classes+keras-dataset"
    assert index.splits == ["train", "val"]
    assert len(index.records) == 10
    assert sum(r.split == "val" for r in index.records) == 2  # int(0.2 * 10)
    expected, _ = keras_splits.keras_dataset_split(root, 0.2, 1)
    assert triples(index) == {(a.path, "train" if a.split == "train" else "val", a.label) for a in expected}
    assert all(r.abspath == root / r.path and r.abspath.is_file() for r in index.records)
    assert any("validation_split=0.2, seed=1" in n for n in index.notes)


def test_validation_split_generator_style_needs_no_seed(tmp_path):
    root = class_tree(tmp_path / "data")
    index = load_dataset(root, AuditConfig(validation_split=0.2, split_style="keras-generator"))
    assert index.splits == ["train", "val"]
    # per class, the first int(0.2 * 5) = 1 file in walk order is validation
    assert {r.path for r in index.records if r.split == "val"} == {"cat/cat0.png", "dog/dog0.png"}


def test_validation_split_keras_dataset_without_seed_is_a_dataset_error(tmp_path):
    root = class_tree(tmp_path / "data")
    with pytest.raises(DatasetError, match="needs --seed"):
        load_dataset(root, AuditConfig(validation_split=0.2))


def test_validation_split_on_split_folders_is_a_dataset_error(tmp_path):
    root = split_tree(tmp_path / "data")
    with pytest.raises(DatasetError, match="already has split folders"):
        load_dataset(root, AuditConfig(validation_split=0.2, seed=1))


# Hostile layouts: links that leave the root or loop, empty class folders, odd names, split case ----------

def test_links_leaving_the_root_are_reported_not_followed(tmp_path):
    outside = tmp_path / "elsewhere"
    for i in range(3):
        make_image(outside / f"o{i}.png", 20 + i)
    root = split_tree(tmp_path / "data")
    os.symlink(outside, root / "train" / "cat" / "folder_out")  # a folder link out of the root
    os.symlink(outside / "o0.png", root / "train" / "dog" / "file_out.png")  # a file link out
    os.symlink("/dev/urandom", root / "val" / "cat" / "random.png")
    os.symlink("../../val/cat/c3.png", root / "train" / "dog" / "inside.png")  # stays inside: followed
    index = load_dataset(root, AuditConfig())
    assert issues_by_path(index) == {"train/cat/folder_out": "link_outside_root",
                                     "train/dog/file_out.png": "link_outside_root",
                                     "val/cat/random.png": "link_outside_root"}
    assert all(os.path.realpath(r.abspath).startswith(os.path.realpath(root) + os.sep) for r in index.records)
    assert ("train/dog/inside.png", "train", "dog") in triples(index)
    allowed = load_dataset(root, AuditConfig(allow_outside_root=True))
    assert {"train/cat/folder_out/o1.png", "train/dog/file_out.png", "val/cat/random.png"} <= {r.path for r in allowed.records}


def test_a_link_to_the_dataset_root_or_a_split_is_a_loop_and_leaks_nothing(tmp_path):
    root = split_tree(tmp_path / "data")
    os.symlink(root, root / "train" / "cat" / "to_root")
    os.symlink("../..", root / "val" / "dog" / "up")  # relative, to the root too
    os.symlink(root / "train", root / "train" / "dog" / "to_split")
    index = load_dataset(root, AuditConfig())
    assert issues_by_path(index) == {"train/cat/to_root": "symlink_loop", "val/dog/up": "symlink_loop",
                                     "train/dog/to_split": "symlink_loop"}
    assert "dataset root" in next(i.message for i in index.issues if i.path == "train/cat/to_root")
    assert len(index.records) == 5  # no val image was walked into train


def test_a_top_level_split_link_out_of_the_root_is_refused(tmp_path):
    root = split_tree(tmp_path / "data")
    make_image(tmp_path / "other" / "cat" / "x.png", 9)
    os.symlink(tmp_path / "other", root / "test")
    index = load_dataset(root, AuditConfig())
    assert issues_by_path(index) == {"test": "link_outside_root"}
    assert index.splits == ["train", "val"]


def test_empty_class_folders_are_reported_in_every_layout(tmp_path):
    root = split_tree(tmp_path / "data")
    (root / "train" / "bird").mkdir()
    (root / "val" / "fish").mkdir()
    (root / "val" / "fish" / "Thumbs.db").write_bytes(b"junk")  # ignored files do not make it non-empty
    assert issues_by_path(load_dataset(root, AuditConfig())) == {"train/bird": "empty_class_folder",
                                                                 "val/fish": "empty_class_folder"}
    pool = tmp_path / "pool"
    for i in range(5):
        make_image(pool / "cat" / f"c{i}.png", i)
        make_image(pool / "dog" / f"d{i}.png", 10 + i)
    (pool / "bird").mkdir()
    assert issues_by_path(load_dataset(pool, AuditConfig())) == {"bird": "empty_class_folder"}
    keras_like = load_dataset(pool, AuditConfig(validation_split=0.2, seed=1))
    assert issues_by_path(keras_like) == {"bird": "empty_class_folder"}
    assert "Keras" in keras_like.issues[0].message


def test_split_names_are_case_insensitive(tmp_path):
    root = tmp_path / "data"
    make_image(root / "Train" / "cat" / "a.png", 1)
    make_image(root / "Train" / "dog" / "b.png", 2)
    make_image(root / "VAL" / "cat" / "c.png", 3)
    index = load_dataset(root, AuditConfig())
    assert index.layout == "splits"
    assert index.splits == ["train", "val"] and index.reference_split == "train" and index.held_out_splits == ["val"]
    assert ("Train/cat/a.png", "train", "cat") in triples(index)  # the path keeps the folder's own spelling
    manifest = write_csv(tmp_path / "m.csv", "path,label,split\nTrain/cat/a.png,cat,TRAIN\nVAL/cat/c.png,cat,Val\n")
    assert {r.split for r in read_manifest(root, manifest).records} == {"train", "val"}


def test_names_with_control_characters_or_undecodable_bytes_are_findings(tmp_path):
    root = split_tree(tmp_path / "data")
    odd_folder = root / "val" / "cat" / "\x1b]0;owned\x07"
    make_image(odd_folder / "a.png", 7)
    make_image(odd_folder / "b.png", 8)  # one finding for the folder, not one per file inside
    make_image(root / "train" / "cat" / "clear\x1b[2J.png", 9)
    make_image(Path(os.fsdecode(os.fsencode(root / "train" / "dog") + b"/bad\xffname.png")), 10)
    index = load_dataset(root, AuditConfig())
    assert issues_by_path(index) == {
        "val/cat/\x1b]0;owned\x07": "control_characters_in_name",
        "train/cat/clear\x1b[2J.png": "control_characters_in_name",
        os.fsdecode(b"train/dog/bad\xffname.png"): "non_utf8_name",
    }
    assert len(index.records) == 9  # still audited


def test_manifest_rows_leaving_the_root_are_refused_unless_allowed(tmp_path):
    root = tmp_path / "data"
    make_image(root / "in.png", 1)
    make_image(tmp_path / "secret.png", 2)
    os.symlink(tmp_path, root / "up")
    manifest = write_csv(root / "m.csv", "path,label,split\n"
                                         "in.png,cat,train\n"
                                         f"{tmp_path / 'secret.png'},cat,train\n"
                                         "../secret.png,cat,val\n"
                                         "up/secret.png,cat,val\n"
                                         f"{root / 'in.png'},cat,val\n")  # absolute but inside: same file as line 2
    index = read_manifest(root, manifest)
    assert [(i.path, i.kind) for i in index.issues] == [("m.csv:3", "path_outside_root"), ("m.csv:4", "path_outside_root"),
                                                        ("m.csv:5", "path_outside_root"), ("m.csv:6", "duplicate_manifest_row")]
    assert [r.path for r in index.records] == ["in.png"]
    reasons = [i.message for i in index.issues[:3]]
    assert "absolute" in reasons[0] and "'..'" in reasons[1] and "link" in reasons[2]
    assert all("--allow-outside-root" in m for m in reasons)
    allowed = read_manifest(root, manifest, allow_outside_root=True)
    assert [r.path for r in allowed.records] == ["in.png", str(tmp_path / "secret.png"), "up/secret.png"]
    assert [(i.path, i.kind) for i in allowed.issues] == [("m.csv:4", "duplicate_manifest_row"),  # = line 3
                                                          ("m.csv:6", "duplicate_manifest_row")]


def test_every_repeat_of_a_manifest_row_is_named(tmp_path):
    lines = ["path,label,split"] + [f"img{i}.png,cat,train" for i in range(24)] + ["img3.png,cat,train"] * 3
    manifest = write_csv(tmp_path / "m.csv", "\n".join(lines) + "\n")
    index = read_manifest(tmp_path, manifest)
    assert [(i.path, i.kind) for i in index.issues] == [(f"m.csv:{n}", "duplicate_manifest_row") for n in (26, 27, 28)]
    assert all("first at line 5" in i.message for i in index.issues)
    assert len(index.records) == 24


def test_manifest_line_numbers_count_physical_lines(tmp_path):
    manifest = write_csv(tmp_path / "m.csv", 'path,label,split\n"a\nb.png",cat,train\nshort\n')
    index = read_manifest(tmp_path, manifest)
    assert [(i.path, i.kind) for i in index.issues] == [("m.csv:4", "manifest_row")]


def test_write_manifest_leaves_out_names_a_csv_cannot_hold(tmp_path):
    bad = os.fsdecode(b"train/cat/bad\xff.png")
    records = [ImageRecord("train/cat/ok.png", tmp_path / "a", split="train", label="cat"),
               ImageRecord(bad, tmp_path / "b", split="train", label="cat")]
    destination = tmp_path / "m.csv"
    assert write_manifest(DatasetIndex(root=tmp_path, layout="splits", records=records), destination) == [bad]
    assert destination.read_text(encoding="utf-8").splitlines() == ["path,label,split", "train/cat/ok.png,cat,train"]


def test_a_manifest_naming_only_files_outside_its_root_says_how_to_allow_them(tmp_path):
    elsewhere = tmp_path / "photos"
    elsewhere.mkdir()
    Image.new("RGB", (40, 40), (200, 10, 10)).save(elsewhere / "a.png")
    kept_apart = tmp_path / "ci"
    kept_apart.mkdir()
    manifest = kept_apart / "existing.csv"
    manifest.write_text(f"path,label,split\n{elsewhere / 'a.png'},red,train\n")
    with pytest.raises(DatasetError) as caught:
        load_dataset(kept_apart, AuditConfig(manifest=manifest))
    assert "lead outside it" in str(caught.value) and "--allow-outside-root" in caught.value.tip
    assert load_dataset(kept_apart, AuditConfig(manifest=manifest, allow_outside_root=True)).records


def test_a_record_keeps_its_location_as_text_and_gives_a_path_or_the_url():
    """A Path object and its parts cost ≈ 300 bytes a record (0.3 GB at 10⁶ images): the record holds text."""
    import dataclasses
    import pickle

    local = ImageRecord("train/cat/a.jpg", Path("/data/train/cat/a.jpg"), "train", "cat")
    assert local.location == "/data/train/cat/a.jpg" and not any(
        isinstance(getattr(local, name), Path) for name in ImageRecord.__slots__)
    assert local.abspath == Path("/data/train/cat/a.jpg") and isinstance(local.abspath, Path)
    remote = ImageRecord("a.jpg", "s3://bucket/a.jpg", "train", "cat")
    assert remote.abspath == "s3://bucket/a.jpg" and isinstance(remote.abspath, str)  # a URL is never a Path
    assert local == ImageRecord("train/cat/a.jpg", "/data/train/cat/a.jpg", "train", "cat")
    assert pickle.loads(pickle.dumps(local)) == local and hash(local) == hash(pickle.loads(pickle.dumps(local)))
    moved = dataclasses.replace(local, path="incoming/train/cat/a.jpg")
    assert moved.abspath == local.abspath and moved.path == "incoming/train/cat/a.jpg"
