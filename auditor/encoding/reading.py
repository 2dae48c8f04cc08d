"""Reading a dataset file's bytes: never raises, never reads past the size limit."""

from __future__ import annotations

from pathlib import Path

from auditor.encoding.imaging import Problem


def read_file(path: Path, max_bytes: int) -> tuple[bytes | None, Problem | None]:
    """The file's bytes, or the reason it cannot be had. Never raises."""
    try:
        size = Path(path).stat().st_size
        if size > max_bytes:
            return None, Problem("too_large_file", "error", f"{size / 2**20:.0f} MiB exceeds the {max_bytes / 2**20:.0f} MiB limit; not read")
        with open(path, "rb") as handle:
            return handle.read(max_bytes + 1), None
    except FileNotFoundError:
        return None, Problem("missing_file", "error", "file does not exist")
    except IsADirectoryError:
        return None, Problem("unreadable", "error", "is a directory, not a file")
    except PermissionError:
        return None, Problem("unreadable", "error", "permission denied")
    except OSError as exc:
        return None, Problem("unreadable", "error", f"cannot read: {exc.strerror or exc}")
