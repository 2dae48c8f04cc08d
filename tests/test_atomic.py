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
