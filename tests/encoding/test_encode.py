"""Unit tests for auditor/encode.py: read, hash, scan and embed once per content, with the cache."""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import auditor.engines.local as local_engine
from auditor.encoding.cache import Cache
from auditor.index.dataset import DatasetIndex, ImageRecord
from auditor.encoding.encode import bounded_map, encode_dataset, read_file
from auditor.encoding.imaging import ScanLimits, scan_bytes

LIMITS = ScanLimits()
MAX_BYTES = 10 * 2**20
INPUT_SIZE = 16


class FakeBackbone:
    """Backbone-like: embeds a uint8 batch as each image's mean colour, and counts what it is asked."""

    input_size = INPUT_SIZE

    def __init__(self, cache_key: str = "fake|v1"):
        self.name = "fake"
        self.cache_key = cache_key
        self.batches: list[int] = []
        self._lock = threading.Lock()

    def embed(self, batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.uint8 and batch.shape[1:] == (INPUT_SIZE, INPUT_SIZE, 3)
        with self._lock:
            self.batches.append(len(batch))
        return expected_vector(batch)

    @property
    def embedded(self) -> int:
        return sum(self.batches)


def expected_vector(arrays: np.ndarray) -> np.ndarray:
    return arrays.reshape(len(arrays), -1, 3).mean(axis=1).astype(np.float32)


def make_image(path: Path, seed: int, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path, fmt)
    return path


def record(root: Path, relpath: str) -> ImageRecord:
    return ImageRecord(relpath, root / relpath, split="train", label=relpath.split("/")[0])


@pytest.fixture
def dataset(tmp_path) -> DatasetIndex:
    root = tmp_path / "data"
    make_image(root / "cat" / "a.png", 1)
    (root / "cat" / "a_copy.png").write_bytes((root / "cat" / "a.png").read_bytes())
    make_image(root / "dog" / "b.png", 2)
    make_image(root / "dog" / "c.jpg", 3, fmt="JPEG")
    (root / "dog" / "empty.png").write_bytes(b"")
    (root / "dog" / "notes.png").write_text("not a picture at all")
    (root / "dog" / "folder.png").mkdir()
    paths = ["cat/a.png", "cat/a_copy.png", "dog/b.png", "dog/c.jpg", "dog/empty.png", "dog/notes.png",
             "dog/missing.png", "dog/folder.png"]
    return DatasetIndex(root=root, layout="classes", records=[record(root, p) for p in paths])


@pytest.fixture
def scan_calls(monkeypatch) -> list[str]:
    """Every sha256 that encode_dataset decodes."""
    calls: list[str] = []
    real = local_engine.scan_bytes

    def counting(data, limits, embed_size=None, sha256=None):
        scan, array = real(data, limits, embed_size, sha256)
        calls.append(scan.sha256)
        return scan, array

    monkeypatch.setattr(local_engine, "scan_bytes", counting)
    return calls


@pytest.fixture
def open_cache():
    """Cache(directory), closed at the end of the test."""
    opened: list[Cache] = []

    def opener(directory):
        opened.append(Cache(directory))
        return opened[-1]

    yield opener
    for cache in opened:
        cache.close()


def run(index, cache, backbone=None, batch_size=2):
    return encode_dataset(index, cache, backbone, LIMITS, MAX_BYTES, batch_size=batch_size, workers=2)


def position(index: DatasetIndex, relpath: str) -> int:
    return [r.path for r in index.records].index(relpath)


def test_every_record_gets_a_sha_or_a_read_problem(open_cache, dataset, scan_calls):
    encoded = run(dataset, open_cache(None))
    assert len(encoded.record_sha) == len(dataset.records)
    for i, sha in enumerate(encoded.record_sha):
        assert (sha is None) == (i in encoded.read_problems), dataset.records[i].path
    problems = {dataset.records[i].path: p.kind for i, p in encoded.read_problems.items()}
    assert problems == {"dog/missing.png": "missing_file", "dog/folder.png": "unreadable"}
    # A zero-byte file can be read: it gets a sha and a scan that says it is empty.
    empty_sha = encoded.record_sha[position(dataset, "dog/empty.png")]
    assert empty_sha == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert [p.kind for p in encoded.scans[empty_sha].problems] == ["zero_byte"]
    notes_sha = encoded.record_sha[position(dataset, "dog/notes.png")]
    assert [p.kind for p in encoded.scans[notes_sha].problems] == ["not_an_image"]
    # Every readable record has a scan; without a backbone nothing is embedded.
    assert set(encoded.scans) == {s for s in encoded.record_sha if s is not None}
    assert encoded.embeddings == {} and encoded.stats["embeddings_computed"] == 0
    assert sorted(scan_calls) == sorted(encoded.scans)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_permission_denied_is_a_read_problem(open_cache, dataset):
    locked = dataset.records[position(dataset, "dog/b.png")].abspath
    locked.chmod(0)
    try:
        encoded = run(dataset, open_cache(None))
        assert encoded.read_problems[position(dataset, "dog/b.png")].kind == "unreadable"
    finally:
        locked.chmod(0o644)


def test_identical_files_are_decoded_and_embedded_once(open_cache, dataset, scan_calls):
    backbone = FakeBackbone()
    encoded = run(dataset, open_cache(None), backbone)
    a = position(dataset, "cat/a.png")
    assert encoded.record_sha[a] == encoded.record_sha[position(dataset, "cat/a_copy.png")]
    assert encoded.stats["unique_images"] == 5  # a (twice), b, c, empty, notes
    assert len(scan_calls) == len(set(scan_calls)) == 5
    usable = {sha for sha, scan in encoded.scans.items() if scan.usable}
    assert len(usable) == 3
    assert backbone.embedded == 3 and encoded.stats["embeddings_computed"] == 3
    assert max(backbone.batches) <= 2  # batch_size is respected
    assert set(encoded.embeddings) == usable
    # Each vector belongs to its own image (no mix-up between batch rows and contents).
    for relpath in ("cat/a.png", "dog/b.png", "dog/c.jpg"):
        record_ = dataset.records[position(dataset, relpath)]
        _, array = scan_bytes(record_.abspath.read_bytes(), LIMITS, INPUT_SIZE)
        np.testing.assert_allclose(  # stored as float16 unit vectors × a float32 norm
            encoded.embeddings[encoded.record_sha[position(dataset, relpath)]], expected_vector(array[None])[0],
            rtol=1e-3)


def test_second_encode_with_the_same_cache_computes_nothing(open_cache, dataset, scan_calls, tmp_path):
    first = run(dataset, open_cache(tmp_path / "cache"), FakeBackbone())
    scan_calls.clear()
    again = FakeBackbone()
    second = run(dataset, open_cache(tmp_path / "cache"), again)  # a fresh connection, as in a new run
    assert again.batches == [] and scan_calls == []
    assert second.stats["embeddings_computed"] == 0
    assert second.stats["scans_cached"] == 5 and second.stats["embeddings_cached"] == 3
    assert second.record_sha == first.record_sha
    assert second.scans == first.scans
    assert set(second.embeddings) == set(first.embeddings)
    for sha, vector in first.embeddings.items():
        np.testing.assert_array_equal(second.embeddings[sha], vector)


def test_a_grown_dataset_embeds_only_the_new_file(open_cache, dataset, scan_calls, tmp_path):
    cache = open_cache(tmp_path / "cache")
    run(dataset, cache, FakeBackbone())
    new = make_image(dataset.root / "dog" / "new.png", 4)
    dataset.records.append(record(dataset.root, "dog/new.png"))
    scan_calls.clear()
    backbone = FakeBackbone()
    encoded = run(dataset, cache, backbone)
    new_sha = encoded.record_sha[-1]
    assert backbone.batches == [1]
    assert encoded.stats["embeddings_computed"] == 1
    assert scan_calls == [new_sha]
    assert len(encoded.embeddings) == 4
    _, array = scan_bytes(new.read_bytes(), LIMITS, INPUT_SIZE)
    np.testing.assert_allclose(encoded.embeddings[new_sha], expected_vector(array[None])[0], rtol=1e-3)


def test_another_backbone_reembeds_but_reuses_scans(open_cache, dataset, scan_calls):
    cache = open_cache(None)
    run(dataset, cache, FakeBackbone("fake|v1"))
    scan_calls.clear()
    other = FakeBackbone("fake|v2")
    encoded = run(dataset, cache, other)
    assert other.embedded == 3 and encoded.stats["embeddings_computed"] == 3
    assert encoded.stats["scans_cached"] == 5
    assert len(scan_calls) == 3  # only the usable images are decoded again, for their arrays


def test_read_file_limits_size(tmp_path):
    path = make_image(tmp_path / "x.png", 5)
    data, problem = read_file(path, MAX_BYTES)
    assert problem is None and data == path.read_bytes()
    data, problem = read_file(path, path.stat().st_size - 1)
    assert data is None and problem.kind == "too_large_file"


def test_bounded_map_preserves_order():
    def slow_square(x: int) -> int:
        time.sleep(random.Random(x).uniform(0, 0.004))
        return x * x

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(bounded_map(pool, slow_square, range(60), lookahead=5)) == [x * x for x in range(60)]
        assert list(bounded_map(pool, slow_square, [], lookahead=5)) == []


def test_bounded_map_keeps_at_most_lookahead_items_in_flight():
    pulled = 0

    def items():
        nonlocal pulled
        for x in range(100):
            pulled += 1
            yield x

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = bounded_map(pool, lambda x: x, items(), lookahead=3)
        assert next(results) == 0
        assert pulled == 3
        assert next(results) == 1
        assert pulled == 4
        assert list(results) == list(range(2, 100))


# Hostile files: FIFOs, devices, sockets, content that changes between reads, Ctrl-C ----------------------

def _without_hanging(fn, timeout_s: float = 10.0):
    """Run fn in a daemon thread; fail (instead of hanging the suite) when it does not return in time."""
    result: dict = {}
    worker = threading.Thread(target=lambda: result.setdefault("value", fn()), daemon=True)
    worker.start()
    worker.join(timeout_s)
    return worker.is_alive(), result.get("value")


def _unpack(outcome):
    hung, value = outcome
    return hung, (value if value is not None else (None, None))


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    try:
        hung, (data, problem) = _unpack(_without_hanging(lambda: read_file(fifo, MAX_BYTES)))
        assert not hung, "reading a FIFO blocked"
        assert data is None and problem.kind == "not_regular_file" and "FIFO" in problem.message
    finally:  # a regression leaves a reader blocked in open(): a writer releases it
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def test_devices_and_sockets_are_never_read(tmp_path):
    import socket

    for device in ("/dev/urandom", "/dev/zero", "/dev/null"):
        hung, (data, problem) = _unpack(_without_hanging(lambda: read_file(Path(device), MAX_BYTES)))
        assert not hung and data is None and problem.kind == "not_regular_file", device
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(tmp_path / "sock.png"))
        data, problem = read_file(tmp_path / "sock.png", MAX_BYTES)
        assert data is None and problem.kind == "not_regular_file"
    finally:
        server.close()


