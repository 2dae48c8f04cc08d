"""A folder of array files named by what they hold: `<directory>/<kind>/<sha256(version|key)[:24]>/`, with a
`key.txt` that says it in words. Different backbones, preprocessings or store versions never share a folder.
Without a cache directory (--no-cache) the folder is private and temporary."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from auditor.atomic import atomic_write_text


def keyed_folder(directory: Path | None, kind: str, version: str, key: str
                 ) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """The folder (created) and, without `directory`, the temporary directory holding it (keep it alive)."""
    temporary = None
    if directory is None:
        temporary = tempfile.TemporaryDirectory(prefix=f"auditor-{kind}-")
        directory = Path(temporary.name)
    digest = hashlib.sha256(f"{version}|{key}".encode()).hexdigest()[:24]
    folder = Path(directory) / kind / digest
    folder.mkdir(parents=True, exist_ok=True)
    key_file = folder / "key.txt"
    if not key_file.exists():
        atomic_write_text(key_file, f"{version}\n{key}\n")
    return folder, temporary
