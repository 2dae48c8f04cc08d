"""Property-based tests on generated hostile input: the manifest parser, the layout walker and the image
loader never crash, never hang, never read outside the dataset root, and account for every input.

Bounded and deterministic: few examples, `derandomize=True` (the same examples every run, no flakiness)
and no example database; together these take a few seconds.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from auditor.config import AuditConfig
from auditor.index.dataset import load_dataset, read_manifest
from auditor.encoding.reading import read_file
from auditor.errors import DatasetError
from auditor.encoding.imaging import ScanLimits, scan_bytes

BOUNDED = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
KNOWN_KINDS = {"symlink_loop", "unreadable_dir", "broken_link", "unlabelled_file", "loose_file", "manifest_row",
               "ignored_by_keras", "link_outside_root", "path_outside_root", "duplicate_manifest_row",
               "empty_class_folder", "control_characters_in_name", "non_utf8_name"}

# Name pieces a hostile dataset uses: control characters, escapes, bidi overrides, separators, dots.
HOSTILE_PIECES = ["\x1b[2J", "\x1b]0;t\x07", "\r", "\n", "\t", "\u202e", "\x7f", "\x9b", "..", ".", " ", ",", '"',
                  "é", "a", "b", "cat", "x.jpg"]


def _inside(path: Path, root: Path) -> bool:
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    return real == real_root or real.startswith(real_root + os.sep)


def _png(seed: int, size=(12, 10)) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _snapshot(root: Path) -> dict:
    state = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root), followlinks=False):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            target = os.readlink(path) if os.path.islink(path) else None
            content = None
            if not target and os.path.isfile(path):
                with open(path, "rb") as handle:
                    content = handle.read()
            state[path] = (info.st_mode, info.st_size, info.st_mtime_ns, target, content)
    return state


# The manifest parser --------------------------------------------------------------------------------

cell = st.one_of(
    st.sampled_from(["in/a.png", "in/b.png", "in/./a.png", "in//b.png", "../out.png", "/etc/passwd", "link/out.png",
                     "missing.png", "", "  ", "train", "VAL", "Test", "cat"]),
    st.lists(st.sampled_from(HOSTILE_PIECES + ["/", "\x00"]), max_size=5).map("".join),
    st.text(max_size=8),
)
row = st.lists(cell, min_size=0, max_size=5)


@BOUNDED
@given(rows=st.lists(row, max_size=12), raw_tail=st.text(max_size=30))
def test_every_manifest_row_is_a_record_or_a_finding_and_nothing_leaves_the_root(rows, raw_tail):
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        root = base / "data"
        (root / "in").mkdir(parents=True)
        (root / "in" / "a.png").write_bytes(_png(1))
        (root / "in" / "b.png").write_bytes(_png(2))
        (base / "out.png").write_bytes(_png(3))
        os.symlink(base, root / "link")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
        manifest = root / "m.csv"
        manifest.write_text(buffer.getvalue(), encoding="utf-8")

        index = read_manifest(root, manifest)
        data_rows = list(csv.reader(io.StringIO(buffer.getvalue(), newline="")))[1:]
        counted = [r for r in data_rows if r and any(c.strip() for c in r)]
        row_issues = [i for i in index.issues if i.path.startswith("m.csv:")]
        assert len(index.records) + len(row_issues) == len(counted)  # each row once: a record or a finding
        assert len({i.path for i in row_issues}) == len(row_issues)  # one finding per line, each named
        assert {i.kind for i in index.issues} <= KNOWN_KINDS
        assert all(_inside(r.abspath, root) for r in index.records)
        assert len({os.path.normpath(r.abspath) for r in index.records}) == len(index.records)
        assert all(r.split == r.split.lower() for r in index.records)

        manifest.write_text(buffer.getvalue() + raw_tail, encoding="utf-8")  # and possibly broken CSV
        try:
            again = read_manifest(root, manifest)
        except DatasetError:
            return
        assert all(_inside(r.abspath, root) for r in again.records)


# The layout walker ------------------------------------------------------------------------------------

name = st.one_of(
    st.lists(st.sampled_from(HOSTILE_PIECES), min_size=1, max_size=3).map("".join).filter(
        lambda n: n not in (".", "..") and "/" not in n),
    st.binary(min_size=1, max_size=6).filter(lambda b: b"/" not in b and b"\x00" not in b and b not in (b".", b"..")),
)
entry = st.tuples(
    st.sampled_from(["file", "file", "image", "dir", "fifo", "link_root", "link_up", "link_outside_file",
                     "link_outside_dir", "link_inside", "broken_link"]),
    st.lists(name, min_size=1, max_size=3),
)


def _build(root: Path, outside: Path, entries) -> None:
    for position, (kind, parts) in enumerate(entries):
        path = os.fsencode(root) + b"/" + b"/".join(os.fsencode(p) if isinstance(p, str) else p for p in parts)
        parent = os.path.dirname(path)
        try:
            os.makedirs(parent, exist_ok=True)
            if os.path.lexists(path):
                continue
            if kind == "file":
                with open(path, "wb") as handle:
                    handle.write(b"not an image %d" % position)
            elif kind == "image":
                with open(path, "wb") as handle:
                    handle.write(_png(position))
            elif kind == "dir":
                os.makedirs(path)
            elif kind == "fifo":
                os.mkfifo(path)
            elif kind == "link_root":
                os.symlink(os.fsencode(root), path)
            elif kind == "link_up":
                os.symlink(b"..", path)
            elif kind == "link_outside_file":
                os.symlink(os.fsencode(outside / "secret.png"), path)
            elif kind == "link_outside_dir":
                os.symlink(os.fsencode(outside), path)
            elif kind == "link_inside":
                os.symlink(os.fsencode(root / "train"), path)
            else:
                os.symlink(b"/nonexistent/nowhere", path)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            continue  # the generated tree asked for a file where a folder is (or the reverse)


@BOUNDED
@given(entries=st.lists(entry, max_size=10), layout=st.sampled_from(["auto", "splits", "classes"]))
def test_the_walk_ends_stays_inside_the_root_and_changes_nothing(entries, layout):
    with tempfile.TemporaryDirectory() as folder:
        root, outside = Path(folder) / "data", Path(folder) / "outside"
        (root / "train" / "cat").mkdir(parents=True)
        (root / "train" / "cat" / "ok.png").write_bytes(_png(0))
        outside.mkdir()
        (outside / "secret.png").write_bytes(_png(99))
        _build(root, outside, entries)
        before = _snapshot(root)

        outcome: dict = {}

        def walk():  # in a daemon thread: a regression that blocks fails the test instead of hanging it
            try:
                outcome["index"] = load_dataset(root, AuditConfig(layout=layout))
            except DatasetError as exc:
                outcome["error"] = exc
                return
            # whatever is listed can be read, without blocking (FIFOs, devices through links)
            outcome["reads"] = [read_file(r.abspath, 1 << 20) for r in outcome["index"].records]

        worker = threading.Thread(target=walk, daemon=True)
        worker.start()
        worker.join(20)
        assert not worker.is_alive(), "the walk did not end"
        assert _snapshot(root) == before
        if "error" in outcome:
            assert "no images found" in outcome["error"].message
            return
        index = outcome["index"]
        assert all(_inside(r.abspath, root) for r in index.records)
        assert len({r.path for r in index.records}) == len(index.records)
        assert {i.kind for i in index.issues} <= KNOWN_KINDS
        assert all(r.split == r.split.lower() for r in index.records)
        assert all((data is None) != (problem is None) for data, problem in outcome["reads"])


# The image loader -------------------------------------------------------------------------------------

def _encoded(fmt: str, seed: int) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    image.convert("P" if fmt == "GIF" else "RGB").save(buffer, fmt)
    return buffer.getvalue()


damaged_image = st.builds(
    lambda fmt, seed, cut, flips: _damage(_encoded(fmt, seed), cut, flips),
    st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]),
    st.integers(0, 3),
    st.floats(0.0, 1.0),
    st.lists(st.tuples(st.floats(0.0, 0.999), st.integers(0, 255)), max_size=4),
)


def _damage(data: bytes, cut: float, flips) -> bytes:
    data = bytearray(data[: max(0, int(len(data) * cut)) or len(data)])
    for where, value in flips:
        if data:
            data[int(where * len(data))] = value
    return bytes(data)


@BOUNDED
@given(data=st.one_of(st.binary(max_size=300), damaged_image), embed=st.booleans())
def test_the_image_loader_never_raises_and_says_why_an_image_is_unusable(data, embed):
    scan, array = scan_bytes(data, ScanLimits(max_pixels=1_000_000), embed_size=16 if embed else None)
    assert scan.file_size == len(data)
    if scan.usable:
        assert scan.width and scan.height and scan.grey32 and scan.pixel_hash
        assert (array is not None and array.shape == (16, 16, 3)) if embed else array is None
    else:
        assert array is None and any(p.severity == "error" for p in scan.problems)


@pytest.mark.parametrize("kind", ["fifo", "dir", "link_to_fifo", "dev"])
def test_read_file_never_blocks_on_what_is_not_a_regular_file(tmp_path, kind):
    target = tmp_path / "x.png"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "dir":
        target.mkdir()
    elif kind == "link_to_fifo":
        os.mkfifo(tmp_path / "pipe")
        os.symlink(tmp_path / "pipe", target)
    else:
        os.symlink("/dev/zero", target)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.setdefault("r", read_file(target, 1 << 20)), daemon=True)
    worker.start()
    worker.join(10)
    try:
        assert not worker.is_alive(), f"read_file blocked on a {kind}"
        data, problem = result["r"]
        assert data is None and problem.kind in {"not_regular_file", "unreadable"}
    finally:
        for pipe in (target, tmp_path / "pipe"):
            if pipe.exists() and not pipe.is_dir() and kind != "dev":
                try:
                    os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    pass