def test_a_fifo_in_a_class_folder_is_a_finding_and_the_encode_ends(tmp_path):
    """In a child process with a deadline: a regression (a worker thread blocked in open()) would
    otherwise keep even the test process from exiting."""
    import subprocess
    import sys

    root = tmp_path / "data"
    make_image(root / "cat" / "a.png", 1)
    os.mkfifo(root / "cat" / "fifo.png")
    script = (
        "import sys; from pathlib import Path\n"
        "from auditor.encoding.cache import Cache\n"
        "from auditor.index.dataset import DatasetIndex, ImageRecord\n"
        "from auditor.encoding.encode import encode_dataset\n"
        "from auditor.encoding.imaging import ScanLimits\n"
        "root = Path(sys.argv[1])\n"
        "records = [ImageRecord(p, root / p, split='train', label='cat') for p in ('cat/a.png', 'cat/fifo.png')]\n"
        "encoded = encode_dataset(DatasetIndex(root, 'classes', records), Cache(None), None, ScanLimits(), 2**20)\n"
        "print(encoded.read_problems[1].kind, encoded.record_sha[1])\n"
    )
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    try:
        done = subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True, text=True, timeout=60,
                              env=env, cwd=repo)
    except subprocess.TimeoutExpired:
        pytest.fail("encoding a dataset with a FIFO hung")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["not_regular_file", "None"]


