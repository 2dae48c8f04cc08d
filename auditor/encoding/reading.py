"""Reading a dataset file's bytes: only regular files, never past the size limit, never blocking, never raising."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from auditor.encoding.imaging import Problem

# O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOCTTY: a terminal device must not become ours.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
_FILE_TYPES = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def read_file(path: Path | str, max_bytes: int) -> tuple[bytes | None, Problem | None]:
    """The file's bytes, or the reason it cannot be had. Never raises, never blocks.

    Only regular files are read. The type is taken from the opened descriptor (fstat), not from the
    name, so a file swapped for a FIFO or a device between listing and reading is still refused; the
    open itself cannot block (O_NONBLOCK), and a device is never read (/dev/urandom has no end)."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None, Problem("missing_file", "error", "file does not exist")
    except PermissionError:
        return None, Problem("unreadable", "error", "permission denied")
    except OSError as exc:  # ENXIO: a socket, or a FIFO/device that refuses non-blocking opens
        if exc.errno == errno.ENXIO:
            return None, Problem("not_regular_file", "error", "not a regular file (a socket or device); not read")
        return None, Problem("unreadable", "error", f"cannot open: {exc.strerror or exc}")
    except ValueError:  # a NUL in the name (a manifest cell)
        return None, Problem("unreadable", "error", "the name contains a NUL character")
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):  # the kind it always had (finding ids, and so baselines, keep it)
            return None, Problem("unreadable", "error", "is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            what = next((name for test, name in _FILE_TYPES if test(info.st_mode)), "not a regular file")
            return None, Problem("not_regular_file", "error", f"is {what}, not a regular file; not read")
        if info.st_size > max_bytes:
            return None, Problem("too_large_file", "error",
                                 f"{info.st_size / 2**20:.0f} MiB exceeds the {max_bytes / 2**20:.0f} MiB limit; not read")
        chunks, remaining = [], max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:  # grew while being read
            return None, Problem("too_large_file", "error", f"exceeds the {max_bytes / 2**20:.0f} MiB limit; not read")
        return data, None
    except OSError as exc:
        return None, Problem("unreadable", "error", f"cannot read: {exc.strerror or exc}")
    finally:
        os.close(fd)
