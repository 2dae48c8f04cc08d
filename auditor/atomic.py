"""Atomic writes: a temporary file in the same folder, then a rename, so no reader sees half a file."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def atomic_write_bytes(destination: Path, data: bytes) -> None:
    """Write `data` to `destination` atomically. An OS error is an AuditorError naming the file."""
    from auditor.errors import AuditorError

    destination = Path(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = create_temporary(destination)
    except OSError as exc:
        raise AuditorError(f"cannot write {str(destination)!r}: {exc.strerror or exc}",
                           "Check that the folder is writable and has space.") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, destination)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise AuditorError(f"cannot write {str(destination)!r}: {exc.strerror or exc}",
                               "Check that the folder is writable and has space.") from None
        raise


def create_temporary(destination: Path) -> tuple[int, str]:
    """A new file beside `destination`, created with mode 0666 so the kernel applies the process umask:
    reports get the usual permissions (mkstemp would give 0600), and the umask is never changed (reading
    it means setting it, which races with other threads creating files)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = str(destination.parent / f".{destination.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {destination}")


def require_writable_folder(folder: Path, what: str, flag: str) -> None:
    """Raise a ConfigError now, before any work, when `folder` cannot be created or written into
    (it is a file, lies below a file, or is not writable), naming the flag to change."""
    from auditor.errors import ConfigError

    folder = Path(folder).expanduser()
    probe = folder
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if os.path.lexists(probe) and not probe.exists():
        raise ConfigError(f"{what} {str(folder)!r} cannot be created: {str(probe)!r} is a broken link",
                          f"Pass another folder with {flag}, or remove the link.")
    if not probe.is_dir():
        where = "is a file" if probe == folder else f"lies below {str(probe)!r}, which is a file"
        raise ConfigError(f"{what} {str(folder)!r} {where}", f"Pass a folder with {flag}.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {str(folder)!r} is not writable ({str(probe)!r} is read-only for this user)",
                          f"Pass a writable folder with {flag}.")


def refuse_inside(path: Path, datasets: list[Path], what: str, tip: str) -> None:
    """Raise a ConfigError when `path` (to be written) is one of the `datasets` folders or lies inside one:
    auditor never writes into a dataset it audits (a report folder there would even be read as a split by the
    next audit). Links are resolved, so a path that only looks outside is caught too."""
    from auditor.errors import ConfigError

    resolved = Path(path).expanduser().resolve()
    for dataset in datasets:
        root = Path(dataset).expanduser().resolve()
        if resolved == root or resolved.is_relative_to(root):
            raise ConfigError(f"{what} {str(path)!r} is inside the dataset {str(dataset)!r}; auditor never writes there",
                              tip)


def atomic_write_text(destination: Path, text: str) -> None:
    atomic_write_bytes(destination, text.encode("utf-8"))
