"""Calibration copies depend on the images alone: the command line and the Python API list the same images in
different orders, and a copy read back from the cache must be the copy this run would have made."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from auditor.encoding.cache import Cache
from auditor.encoding.imaging import ScanLimits, scan_bytes
from auditor.similarity.calibration import calibrate


def _photos(folder, count: int) -> dict:
    rng = np.random.default_rng(3)
    paths, scans = {}, {}
    for n in range(count):
        pixels = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
        path = folder / f"img{n}.png"
        Image.fromarray(pixels).save(path)
        scan, _ = scan_bytes(path.read_bytes(), ScanLimits())
        paths[scan.sha256], scans[scan.sha256] = path, scan
    return {"paths": paths, "scans": scans}


def _thumbnails(photos):
    """The thumbnails table of these scans (made from copies: the fixture's scans keep their text)."""
    import copy

    from auditor.encoding.thumbnails import Thumbnails

    return Thumbnails.taken_from(copy.deepcopy(photos["scans"]))


def _run(shas, photos, cache_dir, seed=0, input_size=224, sample_images=4):
    calibration = calibrate(shas=shas, paths=photos["paths"], scans=photos["scans"], thumbnails=_thumbnails(photos), embeddings=None,
                            backbone=None, cache=Cache(cache_dir), sample_images=sample_images,
                            limits=ScanLimits(), input_size=input_size, seed=seed)
    rows = sorted(zip((shas[s] for s in calibration.source), calibration.kind, map(bytes, calibration.thumbs)))
    return rows


def test_the_sample_and_its_copies_do_not_depend_on_the_listing_order(tmp_path):
    (tmp_path / "photos").mkdir()
    photos = _photos(tmp_path / "photos", 9)
    shas = list(photos["paths"])
    forward = _run(shas, photos, tmp_path / "cache-a")
    backward = _run(shas[::-1], photos, tmp_path / "cache-b")
    assert len({row[0] for row in forward}) == 4
    assert forward == backward


def test_copies_read_back_from_the_cache_equal_the_copies_made(tmp_path):
    (tmp_path / "photos").mkdir()
    photos = _photos(tmp_path / "photos", 9)
    shas = list(photos["paths"])
    made = _run(shas[::-1], photos, tmp_path / "cache")
    assert _run(shas, photos, tmp_path / "cache") == made


def test_small_datasets_calibrate_on_more_images_unless_told():
    from auditor.similarity.calibration import default_sample_images

    assert default_sample_images(412) == 300 and default_sample_images(2_000) == 300
    assert default_sample_images(2_001) == 100 and default_sample_images(1_000_000) == 100


def test_a_cache_another_seed_filled_gives_the_copies_an_empty_cache_gives(tmp_path):
    """Every image sampled at both seeds, so each copy has the same kind and number at both: keyed without the
    seed, the second run read the first run's copies back (and, where an image's copies were cached only in part,
    paired new thumbnails with the embeddings of the copies made before)."""
    (tmp_path / "photos").mkdir()
    photos = _photos(tmp_path / "photos", 6)
    shas = list(photos["paths"])
    fresh_seed_1 = _run(shas, photos, tmp_path / "fresh", seed=1, sample_images=6)
    assert _run(shas, photos, tmp_path / "shared", seed=0, sample_images=6) != fresh_seed_1  # the seed matters
    assert _run(shas, photos, tmp_path / "shared", seed=1, sample_images=6) == fresh_seed_1
    # The copies' pixels do not depend on the embedding's input size (its embeddings are keyed by it): one key serves.
    assert _run(shas, photos, tmp_path / "fresh-32", seed=1, input_size=32, sample_images=6) == fresh_seed_1


def test_the_grey_copies_and_only_they_are_marked_grey(tmp_path):
    """The look-alike check exempts grey against colour (decision.Rule.pixel_min_scaled): the copies say which."""
    (tmp_path / "photos").mkdir()
    photos = _photos(tmp_path / "photos", 9)
    shas = list(photos["paths"])
    for cache in ("cache", "cache"):  # made, then read back from the cache
        calibration = calibrate(shas=shas, paths=photos["paths"], scans=photos["scans"], thumbnails=_thumbnails(photos), embeddings=None,
                                backbone=None, cache=Cache(tmp_path / cache), sample_images=9,
                                limits=ScanLimits(), input_size=224, seed=0)
        kinds = np.array(calibration.kind)
        assert "grey" in kinds and len(set(kinds)) > 1
        assert np.array_equal(calibration.grey, kinds == "grey")


class _Embedder:
    """A stand-in for the backbone that records its batches (the copies' order and batching are what is tested;
    tests/checks run the real backbones through calibration)."""

    cache_key, batch_shape = "stand-in", 4

    def __init__(self):
        self.batches = []

    def embed(self, arrays):
        self.batches.append(len(arrays))
        return arrays.reshape(len(arrays), -1)[:, :8].astype(np.float32)


def _calibrated(photos, shas, cache_dir, pool, backbone=None):
    embeddings = {sha: np.zeros(8, np.float32) for sha in shas} if backbone is not None else None
    return calibrate(shas=shas, paths=photos["paths"], scans=photos["scans"], thumbnails=_thumbnails(photos),
                     embeddings=embeddings, backbone=backbone, cache=Cache(cache_dir), sample_images=5,
                     limits=ScanLimits(), input_size=32, seed=0, pool=pool)


def _copies_made_on(pool, tmp_path):
    """The copies made here and on `pool`: (calibration, embedded batch sizes) of each."""
    from auditor.engines.local import WorkerPool

    (tmp_path / "photos").mkdir()
    photos = _photos(tmp_path / "photos", 7)
    shas = list(photos["paths"])
    results = []
    for name, where in [("here", WorkerPool()), ("there", pool)]:
        embedder = _Embedder()
        results.append((_calibrated(photos, shas, tmp_path / name, where, embedder), embedder.batches))
    return results


def _assert_same_copies(here, there):
    (calibration, batches), (other, other_batches) = here, there
    assert batches == [4] * 6 + [1]  # 25 copies embedded in whole batches while they are made
    assert other_batches == batches
    assert np.array_equal(other.source, calibration.source) and other.kind == calibration.kind
    assert np.array_equal(other.thumbs, calibration.thumbs) and np.array_equal(other.vectors, calibration.vectors)


def test_copies_made_on_threads_are_the_copies_made_here(tmp_path):
    from auditor.engines.local import WorkerPool

    _assert_same_copies(*_copies_made_on(WorkerPool(2), tmp_path))


@pytest.mark.slow  # a second of spawning processes
def test_copies_made_in_processes_are_the_copies_made_here(tmp_path):
    from auditor.engines.local import WorkerPool

    _assert_same_copies(*_copies_made_on(WorkerPool(2, processes=True), tmp_path))


def test_a_source_gone_since_its_scan_gets_no_copies(tmp_path):
    from auditor.engines.local import WorkerPool

    (tmp_path / "photos").mkdir()
    photos = _photos(tmp_path / "photos", 5)
    shas = list(photos["paths"])
    gone = shas[0]
    photos["paths"][gone].unlink()
    calibration = _calibrated(photos, shas, tmp_path / "cache", WorkerPool(2))
    assert calibration.sample_images == 5
    assert gone not in {shas[s] for s in calibration.source} and len(calibration.kind) == 20
