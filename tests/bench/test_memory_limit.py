"""bench/memory_limit.py: a bench run inside a memory cgroup is really limited, and its figures are read back."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import memory_limit  # noqa: E402


def test_sizes_are_read_in_binary_units():
    assert memory_limit.parse_size("4G") == 4 * 2**30
    assert memory_limit.parse_size("3.5GiB") == int(3.5 * 2**30)
    assert memory_limit.parse_size("512m") == 512 * 2**20
    assert memory_limit.parse_size("1000") == 1000


def test_eviction_counts_the_files_and_leaves_them_as_they_were(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.npy").write_bytes(b"1" * 5000)
    (tmp_path / "y.sqlite3").write_bytes(b"2" * 300)
    (tmp_path / "link").symlink_to(tmp_path / "y.sqlite3")  # counted once, through its file
    assert memory_limit.evict(tmp_path) == 5300
    assert (tmp_path / "a" / "x.npy").read_bytes() == b"1" * 5000
    assert (tmp_path / "y.sqlite3").read_bytes() == b"2" * 300


def test_a_version_1_group_gets_the_limit_the_process_and_reports_its_counters(tmp_path, monkeypatch):
    """Against a stand-in of /sys/fs/cgroup/memory: which files are written, and what `report` reads back."""
    (tmp_path / "memory").mkdir()
    monkeypatch.setattr(memory_limit, "ROOT", tmp_path)
    limit = memory_limit.MemoryLimit(2**30, name="g")
    group = tmp_path / "memory" / "g"
    group.mkdir()
    (group / "memory.memsw.limit_in_bytes").write_text("0")
    limit.enter()
    assert (group / "memory.limit_in_bytes").read_text() == str(2**30)
    assert (group / "memory.memsw.limit_in_bytes").read_text() == str(2**30)  # no swap beyond the limit
    assert (group / "cgroup.procs").read_text() == str(os.getpid())
    (group / "memory.max_usage_in_bytes").write_text(str(2**29))
    (group / "memory.failcnt").write_text("0")  # with the swap limit set, hits are counted there
    (group / "memory.memsw.failcnt").write_text("7")
    (group / "memory.stat").write_text("cache 10\ntotal_pgmajfault 42\n")
    assert limit.report() == {"cgroup": str(group), "limit_gb": 1.0, "peak_usage_gb": 0.5, "failcnt": 7,
                              "major_page_faults": 42, "oom_kills": None}


def test_a_version_2_group_gets_memory_max_and_reports_its_events(tmp_path, monkeypatch):
    (tmp_path / "cgroup.controllers").write_text("memory")
    monkeypatch.setattr(memory_limit, "ROOT", tmp_path)
    limit = memory_limit.MemoryLimit(2**31, name="g")
    group = tmp_path / "g"
    group.mkdir()
    (group / "memory.swap.max").write_text("max")
    limit.enter()
    assert (group / "memory.max").read_text() == str(2**31) and (group / "memory.swap.max").read_text() == "0"
    (group / "memory.peak").write_text(str(2**30))
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
    (group / "memory.stat").write_text("anon 5\npgmajfault 9\n")
    assert limit.report() == {"cgroup": str(group), "limit_gb": 2.0, "peak_usage_gb": 1.0, "failcnt": 12,
                              "major_page_faults": 9, "oom_kills": 1}


def test_a_size_that_is_not_one_stops_the_bench_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "bench" / "bench_scale.py"), "vectors", "--work", str(tmp_path),
                           "--memory-limit", "four gigabytes"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "not a size" in done.stderr and "Traceback" not in done.stderr


def test_without_a_memory_cgroup_it_says_so_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(memory_limit, "ROOT", tmp_path)
    with pytest.raises(SystemExit, match="no memory cgroup here"):
        memory_limit.MemoryLimit(2**30)


def _can_make_groups() -> bool:
    root = memory_limit.ROOT
    return os.geteuid() == 0 and ((root / "memory").is_dir() and os.access(root / "memory", os.W_OK))


@pytest.mark.skipif(not _can_make_groups(), reason="needs root and a writable v1 memory cgroup")
def test_inside_the_limit_a_process_that_needs_more_is_stopped_and_one_that_fits_runs():
    """The real kernel limit: 200 MB of anonymous memory in a 128 MiB group is killed, 20 MB runs."""
    def run(megabytes: int, name: str) -> int:
        code = textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {str(REPO / 'bench')!r})
            import memory_limit
            memory_limit.MemoryLimit(128 * 2**20, name={name!r}).enter()
            block = bytearray({megabytes} * 2**20)
            for i in range(0, len(block), 4096):
                block[i] = 1  # touched: resident
            """)
        try:
            return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60).returncode
        finally:
            group = memory_limit.ROOT / "memory" / name
            if group.is_dir():
                group.rmdir()

    assert run(20, f"auditor-test-fits-{os.getpid()}") == 0
    assert run(200, f"auditor-test-exceeds-{os.getpid()}") == -9  # SIGKILL from the cgroup's OOM killer