def test_content_that_changes_between_reads_is_a_finding(open_cache, dataset, monkeypatch):
    """The second read (for decoding) returns other bytes than the first (for hashing): as a file being
    written does, or a device reached through --allow-outside-root."""
    import auditor.engines.local as engine_module

    real = engine_module.read_file
    reads: dict[Path, int] = {}

    def changing(path, max_bytes):
        data, problem = real(path, max_bytes)
        reads[path] = reads.get(path, 0) + 1
        if Path(path).name == "b.png" and data is not None and reads[path] > 1:
            return data + b"more", None
        return data, problem

    import auditor.encoding.encode as encode_module

    monkeypatch.setattr(encode_module, "read_file", changing)  # the hashing read
    monkeypatch.setattr(engine_module, "read_file", changing)  # the decoding read
    encoded = run(dataset, open_cache(None))
    changed = position(dataset, "dog/b.png")
    assert encoded.read_problems[changed].kind == "unstable_content"
    assert encoded.record_sha[changed] is None  # counted as unusable, with the reason
    for i, sha in enumerate(encoded.record_sha):
        assert (sha is None) == (i in encoded.read_problems)


def test_an_interrupt_cancels_the_queued_reads():
    started: list[int] = []
    release = threading.Event()

    def slow(x: int) -> int:
        started.append(x)
        release.wait(5)
        return x

    begun = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            with local_engine.interruptible_threads(2) as pool:
                for x in range(50):
                    pool.submit(slow, x)
                raise KeyboardInterrupt  # as Ctrl-C does in the main thread while the workers are busy
        assert time.perf_counter() - begun < 2, "the interrupt waited for queued work"
    finally:
        release.set()
    time.sleep(0.3)
    assert len(started) <= 2, "queued reads ran after the interrupt"


