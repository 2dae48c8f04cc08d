"""Atomic writes: whole files with ordinary permissions, no temporary files left."""

from __future__ import annotations


def test_atomic_writes_get_the_usual_file_permissions(tmp_path):
    import os

    from auditor.atomic import atomic_write_text

    atomic_write_text(tmp_path / "report.json", "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left behind


def test_atomic_writes_never_touch_the_process_umask(tmp_path, monkeypatch):
    """Setting the umask to read it races with threads creating files (cache, thumbnails)."""
    import os

    import pytest

    from auditor.atomic import atomic_write_text

    monkeypatch.setattr(os, "umask", lambda *_: pytest.fail("os.umask was called"))
    atomic_write_text(tmp_path / "r.md", "x")
    assert (tmp_path / "r.md").read_text() == "x"


def test_unwritable_destinations_are_found_before_any_work(tmp_path):
    import pytest

    from auditor.atomic import atomic_write_text, require_writable_folder
    from auditor.errors import AuditorError, ConfigError

    a_file = tmp_path / "taken"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        require_writable_folder(a_file, "report folder", "--out")
    with pytest.raises(ConfigError, match="lies below .* which is a file"):
        require_writable_folder(a_file / "deeper" / "out", "report folder", "--out")
    require_writable_folder(tmp_path / "new" / "out", "report folder", "--out")  # creatable: fine
    assert not (tmp_path / "new").exists()  # checking creates nothing
    with pytest.raises(AuditorError, match="cannot write"):  # and a write that fails anyway is a clean error
        atomic_write_text(a_file / "report.json", "{}")
