"""Reading a file named by a local path or an fsspec URL (s3://, gs://, file://, …) — never raises.

URLs only reach an engine that runs where their bytes are (the Ray engine); the local engine reads
local paths. Remote filesystems need their fsspec driver installed wherever the reading happens
(s3fs for s3://, gcsfs for gs://); `check_protocols` says so before any work starts.
"""

from __future__ import annotations

import re
from pathlib import Path

from auditor.encoding.imaging import Problem
from auditor.encoding.reading import read_file

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_url(path: Path | str) -> bool:
    """True for "s3://bucket/x.jpg", "file:///data/x.jpg"; False for local paths (a Path never is a URL:
    pathlib folds "s3://" into "s3:/")."""
    return isinstance(path, str) and bool(_URL.match(path))


def read_source(path: Path | str, max_bytes: int) -> tuple[bytes | None, Problem | None]:
    """The bytes behind a local path or a URL, or why they cannot be had."""
    if not is_url(path):
        return read_file(Path(path), max_bytes)
    return read_url(str(path), max_bytes)


def read_url(url: str, max_bytes: int) -> tuple[bytes | None, Problem | None]:
    try:
        import fsspec
    except ImportError:
        return None, Problem("unreadable", "error", "reading URLs needs fsspec: pip install 'auditor[ray]'")
    try:
        fs, location = fsspec.core.url_to_fs(url)
        size = fs.size(location)
        if size is not None and size > max_bytes:
            return None, Problem("too_large_file", "error",
                                 f"{size / 2**20:.0f} MiB exceeds the {max_bytes / 2**20:.0f} MiB limit; not read")
        with fs.open(location, "rb") as handle:
            return handle.read(max_bytes + 1), None
    except FileNotFoundError:
        return None, Problem("missing_file", "error", "file does not exist")
    except IsADirectoryError:
        return None, Problem("unreadable", "error", "is a directory, not a file")
    except PermissionError:
        return None, Problem("unreadable", "error", "permission denied")
    except ImportError as exc:  # the protocol's driver (s3fs, gcsfs) is missing on this node
        return None, Problem("unreadable", "error", f"cannot read {url.split('://')[0]}:// URLs here: {exc}")
    except Exception as exc:  # network and object-store errors come in many types; all mean "unreadable"
        return None, Problem("unreadable", "error", f"cannot read: {str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}")


def check_protocols(paths: list[Path | str]) -> None:
    """Fail before any work when a URL's protocol has no fsspec driver here (e.g. s3:// without s3fs)."""
    from auditor.errors import ConfigError

    protocols = sorted({str(p).split("://", 1)[0].lower() for p in paths if is_url(p)})
    if not protocols:
        return
    try:
        import fsspec
    except ImportError:
        raise ConfigError("the dataset names files by URL, which needs fsspec", "pip install 'auditor[ray]'") from None
    for protocol in protocols:
        try:
            fsspec.get_filesystem_class(protocol)
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"cannot read {protocol}:// URLs: {str(exc).splitlines()[0][:160]}",
                              "Install the fsspec driver for it on the driver and every node "
                              "(s3fs for s3://, gcsfs for gs://).") from None
