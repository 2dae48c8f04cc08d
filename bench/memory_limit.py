"""Run a bench inside a memory limit the kernel enforces: a memory cgroup (v2 `memory.max`, else v1
`memory.limit_in_bytes`) that this process moves itself into, page cache included.

Why a cgroup and not the bench's own peak figures: anonymous memory is only part of what an audit holds; the
embedding store, the thumbnails and the cache's keyed rows are memory-mapped files whose pages count against a
container's limit too. Within a limit the kernel drops those pages and reads them again, so an access pattern that
is harmless with memory to spare can re-read the same file for minutes. Only a run inside the limit shows that.

Pages already cached by earlier runs are charged to whoever read them first, so the files the run will read are
evicted from the page cache first (`evict`); otherwise the run would read them for free.

Needs root (it writes under /sys/fs/cgroup); where that is not possible `enter` says why in one line.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def parse_size(text: str) -> int:
    """'4G', '3.5G', '512M', '4294967296' → bytes."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def evict(folder: Path) -> int:
    """Drop every file under `folder` from the page cache (POSIX_FADV_DONTNEED); returns how many bytes they hold."""
    total = 0
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            descriptor = os.open(path, os.O_RDONLY)
            try:
                os.fsync(descriptor)  # dirty pages are not dropped: written first
                os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
                total += path.stat().st_size
            finally:
                os.close(descriptor)
    return total


class MemoryLimit:
    """This process (and the children it starts afterwards) in a cgroup of its own with a memory limit."""

    def __init__(self, limit: int, name: str | None = None):
        self.limit = limit
        self.name = name or f"auditor-bench-{os.getpid()}"
        if (ROOT / "cgroup.controllers").exists():
            self.version, self.group = 2, ROOT / self.name
        elif (ROOT / "memory").is_dir():
            self.version, self.group = 1, ROOT / "memory" / self.name
        else:
            raise SystemExit("--memory-limit: no memory cgroup here (neither /sys/fs/cgroup/cgroup.controllers nor "
                             "/sys/fs/cgroup/memory). Tip: run on Linux with cgroups, as root.")

    def enter(self) -> "MemoryLimit":
        try:
            self.group.mkdir(exist_ok=True)
            if self.version == 2:
                (self.group / "memory.max").write_text(str(self.limit))
                if (self.group / "memory.swap.max").exists():
                    (self.group / "memory.swap.max").write_text("0")
            else:
                (self.group / "memory.limit_in_bytes").write_text(str(self.limit))
                if (self.group / "memory.memsw.limit_in_bytes").exists():
                    (self.group / "memory.memsw.limit_in_bytes").write_text(str(self.limit))  # no swap either
            (self.group / "cgroup.procs").write_text(str(os.getpid()))
        except OSError as error:
            raise SystemExit(f"--memory-limit: cannot make or enter the cgroup {self.group} ({error.strerror}). "
                             "Tip: run as root on a machine whose memory controller is enabled.") from None
        return self

    def leave(self) -> None:
        """Back into the parent group, and the group removed (its charges go to the parent); best effort."""
        try:
            (self.group.parent / "cgroup.procs").write_text(str(os.getpid()))
            self.group.rmdir()
        except OSError:
            pass

    def report(self) -> dict:
        """The limit, the group's peak usage (page cache included), the kernel's count of limit hits (v1 failcnt,
        v2 memory.events "max"), major faults, and (v2) OOM kills."""
        def read(name: str) -> str | None:
            path = self.group / name
            return path.read_text().strip() if path.exists() else None

        def fields(name: str) -> dict[str, str]:  # "key value" lines
            return dict(line.split() for line in (read(name) or "").splitlines() if len(line.split()) == 2)

        stat, oom = fields("memory.stat"), None
        if self.version == 2:
            events = fields("memory.events")
            peak, hits, oom = read("memory.peak"), events.get("max"), events.get("oom_kill", 0)
            faults = stat.get("pgmajfault")
        else:
            peak = read("memory.max_usage_in_bytes")
            # The larger of the two counters (with the swap limit set too, either may count; on this machine both
            # stayed 0 in runs that sat at the limit, so it is printed as the kernel gives it, not read as "never hit").
            counts = [int(c) for c in (read("memory.failcnt"), read("memory.memsw.failcnt")) if c is not None]
            hits = max(counts) if counts else None
            faults = stat.get("total_pgmajfault", stat.get("pgmajfault"))
        return {"cgroup": str(self.group), "limit_gb": round(self.limit / 2**30, 3),
                "peak_usage_gb": None if peak is None else round(int(peak) / 2**30, 3),
                "failcnt": None if hits is None else int(hits),
                "major_page_faults": None if faults is None else int(faults),
                "oom_kills": None if oom is None else int(oom)}
