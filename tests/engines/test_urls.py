"""Files named by fsspec URL are read like local files (file:// here; s3:// and gs:// the same way, with
their driver installed), never past the size limit, and a protocol without a driver fails before work."""

from __future__ import annotations

import pytest

from auditor.engines.urls import check_protocols, is_url, read_source
from auditor.errors import ConfigError

pytest.importorskip("fsspec", reason="the ray extra (with fsspec) is not installed")


def test_urls_are_told_from_paths():
    assert is_url("s3://bucket/a.jpg") and is_url("file:///data/a.jpg") and is_url("gs://b/c/d.png")
    assert not is_url("/data/a.jpg") and not is_url("relative/a.jpg") and not is_url("C:/data/a.jpg")


def test_a_file_url_reads_the_same_bytes_as_its_path(tmp_path):
    path = tmp_path / "a b%20c.bin"  # fsspec URLs are written as the names are: no percent-decoding
    path.write_bytes(b"\x89PNG and more")
    assert read_source(f"file://{path}", 1000) == read_source(path, 1000) == (b"\x89PNG and more", None)


def test_missing_and_too_large_urls_are_problems_not_exceptions(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 5000)
    data, problem = read_source(f"file://{big}", 1000)
    assert data is None and problem.kind == "too_large_file"
    data, problem = read_source(f"file://{tmp_path}/gone.jpg", 1000)
    assert data is None and problem.kind == "missing_file"


def test_a_protocol_without_a_driver_fails_before_any_work():
    check_protocols(["/local/a.jpg", "file:///tmp/b.jpg"])  # nothing to complain about
    with pytest.raises(ConfigError) as error:
        check_protocols(["nosuchprotocol://bucket/a.jpg"])
    assert "nosuchprotocol://" in error.value.message and "s3fs" in error.value.tip