def test_a_backbone_the_lite_converter_cannot_take_leaves_a_note_and_keras_embeds(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from auditor.backbones import lite
    from auditor.encoding import encode
    from auditor.progress import SilentProgress

    monkeypatch.setattr(lite, "applies", lambda has_gpu: not has_gpu)
    monkeypatch.setattr(lite, "runtime_available", lambda: True)
    monkeypatch.setattr(lite, "write_copy", lambda model, path: "ConverterError: an op it does not know")
    cpu = SimpleNamespace(devices=lambda: SimpleNamespace(gpus=0))
    built = SimpleNamespace(precision="float32", weights_path=tmp_path / "w.pth", lite=None,
                            cache_key="efficientnet-lite0|k", model=object())
    notes: list[str] = []
    encode._use_lite_copy(built, tmp_path, cpu, 2, SilentProgress(), notes)
    assert notes == ["the backbone could not be converted for LiteRT (ConverterError: an op it does not know); "
                     "Keras embedded the images"] and built.lite is None
    bfloat16 = SimpleNamespace(**{**vars(built), "precision": "bfloat16"})
    encode._use_lite_copy(bfloat16, tmp_path, cpu, 2, SilentProgress(), notes)
    assert len(notes) == 1 and bfloat16.lite is None  # bfloat16 has no copy: nothing tried, nothing said
    gpu = SimpleNamespace(devices=lambda: SimpleNamespace(gpus=1))
    encode._use_lite_copy(built, tmp_path, gpu, 2, SilentProgress(), notes)
    assert len(notes) == 1  # a GPU embeds: no conversion tried
