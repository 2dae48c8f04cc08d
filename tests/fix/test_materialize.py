"""materialize(): real files, hard links checked by inode, copies where links are impossible, the dataset
unchanged byte for byte, refusals that protect the dataset and the user's files, hostile names contained."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from auditor.fix.materialize import MARKER, Entry, MaterializeError, materialize, safe_name


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root (links included) with its content hash: the dataset "byte for byte"."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "data"
    files = {"train/cat/1.jpg": b"cat one", "train/cat/2.jpg": b"cat two", "val/cat/1.jpg": b"other cat one",
             "train/dog/a.png": b"dog a", "val/dog/b.webp": b"dog b"}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    entries = [Entry(root / "train/cat/1.jpg", "train/cat/1.jpg", "train", "cat"),
               Entry(root / "val/cat/1.jpg", "val/cat/1.jpg", "train", "cat"),  # same name, moved into train
               Entry(root / "train/cat/2.jpg", "train/cat/2.jpg", "val", "cat"),
               Entry(root / "train/dog/a.png", "train/dog/a.png", "train", "dog"),
               Entry(root / "val/dog/b.webp", "val/dog/b.webp", "val", "dog")]
    return root, entries


def test_hard_links_in_the_keras_layout_and_the_dataset_unchanged(dataset, tmp_path):
    root, entries = dataset
    before = snapshot(root)
    dest = tmp_path / "out"
    result = materialize(entries, root, dest)
    assert snapshot(root) == before
    assert result.linked == 5 and result.copied == 0
    assert sorted(result.files) == ["train/cat/1.jpg", "train/cat/val__cat__1.jpg", "train/dog/a.png",
                                    "val/cat/2.jpg", "val/dog/b.webp"]
    assert (dest / "train/cat/1.jpg").stat().st_ino == (root / "train/cat/1.jpg").stat().st_ino
    assert (dest / "train/cat/val__cat__1.jpg").read_bytes() == b"other cat one"
    assert sorted(p.name for p in (dest / "train").iterdir()) == ["cat", "dog"]  # class folders, as Keras reads them
    assert (dest / MARKER).is_file()
    assert result.not_read_by_keras == 1 and any("skips" in n for n in result.notes)
    assert not list(tmp_path.glob(".out.partial-*"))


def test_copies_with_copy_flag_and_where_links_fail(dataset, tmp_path, monkeypatch):
    root, entries = dataset
    result = materialize(entries, root, tmp_path / "copied", copy=True)
    assert result.copied == 5 and result.linked == 0
    assert (tmp_path / "copied/train/cat/1.jpg").stat().st_ino != (root / "train/cat/1.jpg").stat().st_ino

    def cross_device(*_args, **_kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)  # the fallback path; a real cross-filesystem run is below
    result = materialize(entries, root, tmp_path / "fallback")
    assert result.copied == 5 and (tmp_path / "fallback/train/cat/1.jpg").read_bytes() == b"cat one"


def test_a_real_other_filesystem_gets_copies(dataset, tmp_path):
    root, entries = dataset
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == tmp_path.stat().st_dev or not os.access(other, os.W_OK):
        pytest.skip("no writable second filesystem at /dev/shm")
    dest = other / f"auditor-split-test-{os.getpid()}"
    try:
        result = materialize(entries, root, dest)
        assert result.copied == 5 and result.linked == 0
        assert (dest / "val/dog/b.webp").read_bytes() == b"dog b"
    finally:
        import shutil

        shutil.rmtree(dest, ignore_errors=True)


@pytest.mark.parametrize("where", ["inside", "same", "parent"])
def test_refuses_a_destination_that_could_touch_the_dataset(dataset, where):
    root, entries = dataset
    before = snapshot(root)
    dest = {"inside": root / "train" / "resplit", "same": root, "parent": root.parent}[where]
    with pytest.raises(MaterializeError):
        materialize(entries, root, dest)
    assert snapshot(root) == before
    assert not (root / "train" / "resplit").exists()


def test_refuses_a_destination_below_a_linked_folder_of_input_files(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "cats"
    elsewhere.mkdir(parents=True)
    (elsewhere / "1.jpg").write_bytes(b"x")
    root = tmp_path / "data"
    (root / "train").mkdir(parents=True)
    (root / "train" / "cat").symlink_to(elsewhere)
    entries = [Entry(root / "train/cat/1.jpg", "train/cat/1.jpg", "train", "cat")]
    with pytest.raises(MaterializeError, match="holds input files"):
        materialize(entries, root, elsewhere / "out")


def test_non_empty_destinations_and_overwrite(dataset, tmp_path):
    root, entries = dataset
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "mine.txt").write_text("user data")
    with pytest.raises(MaterializeError, match="not empty"):
        materialize(entries, root, dest)
    with pytest.raises(MaterializeError, match="not written by auditor split"):
        materialize(entries, root, dest, overwrite=True)
    assert (dest / "mine.txt").read_text() == "user data"
    fresh = tmp_path / "fresh"
    materialize(entries, root, fresh)
    with pytest.raises(MaterializeError, match="not empty"):
        materialize(entries, root, fresh)
    (fresh / "val" / "dog" / "extra.jpg").write_bytes(b"added by the user")
    with pytest.raises(MaterializeError, match="did not write"):
        materialize(entries, root, fresh, overwrite=True)
    (fresh / "val" / "dog" / "extra.jpg").unlink()
    result = materialize(entries[:2], root, fresh, overwrite=True)
    assert sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file()) == sorted(result.files + [MARKER])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert materialize(entries, root, empty).linked == 5


def test_hostile_labels_and_names_stay_inside_the_destination(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    labels = ["../escape", "..", ".", "", ".hidden", "a/b", "a\\b", "Cat", "cat", "nul\x00byte", "x" * 300]
    entries = []
    for k, label in enumerate(labels):
        source = root / f"{k}.jpg"
        source.write_bytes(f"image {k}".encode())
        entries.append(Entry(source, f"../../{k}.jpg" if k == 0 else f"{k}.jpg", "train", label))
    dest = tmp_path / "out"
    result = materialize(entries, root, dest)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "0.jpg").exists()
    written = [p for p in dest.rglob("*") if p.is_file() and p.name != MARKER]
    assert len(written) == len(labels)
    for p in written:
        assert p.resolve().is_relative_to(dest.resolve())
        assert p.parent.parent == dest / "train"  # exactly DEST/<split>/<class>/<file>
    folders = [p.name for p in (dest / "train").iterdir()]
    assert len(folders) == len(labels)
    assert len({f.casefold() for f in folders}) == len(folders)  # distinct on a case-insensitive filesystem too
    assert not any(f.startswith(".") for f in folders)  # hidden folders would be skipped by the auditor's walk
    assert result.class_folders["../escape"] == "_.._escape" and result.class_folders["a/b"] == "a_b"
    assert "Cat" not in result.class_folders or "cat" not in result.class_folders


def test_safe_name():
    assert safe_name("../x") == "_.._x" and safe_name("..") == "_.." and safe_name("") == "_"
    assert safe_name("ants") == "ants" and safe_name("bees ✓") == "bees ✓"
    assert len(safe_name("é" * 300).encode()) <= 200
